#!/bin/bash
# session 53, run 3: f436885 (the committed SGMM consumer cuts) on the GPU: harness SGMM + sampling
#   tests, SGMM tests under memcheck, test_cuda plain and under memcheck, the CLI end to end; then Nsight Compute's
#   per-instruction counts of one r64 top-2 launch (SASS source page)
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
tar -xJf .gpu/pack-53/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
mkdir -p .gpu/g/bundle && cp .gpu/bundle-52/koffi-linux-x64.node .gpu/bundle-52/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-52/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
mkdir -p .gpu/g/fx && tar -xJf .gpu/fx.tar.xz -C .gpu/g/fx
mkdir -p .gpu/g/bin && cp .gpu/bin/node .gpu/g/bin/
LSW_HARNESS_ONLY=sgmm_tests,test_sampling timeout 120 build/dev/bench_kernels $X/harness-tests.txt > /dev/null 2>&1
echo "harness sgmm + sampling tests rc=$? $(( $(date +%s) - T0 ))s"; grep -h "validation\|FAIL" $X/harness-tests.txt | head -5
pack
GPU=$R/.gpu/g SESSION_BUDGET_S=150 timeout 160 bash scripts/gpu/session.sh $X/s cudatests sanitizer e2e > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; grep "=== .*rc=" $X/session.txt
grep -h "passed\|ERROR SUMMARY" $X/s/work/cudatests.log $X/s/work/sanitizer.log $X/s/work/e2e.log 2>/dev/null | tail -5
rm -f $X/s/session.tgz; pack
LSW_HARNESS_ONLY=sgmm_tests timeout 100 compute-sanitizer --tool memcheck --error-exitcode 3 build/dev/bench_kernels > $X/sgmm-memcheck.txt 2>&1
echo "sgmm memcheck rc=$? $(( $(date +%s) - T0 ))s"; grep -h "ERROR SUMMARY\|validation" $X/sgmm-memcheck.txt | head -3
pack
LSW_BENCH_SGMM_CASE=64,2 LSW_HARNESS_ONLY=bench_sgmm timeout 200 ncu --clock-control none -k regex:sgmm_tc_stream --launch-skip 3 --launch-count 1 \
  --section SourceCounters --section WarpStateStats --import-source no -o $X/rep build/dev/bench_kernels $X/ncu-src-bench.txt > $X/ncu-src.out 2> $X/ncu-src.err
echo "ncu source rc=$? $(( $(date +%s) - T0 ))s"
ncu -i $X/rep.ncu-rep --page source --print-source sass --csv > $X/sass.csv 2> $X/sass.err
rm -f $X/rep.ncu-rep; xz -T4 $X/sass.csv
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
