#!/bin/bash
# session 52, run 3: TIMING PROBE (not committed; probe.diff): the general top-k consumer with half 1's LoRA-A fragment
#   loads skipped (4 ldmatrix per 8 MMAs, the count a spill-free both-halves consumer would issue; wrong bits), against
#   the same binary without the probe, interleaved 3 times: the most that consumer could gain
set -u
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
LSW_HARNESS_ONLY=bench_sgmm timeout 240 build/dev/bench_kernels $X/sgmm-bench.txt > /dev/null 2>&1
echo "bench rc=$? $(( $(date +%s) - T0 ))s"
grep -hE "PROBE|stream q,v x32 layers r(16|64) top-" $X/sgmm-bench.txt | grep "^|" | cut -c1-150
(cd "$OUT" && tar -czf x.tgz x); rm -rf "$OUT/x"
