#!/bin/bash
# session 38 run 10: llama3-8b base with each of its 4096-column shapes forced off v11 (LSW_CUDA_GEMV_SHAPES), one
# process each, between default processes: is any 8B role better on another variant in the decode?  Engine of run 8.
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 75 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1
cp build/prebuilt.txt $X/
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 60 node "$CLI" bench --backend cuda --preset llama3-8b --modes base --repetitions 2 --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f3-4)"
}
b default-1
b qkv-v10 LSW_CUDA_GEMV_SHAPES=6144x4096=10
b qkv-v4 LSW_CUDA_GEMV_SHAPES=6144x4096=4
b o-v10 LSW_CUDA_GEMV_SHAPES=4096x4096=10
b default-2
b gu-v10 LSW_CUDA_GEMV_SHAPES=28672x4096=10
b down-v10 LSW_CUDA_GEMV_SHAPES=4096x14336=10
b default-3
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
