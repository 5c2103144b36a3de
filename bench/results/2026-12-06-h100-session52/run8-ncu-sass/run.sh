#!/bin/bash
# session 52, run 8: Nsight Compute's per-instruction execution counts (SASS) of one r64 top-2 streaming-SGMM launch of the
#   committed tree: where the 834 M warp instructions go
set -u
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
LSW_BENCH_SGMM_CASE=64,2 LSW_HARNESS_ONLY=bench_sgmm timeout 200 ncu --clock-control none -k regex:sgmm_tc_stream --launch-skip 3 --launch-count 1 \
  --section SourceCounters --section WarpStateStats --import-source no -o $X/rep build/dev/bench_kernels $X/bench.txt > $X/ncu.out 2> $X/ncu.err
echo "ncu rc=$? $(( $(date +%s) - T0 ))s"; tail -2 $X/ncu.err
ncu -i $X/rep.ncu-rep --page source --print-source sass --csv > $X/sass.csv 2> $X/sass.err
echo "source page rc=$? lines $(wc -l < $X/sass.csv)"; head -3 $X/sass.csv | cut -c1-400; tail -2 $X/sass.err
rm -f $X/rep.ncu-rep; xz -T4 $X/sass.csv
(cd "$OUT" && tar -czf x.tgz x); rm -rf "$OUT/x"
