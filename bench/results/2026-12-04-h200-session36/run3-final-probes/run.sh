#!/bin/bash
# session 36 run 3: the final tree (the two copy probes on one shared walk, copy_probe_walk): test_cuda, the SGMM tests
# with memcheck, then bench_sgmm twice (the copy probes' W == W0 checks and rates, the SGMM rows)
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
SESSION_BUDGET_S=200 bash scripts/gpu/session.sh $X/s unpack cudatests sgmm > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; tail -n 6 $X/session.txt
grep -h "validation" $X/s/work/sgmm-tests.txt | tail -1; grep -h "ERROR SUMMARY" $X/s/work/sgmm-memcheck.txt
pack
for r in 1 2; do
  LSW_HARNESS_ONLY=bench_sgmm timeout 150 build/dev/bench_kernels $X/sgmm-probe-$r.txt > /dev/null 2>&1
  echo "bench $r rc=$? $(( $(date +%s) - T0 ))s"
  grep -hE "^\| sgmm copy probe|^\| sgmm tc stream q,v x32 layers r(16|64) top-(1|2) \(|FAIL|validation" $X/sgmm-probe-$r.txt | cut -c1-140
  pack
done 2>&1 | tee $X/probe.txt
pack; rm -rf "$OUT/x"
