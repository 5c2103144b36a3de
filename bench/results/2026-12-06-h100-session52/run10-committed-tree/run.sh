#!/bin/bash
# session 52, run 10: the committed tree (the producer's LoRA-B fast path on top of 6b2bcd9): harness SGMM + sampling
#   tests, SGMM tests under memcheck, test_cuda plain and under memcheck, the CLI end to end; then the 7B q,v r64 top-2
#   and all-linear r64 top-2 merges with this library (new) and 6b2bcd9's (old, pack-52b), alternating, two rounds
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
mkdir -p .gpu/old/build/native && xz -dc .gpu/old52b/liblsw.so.xz > .gpu/old/build/native/liblsw.so
tar -xJf .gpu/pack-52c/bf.tar.xz -C "$R"
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
CLI=$R/.gpu/g/bundle/lora-switch.mjs
for round in 1 2; do
for lib in old new; do
  L=$R/build/native/liblsw.so; [ $lib = old ] && L=$R/.gpu/old/build/native/liblsw.so
  for tg in q,v all; do
    f=$X/merge-r64-top2-${tg/,/}-$lib-$round
    env LSW_NATIVE_LIB=$L timeout 70 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 64 --targets $tg --router pregated --modes base,merge --merge-prompt batched --repetitions 2 --out "$f.json" > "$f.txt" 2>&1
    echo "r64 top-2 $tg $lib round $round rc=$? $(( $(date +%s) - T0 ))s"; grep -hE "^lora-switch" $f.txt | cut -c1-100
    pack
  done
done
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
