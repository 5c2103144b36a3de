#!/bin/bash
# session 50, run 3: the committed tree (44d4f49): test_cuda after its map_floats tidy-up (no engine change since
# run 2), plain and under memcheck (small), on the same library (pack-nf3).
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
tar -xJf .gpu/pack-nf3/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
mkdir -p .gpu/g/bundle && cp .gpu/bundle-nf/koffi-linux-x64.node .gpu/bundle-nf/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-nf/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
mkdir -p .gpu/g/fx && tar -xJf .gpu/fx.tar.xz -C .gpu/g/fx
mkdir -p .gpu/g/bin && cp .gpu/bin/node .gpu/g/bin/
GPU=$R/.gpu/g SESSION_BUDGET_S=200 timeout 210 bash scripts/gpu/session.sh $X/s cudatests sanitizer > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; grep "=== .*rc=" $X/session.txt
grep -h "passed\|ERROR SUMMARY" $X/s/work/cudatests.log $X/s/work/sanitizer.log $X/s/work/e2e.log 2>/dev/null | tail -5
grep -h "^FAIL" $X/s/work/cudatests.log | head -5
rm -f $X/s/session.tgz; pack; rm -rf "$OUT/x"
