#!/bin/bash
# session 31 run 6 (the final tree): shared A out of the static plan; the merge autotuner times it beside separate
# groups and keeps the faster (verbose: its timings).  The tree's GPU tests (test_cuda incl. shared A through the C ABI,
# the SGMM harness with memcheck, test_forward, end to end), then the 7B pre-gated q,v r16 `merge` auto / off
# interleaved x2 and the layer-wise one auto / off
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=260 timeout 275 bash scripts/gpu/session.sh $X/s unpack cudatests sgmm-bench forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -20
grep -hE "^  FAIL|not bit-identical|FAILED" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
grep -E "^\| sgmm tc stream(,| q,v)|^\| sgmm copy probe" $X/s/work/cuda-kernels-sgmm.txt | grep -v " g[12] s" | cut -c1-150 | head -60
grep -E "tc stream plan" $X/s/work/cuda-kernels-sgmm.txt | head -3
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 sh=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_SGMM_SHARED=$sh timeout 90 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6,14 | tr '\n' ';')"
}
for r in a b; do
  LSW_CUDA_VERBOSE=1 b qv-auto-$r auto --top-k 2 --rank 16 --targets q,v --modes base,merge --router pregated
  b qv-off-$r off --top-k 2 --rank 16 --targets q,v --modes base,merge --router pregated
done
LSW_CUDA_VERBOSE=1 b lw-auto auto --top-k 2 --rank 16 --targets q,v --modes base,merge --router layerwise
b lw-off off --top-k 2 --rank 16 --targets q,v --modes base,merge --router layerwise
grep -h "lswc: sgmm tensor" $X/qv-auto-*.txt $X/lw-auto.txt
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
