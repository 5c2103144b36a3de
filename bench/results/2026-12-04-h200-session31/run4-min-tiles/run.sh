#!/bin/bash
# session 31 run 4: the streaming SGMM's shared-A mode, auto only for launches of >= 128 tiles per block (run 3: the
# layer-wise merge's small launches were slower with it).  The tree's GPU tests (test_cuda, the SGMM
# harness with forced-shared bit-identity checks and memcheck, test_forward, end to end), the harness's SGMM bench
# (shared off / auto / forced at widths 8, 4, 2, interleaved x3), then the 7B layer-wise q,v r16 top-2 `merge` bench
# (one SGMM launch per layer) with LSW_CUDA_SGMM_SHARED=off / auto interleaved x2, auto with no tile minimum (run 3's
# rule, verbose: the autotuner's timings) and pre-gated q,v r16 `merge` auto
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
grep -E "^\| sgmm tc stream, shared A .* tiles \(W0" $X/s/work/cuda-kernels-sgmm.txt | cut -c1-150
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 sh=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_SGMM_SHARED=$sh timeout 90 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6,14 | tr '\n' ';')"
}
for r in a b; do
  b lw-off-$r off --top-k 2 --rank 16 --targets q,v --modes base,merge --router layerwise
  b lw-auto-$r auto --top-k 2 --rank 16 --targets q,v --modes base,merge --router layerwise
done
LSW_CUDA_VERBOSE=1 LSW_CUDA_SGMM_SHARED_MIN_TILES=0 b lw-auto-min0 auto --top-k 2 --rank 16 --targets q,v --modes base,merge --router layerwise
LSW_CUDA_VERBOSE=1 b lw-off-verbose off --top-k 2 --rank 16 --targets q,v --modes base,merge --router layerwise
b qv-auto auto --top-k 2 --rank 16 --targets q,v --modes base,merge --router pregated
grep -h "lswc: sgmm" $X/lw-auto-min0.txt $X/lw-off-verbose.txt | sort | uniq -c | head -8
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
