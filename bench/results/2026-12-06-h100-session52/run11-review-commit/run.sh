#!/bin/bash
# session 52, run 11: the review commit (shared env_flag) on the GPU: harness SGMM + sampling
#   tests, SGMM tests under memcheck, test_cuda plain and under memcheck, the CLI end to end
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
tar -xJf .gpu/pack-52d/bf.tar.xz -C "$R"
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
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
