#!/bin/bash
# session 32 run 4: the rest of the GPU checks on the final tree (prebuilt.txt): test_cuda under compute-sanitizer
# memcheck, the fold and LoRA harnesses with memcheck, the SGMM harness tests with memcheck, and the comparison of the
# engine and the TS reference with transformers / peft in fp64
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=420 timeout 435 bash scripts/gpu/session.sh $X/s unpack sanitizer fold-tests lora-tests sgmm compare > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.log $X/s/work/*.txt 2>/dev/null | sort | uniq -c | head -30
grep -h "FAIL" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -20
tail -5 $X/s/work/compare.log 2>/dev/null
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
