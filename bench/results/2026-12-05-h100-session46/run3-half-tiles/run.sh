#!/bin/bash
# session 46 run 3: the top-1 SGMM in 32-row half tiles (s3_top1_half: 4 half stages, 3 half tiles of W0 in flight per group); the SGMM harness tests (bit identity
# with whole and half tiles in every plan shape) and memcheck, test_cuda, then bench_sgmm three times (whole / half
# tiles interleaved, r64 top-1), with copy probes
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz -C "$R")
cp build/prebuilt.txt $X/
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 215 bash scripts/gpu/session.sh $X/s cudatests sgmm > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; tail -n 6 $X/session.txt
grep -h "passed\|FAIL" $X/s/work/sgmm-tests.txt | tail -5; grep -h "ERROR SUMMARY" $X/s/work/sgmm-memcheck.txt
grep -h "passed\|FAIL" $X/s/work/*.log 2>/dev/null | tail -3
rm -f $X/s/session.tgz; pack
for r in 1 2 3; do
  LSW_HARNESS_ONLY=bench_sgmm timeout 100 build/dev/bench_kernels $X/sgmm-half-$r.txt > /dev/null 2>&1
  echo "bench $r rc=$? $(( $(date +%s) - T0 ))s"
  grep -hE "tiles|FAIL|passed|plan|copy probe: v3|r64 top-1 \(" $X/sgmm-half-$r.txt | grep -v "^  " | cut -c1-150
  pack
done 2>&1 | tee $X/w0r.txt
pack; rm -rf "$OUT/x"
