#!/bin/bash
# session 29 run 3: the final tree (prebuilt.txt).  All-linear r64 top-2 base,fused with the fused-LoRA launches of one
# shape forced onto another GEMV variant (LSW_CUDA_GEMV_LORA_SHAPES; the tuner keeps v10 for every LoRA launch):
# o (4096x4096) on v4 (32 rows, 128 blocks) / v3 (16 rows, 256 blocks, no split-K); down (4096x11008) on v4 / v3;
# gate,up (22016x4096) on v4; two interleaved rounds, 3 repetitions each
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 80 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 sh=$2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_VERBOSE=1 LSW_CUDA_GEMV_LORA_SHAPES="$sh" timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 --modes base,fused --router pregated --rank 64 --targets all --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
for r in a b; do
  b def$r ""
  b o4$r "4096x4096=4"
  b o3$r "4096x4096=3"
  b dn4$r "4096x11008=4"
  b dn3$r "4096x11008=3"
  b gu4$r "22016x4096=4"
  pack
  [ $(( $(date +%s) - T0 )) -gt 330 ] && break
done
grep -h "gemv+lora" $X/def*.txt $X/o4a.txt 2>/dev/null | sort | uniq -c | head -20
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
