#!/bin/bash
# session 55, run 5: the general sampler's top-p by bins, a group's end by bisection (pack-55c): (a) the harness's sampling tests and timing rows,
# (b) session.sh cudatests sanitizer e2e forward, (c) SGMM r64 top-2 rounds on an H200, (d) the sampling tests under memcheck
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
cat $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack-55c/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
LSW_HARNESS_ONLY=test_sampling timeout 120 build/dev/bench_kernels $X/sampling.txt > /dev/null 2>&1
echo "sampling rc=$? $(( $(date +%s) - T0 ))s"; grep -h "validation\|FAIL\|mismatch" $X/sampling.txt | head -8
grep -h "nucleus of\|top-k 5000" $X/sampling.txt
pack
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
mkdir -p .gpu/g/bundle && cp .gpu/bundle-52/koffi-linux-x64.node .gpu/bundle-52/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-52/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
mkdir -p .gpu/g/fx && tar -xJf .gpu/fx.tar.xz -C .gpu/g/fx
mkdir -p .gpu/g/bin && cp .gpu/bin/node .gpu/g/bin/
GPU=$R/.gpu/g SESSION_BUDGET_S=220 timeout 230 bash scripts/gpu/session.sh $X/s cudatests sanitizer e2e forward > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; grep "=== .*rc=" $X/session.txt
grep -h "passed\|ERROR SUMMARY" $X/s/work/cudatests.log $X/s/work/sanitizer.log $X/s/work/e2e.log 2>/dev/null | tail -6
grep -h "differ\|FAIL" $X/s/work/cudatests.log | head -5
rm -f $X/s/session.tgz; pack
for r in 1 2 3; do
  [ $(( $(date +%s) - T0 )) -gt 330 ] && break
  grep -q H200 $X/gpu.txt || break  # (measured on H100s in sessions 52-53)
  LSW_HARNESS_ONLY=bench_sgmm LSW_BENCH_SGMM_CASE=64,2 timeout 40 build/dev/bench_kernels $X/sgmm-r64k2-$r.txt > /dev/null 2>&1
  echo "sgmm r64 top-2 round $r rc=$? $(( $(date +%s) - T0 ))s"; grep -h "% of copy" $X/sgmm-r64k2-$r.txt | head -4
done
pack
left=$(( 440 - ($(date +%s) - T0) ))
if [ $left -gt 20 ]; then
  LSW_HARNESS_ONLY=test_sampling timeout $left compute-sanitizer --tool memcheck --error-exitcode 3 build/dev/bench_kernels --quick > $X/sampling-memcheck.txt 2>&1
  echo "sampling memcheck rc=$? $(( $(date +%s) - T0 ))s"; grep -h "ERROR SUMMARY\|validation" $X/sampling-memcheck.txt | tail -3
fi
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
