#!/bin/bash
# session 22 run 7: per-role variants of the fused-LoRA launches: harness bench_lora_roles, then the whole 7B decode
# with LSW_CUDA_GEMV_LORA_SHAPES (all-linear r64 and q,v r16, fused)
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
tar -xJf .gpu/pack/bin.tar.xz
export LD_LIBRARY_PATH=$R/build/native
mkdir -p "$OUT/x" .gpu/bin
xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
X=$OUT/x
cp build/prebuilt.txt $X/
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
LSW_HARNESS_ONLY=bench_lora_roles timeout 150 ./build/dev/bench_kernels $X/lora-roles.txt > /dev/null 2>&1; echo "lora roles rc=$? $(( $(date +%s) - T0 ))s"
grep -E "^  (q,k,v|o |gate|down)" $X/lora-roles.txt | grep -v lswc
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { # name shapes flags...
  local n=$1 sh=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_GEMV_LORA_SHAPES="$sh" timeout 120 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 --router pregated "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$sh] rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
R64="--rank 64 --targets all --modes base,fused"
b r64-def "" $R64
b r64-o11 "4096x4096=11" $R64
b r64-dn11 "4096x11008=11" $R64
b r64-odn11 "4096x4096=11,4096x11008=11" $R64
b r64-gu11 "22016x4096=11" $R64
QV="--rank 16 --targets q,v --modes base,fused"
b qv-def "" $QV
b qv-qkv10 "12288x4096=10" $QV
b qv-qkv11 "12288x4096=11" $QV
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
