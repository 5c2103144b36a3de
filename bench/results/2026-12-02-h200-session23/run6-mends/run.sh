#!/bin/bash
# session 23 run 6: the review mends after run 5 (dot16 helper, defer_expand's chunk helper), tests only:
# test_cuda, test_forward, e2e, harness test_sampling / test_lora / test_norm_fold / test_attention, memcheck of
# test_lora, and one q,v r16 fused bench as a sanity check of the speed
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
GPU=$R/.gpu SESSION_BUDGET_S=100 timeout 110 bash scripts/gpu/session.sh $X/s unpack cudatests forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
LSW_HARNESS_ONLY=test_sampling,test_lora,test_norm_fold,test_attention timeout 90 ./build/dev/bench_kernels $X/harness-tests.txt > /dev/null 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-tests.txt | tail -1)"
grep -E "FAIL" $X/harness-tests.txt | head -5
LSW_HARNESS_ONLY=test_lora timeout 40 compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > $X/lora-memcheck.txt 2>&1; echo "lora memcheck rc=$? $(( $(date +%s) - T0 ))s $(grep -E 'ERROR SUMMARY|^validation' $X/lora-memcheck.txt | tail -2 | tr '\n' ' ')"
CLI=$R/.gpu/bundle/lora-switch.mjs
env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 40 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 --router pregated --rank 16 --targets q,v --modes base,fused --out "$X/qv.json" > "$X/qv.txt" 2>&1; echo "qv rc=$? $(grep -E '^lora-switch' $X/qv.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
