#!/bin/bash
# session 33 run 2: the W0 L2 requests line by line (prefetch.global.L2) instead of bulk: SGMM harness tests and
# bench rows, three processes
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack/bin.tar.xz && tar -xJf .gpu/pack/harness.tar.xz && cp build/prebuilt.txt build/harness.txt $X/
LSW_HARNESS_ONLY=sgmm_tests timeout 100 build/dev/bench_kernels $X/sgmm-tests.txt > $X/sgmm-tests.log 2>&1; echo "tests rc=$? $(( $(date +%s) - T0 ))s"
grep -hE "validation:|FAIL" $X/sgmm-tests.txt | head -5
for r in 1 2 3; do
  LSW_HARNESS_ONLY=bench_sgmm timeout 100 build/dev/bench_kernels $X/sgmm-$r.txt > $X/sgmm-$r.log 2>&1
  echo "sgmm $r rc=$? $(( $(date +%s) - T0 ))s"
  grep -hE "tc stream q,v|L2 ahead|FAIL|validation:" $X/sgmm-$r.txt | cut -c1-150
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
