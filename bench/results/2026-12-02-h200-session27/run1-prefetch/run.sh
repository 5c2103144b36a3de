#!/bin/bash
# session 27 run 1: tree 24209d3 (HEAD of session 26 + the LSW_CUDA_GEMV_PF experiment, off by default).
# Validation of the tree (session 26's last two commits never ran on a GPU): session.sh unpack cudatests forward
# sanitizer e2e sgmm-bench.  Then base interleaved x3: LSW_CUDA_GEMV_PF = 0 / 1 / 2 / 4 / -1 / -2; all-linear r64
# base,fused with 0 / 2 / -2 once each.
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=150 timeout 170 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer e2e sgmm-bench > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -E "sgmm tc stream.*q,v x32|copy probe" $X/s/work/cuda-kernels-sgmm.txt $X/s/cuda-kernels-sgmm.txt 2>/dev/null | grep -v " g[12] s" | head -8
pack
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
B="--modes base --router pregated --rank 16 --targets q,v"
for r in a b c; do
  [ $(( $(date +%s) - T0 )) -gt 420 ] && break
  for p in 0 1 2 4 -1 -2; do b pf$p$r "$B" LSW_CUDA_GEMV_PF=$p; done
  pack
done
R64="--modes base,fused --router pregated --rank 64 --targets all"
for p in 0 2 -2; do
  [ $(( $(date +%s) - T0 )) -gt 500 ] && break
  b r64pf$p "$R64" LSW_CUDA_GEMV_PF=$p
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
