#!/bin/bash
# session 52, run 9: the producer's LoRA-B copies without row checks or zero fill in whole row blocks (same copies, same
#   bits) against 6b2bcd9 (bench_kernels_old), in alternating processes: r64 top-2 and
#   r16 top-2 (LSW_BENCH_SGMM_CASE), then the new build's SGMM tests (bit-identical to the one-shot kernel)
set -u
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
for round in 1 2 3; do
  for b in old new; do
    bin=build/dev/bench_kernels; [ $b = old ] && bin=build/dev/bench_kernels_old
    for cs in 64,2 16,2; do
      LSW_BENCH_SGMM_CASE=$cs LSW_HARNESS_ONLY=bench_sgmm timeout 60 $bin $X/bench-$b-$round-${cs/,/-top}.txt > /dev/null 2>&1
      echo "$b round $round r$cs rc=$? $(grep -hE '^\| sgmm tc stream (q,v|, lockstep|, contiguous)' $X/bench-$b-$round-${cs/,/-top}.txt | grep -oE '[0-9.]+ % of copy' | tr '\n' ' ')"
    done
  done
done
LSW_HARNESS_ONLY=sgmm_tests timeout 120 build/dev/bench_kernels $X/sgmm-tests.txt > /dev/null 2>&1
echo "sgmm tests rc=$? $(( $(date +%s) - T0 ))s"; grep -h "validation\|FAIL" $X/sgmm-tests.txt | head -5
(cd "$OUT" && tar -czf x.tgz x); rm -rf "$OUT/x"
