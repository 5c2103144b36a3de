#!/bin/bash
# session 56, run 1: the sampler's tied bins (pack-56b) against the tree before them (pack-56, fb3354c):
# (a) both harnesses' sampling tests and timing rows, alternating; (b) where sample_kernel's spills sit (SASS);
# (c) session.sh cudatests sanitizer on the new tree; (d) the sampling tests under memcheck;
# (e) on an H200 only: SGMM r64 top-2 rounds, then the README's lora-switch rows (run 6 of session 55) until the deadline
set -u
R=$(pwd)
export DEADLINE=$(( $(date +%s) + ${LIMIT:-570} ))
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
cat $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p old && tar -xJf .gpu/pack-56/bf.tar.xz -C old
tar -xJf .gpu/pack-56b/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/; cp old/build/prebuilt.txt $X/prebuilt-old.txt
for r in 1 2; do
  for v in old new; do
    B=build/dev/bench_kernels; [ $v = old ] && B=old/build/dev/bench_kernels
    LSW_HARNESS_ONLY=test_sampling timeout 150 $B $X/sampling-$v-$r.txt > /dev/null 2>&1
    echo "sampling $v $r rc=$? $(( $(date +%s) - T0 ))s"; grep -h "validation\|FAIL\|mismatch" $X/sampling-$v-$r.txt | head -6
    grep -h "vocab=151936.*\(nucleus of\|top-k 5000\|compact path\)" $X/sampling-$v-$r.txt | cut -c1-130
  done
  pack
done
if command -v cuobjdump > /dev/null; then
  cuobjdump -sass build/native/liblsw.so > $X/sass-all.txt 2>&1
  awk '/Function : .*sample_kernel/{f=1} /Function : /&&!/sample_kernel/{f=0} f' $X/sass-all.txt > $X/sass-sample_kernel.txt
  echo "sample_kernel SASS: $(wc -l < $X/sass-sample_kernel.txt) lines"; grep -n "STL\|LDL\|CALL\|RET\|EXIT" $X/sass-sample_kernel.txt | head -30
  rm -f $X/sass-all.txt
fi
mkdir -p .gpu/g/bin && xz -dc .gpu/node.xz > .gpu/g/bin/node && chmod +x .gpu/g/bin/node
mkdir -p .gpu/g/bundle && cp .gpu/bundle-52/koffi-linux-x64.node .gpu/bundle-52/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-52/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
GPU=$R/.gpu/g SESSION_BUDGET_S=200 timeout 210 bash scripts/gpu/session.sh $X/s cudatests sanitizer > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; grep "=== .*rc=" $X/session.txt
grep -h "passed\|ERROR SUMMARY" $X/s/work/cudatests.log $X/s/work/sanitizer.log 2>/dev/null | tail -4
grep -h "differ\|FAIL\|nucleus" $X/s/work/cudatests.log | head -8
rm -f $X/s/session.tgz; pack
LSW_HARNESS_ONLY=test_sampling timeout 100 compute-sanitizer --tool memcheck --error-exitcode 3 build/dev/bench_kernels --quick > $X/sampling-memcheck.txt 2>&1
echo "sampling memcheck rc=$? $(( $(date +%s) - T0 ))s"; grep -h "ERROR SUMMARY\|validation" $X/sampling-memcheck.txt | tail -3
pack
if nvidia-smi --query-gpu=name --format=csv | grep -q H200; then
  for r in 1 2 3; do
    [ $(date +%s) -gt $(( DEADLINE - 120 )) ] && break
    LSW_HARNESS_ONLY=bench_sgmm LSW_BENCH_SGMM_CASE=64,2 timeout 40 build/dev/bench_kernels $X/sgmm-r64k2-$r.txt > /dev/null 2>&1
    echo "sgmm r64 top-2 round $r rc=$? $(( $(date +%s) - T0 ))s"; grep -h "% of copy" $X/sgmm-r64k2-$r.txt | head -2
  done
  pack
  SKIP_UNPACK=1 bash .gpu/s56/run6.sh
else echo "not an H200: SGMM and README rows skipped"; fi
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
