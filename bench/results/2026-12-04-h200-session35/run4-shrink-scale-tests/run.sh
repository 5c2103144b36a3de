#!/bin/bash
# session 35 run 4: the harness's lora_shrink and prologue-shrink tests with per-job LoRA scalings (ShrinkJob::scale,
# job 0 at 1, the others in [0.55, 1.45)), against fp64, then the same under compute-sanitizer memcheck
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p build/dev && xz -dc .gpu/pack/bench_kernels-new.xz > build/dev/bench_kernels && chmod +x build/dev/bench_kernels
cp .gpu/pack/harness-prebuilt.txt $X/prebuilt.txt
LSW_HARNESS_ONLY=test_lora_shrink,test_prologue_shrink timeout 200 build/dev/bench_kernels $X/shrink-tests.txt > $X/shrink-tests.log 2>&1
echo "tests rc=$? $(( $(date +%s) - T0 ))s"; grep -E "validation|FAIL" $X/shrink-tests.txt | head
pack
LSW_HARNESS_ONLY=test_lora_shrink,test_prologue_shrink timeout 300 compute-sanitizer --tool memcheck --error-exitcode 3 build/dev/bench_kernels > $X/shrink-memcheck.txt 2>&1
echo "memcheck rc=$? $(( $(date +%s) - T0 ))s"; tail -n 2 $X/shrink-memcheck.txt
pack; rm -rf "$OUT/x"
