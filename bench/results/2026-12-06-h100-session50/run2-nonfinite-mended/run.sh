#!/bin/bash
# session 50, run 2: run 1 found that the decode step's non-finite check also failed the steps a merge-mode prompt
# runs per token (and a single-token eval); the check now sits in lswc_model_step only.  test_cuda, test_forward,
# test_cuda under memcheck (small), the CLI end to end CPU == CUDA, on the mended library (pack-nf2).
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
tar -xJf .gpu/pack-nf2/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
mkdir -p .gpu/g/bundle && cp .gpu/bundle-nf/koffi-linux-x64.node .gpu/bundle-nf/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-nf/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
mkdir -p .gpu/g/fx && tar -xJf .gpu/fx.tar.xz -C .gpu/g/fx
mkdir -p .gpu/g/bin && cp .gpu/bin/node .gpu/g/bin/
GPU=$R/.gpu/g SESSION_BUDGET_S=200 timeout 210 bash scripts/gpu/session.sh $X/s cudatests forward sanitizer e2e > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; grep "=== .*rc=" $X/session.txt
grep -h "passed\|ERROR SUMMARY" $X/s/work/cudatests.log $X/s/work/sanitizer.log $X/s/work/e2e.log 2>/dev/null | tail -5
grep -h "^FAIL" $X/s/work/cudatests.log | head -5
rm -f $X/s/session.tgz; pack; rm -rf "$OUT/x"
