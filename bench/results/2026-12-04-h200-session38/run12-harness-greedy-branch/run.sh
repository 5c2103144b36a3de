#!/bin/bash
# session 38 run 12: the harness's sampling part (LSW_HARNESS_ONLY=test_sampling): greedy_advance validated against
# the CPU and timed, and the sampler kernel's own greedy branch (two greedy parameter sets added to its checks)
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
tar -xJf .gpu/pack/bin.tar.xz && cp build/prebuilt.txt $X/
LSW_HARNESS_ONLY=test_sampling timeout 120 build/dev/bench_kernels $X/sampling.txt > $X/sampling.log 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s"
grep -E "greedy|argmax|validation|FAIL" $X/sampling.log | head -30
(cd "$OUT" && tar -czf x.tgz x); rm -rf "$OUT/x"
