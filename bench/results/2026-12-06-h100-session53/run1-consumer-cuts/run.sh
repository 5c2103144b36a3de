#!/bin/bash
# session 53, run 1: the general SGMM consumer's instruction cuts against 1567151's harness (bench_kernels_old), in
#   alternating processes: v1 (cp.async wait as a compare chain, predicated stores, top_k == 2 without the expert loop)
#   and v2 (v1 plus the LoRA-B fragment address as one XOR per k-step); r64 top-2 and r16 top-2 (LSW_BENCH_SGMM_CASE);
#   then both builds' SGMM tests (bit-identical to the one-shot kernel) and Nsight Compute's instruction counts
set -u
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
for round in 1 2 3; do
  for b in old v1 v2; do
    bin=build/dev/bench_kernels_$b
    for cs in 64,2 16,2; do
      LSW_BENCH_SGMM_CASE=$cs LSW_HARNESS_ONLY=bench_sgmm timeout 60 $bin $X/bench-$b-$round-${cs/,/-top}.txt > /dev/null 2>&1
      echo "$b round $round r$cs rc=$? $(grep -hE '^\| sgmm tc stream (q,v|, lockstep|, contiguous)' $X/bench-$b-$round-${cs/,/-top}.txt | grep -oE '[0-9.]+ % of copy' | tr '\n' ' ')"
    done
  done
  pack
done
echo "benches $(( $(date +%s) - T0 ))s"
for b in v1 v2; do
  LSW_HARNESS_ONLY=sgmm_tests timeout 120 build/dev/bench_kernels_$b $X/sgmm-tests-$b.txt > /dev/null 2>&1
  echo "sgmm tests $b rc=$? $(( $(date +%s) - T0 ))s"; grep -h "validation\|FAIL" $X/sgmm-tests-$b.txt | head -5
done
pack
for b in old v1 v2; do
  LSW_BENCH_SGMM_CASE=64,2 LSW_HARNESS_ONLY=bench_sgmm timeout 120 ncu --clock-control none -k regex:sgmm_tc_stream --launch-skip 3 --launch-count 1 \
    --metrics smsp__inst_executed.sum,gpu__time_duration.sum,smsp__issue_active.avg.pct_of_peak_sustained_active build/dev/bench_kernels_$b $X/ncu-bench-$b.txt > $X/ncu-$b.out 2> $X/ncu-$b.err
  echo "ncu $b rc=$? $(( $(date +%s) - T0 ))s $(grep -E 'inst_executed|issue_active|duration' $X/ncu-$b.out | tr -s ' ' | tr '\n' ';')"
done
pack
LSW_BENCH_SGMM_CASE=64,2 LSW_HARNESS_ONLY=bench_sgmm timeout 200 ncu --clock-control none -k regex:sgmm_tc_stream --launch-skip 3 --launch-count 1 \
  --section SourceCounters --section WarpStateStats --import-source no -o $X/rep build/dev/bench_kernels_v2 $X/ncu-src-bench.txt > $X/ncu-src.out 2> $X/ncu-src.err
echo "ncu source v2 rc=$? $(( $(date +%s) - T0 ))s"
ncu -i $X/rep.ncu-rep --page source --print-source sass --csv > $X/sass-v2.csv 2> $X/sass.err
rm -f $X/rep.ncu-rep; xz -T4 $X/sass-v2.csv
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
