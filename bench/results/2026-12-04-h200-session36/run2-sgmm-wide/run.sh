#!/bin/bash
# session 36 run 2: the wide SGMM plan (one group of 16 warps, sgmm_set_stream_cfg groups 3) -- the SGMM tests with
# the wide configurations added (bit identity to the one-shot kernel, memcheck), then bench_sgmm twice: its sweep
# rows (g3 = wide) and six interleaved rows per case, default plan against the wide one
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
SESSION_BUDGET_S=200 bash scripts/gpu/session.sh $X/s unpack cudatests sgmm > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; tail -n 6 $X/session.txt
grep -h "passed\|FAIL" $X/s/work/sgmm-tests.txt | tail -5; grep -h "ERROR SUMMARY" $X/s/work/sgmm-memcheck.txt
pack
for r in 1 2; do
  LSW_HARNESS_ONLY=bench_sgmm timeout 150 build/dev/bench_kernels $X/sgmm-wide-$r.txt > /dev/null 2>&1
  echo "bench $r rc=$? $(( $(date +%s) - T0 ))s"
  grep -hE "A-B|g3 |sgmm tc stream q,v x32 layers r(16|64) top-(1|2) \(|FAIL|passed" $X/sgmm-wide-$r.txt | grep "^|\|FAIL\|passed" | cut -c1-140
  pack
done 2>&1 | tee $X/wide.txt
pack; rm -rf "$OUT/x"
