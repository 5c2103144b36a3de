#!/bin/bash
# session 51, run 1: the multi-block compact sampler (sample_mb_kernel) on the tree of e2da34b, whose CUDA edits
#   (the non-finite message path, nc = K) had not run on a GPU: harness sampler section, test_cuda plain and memcheck,
#   the CLI end to end, the harness under memcheck.
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
tar -xJf .gpu/pack-mb/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
mkdir -p .gpu/g/bundle && cp .gpu/bundle-51/koffi-linux-x64.node .gpu/bundle-51/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-51/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
mkdir -p .gpu/g/fx && tar -xJf .gpu/fx.tar.xz -C .gpu/g/fx
mkdir -p .gpu/g/bin && cp .gpu/bin/node .gpu/g/bin/
LSW_HARNESS_ONLY=test_sampling timeout 100 build/dev/bench_kernels $X/sampling.txt > $X/sampling.out 2>&1
echo "harness rc=$? $(( $(date +%s) - T0 ))s"; grep -hE "FAIL|mismatch|draws equal|validation" $X/sampling.txt | head -12
grep -hE "^\| (sample|greedy)" $X/sampling.txt | cut -c1-110
pack
GPU=$R/.gpu/g SESSION_BUDGET_S=110 timeout 120 bash scripts/gpu/session.sh $X/s cudatests sanitizer e2e > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; grep "=== .*rc=" $X/session.txt
grep -h "passed\|ERROR SUMMARY" $X/s/work/cudatests.log $X/s/work/sanitizer.log $X/s/work/e2e.log 2>/dev/null | tail -5
grep -h "^FAIL" $X/s/work/cudatests.log | head -5
rm -f $X/s/session.tgz; pack
LSW_HARNESS_ONLY=test_sampling timeout 110 compute-sanitizer --tool memcheck --error-exitcode 3 build/dev/bench_kernels > $X/sampling-memcheck.txt 2>&1
echo "harness memcheck rc=$? $(( $(date +%s) - T0 ))s"; grep -h "ERROR SUMMARY\|validation" $X/sampling-memcheck.txt | head -3
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
