#!/bin/bash
# session 52, run 1b: the top-k consumer with fewer spills (W0 by a 32-bit shared address, W's base pointer re-read
#   from the descriptor at the stores, gates from shared memory only): harness SGMM tests, then bench_sgmm
set -u
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
LSW_HARNESS_ONLY=sgmm_tests timeout 170 build/dev/bench_kernels $X/sgmm-tests.txt > /dev/null 2>&1
echo "sgmm tests rc=$? $(( $(date +%s) - T0 ))s"; grep -h "validation\|FAIL" $X/sgmm-tests.txt | head -5
LSW_HARNESS_ONLY=bench_sgmm timeout 240 build/dev/bench_kernels $X/sgmm-bench.txt > /dev/null 2>&1
echo "bench rc=$? $(( $(date +%s) - T0 ))s"
grep -hE "FAIL|top-k consumer|stream q,v x32 layers r(16|64) top-" $X/sgmm-bench.txt | grep -v "^  ok" | grep "^|" | cut -c1-150
(cd "$OUT" && tar -czf x.tgz x); rm -rf "$OUT/x"
