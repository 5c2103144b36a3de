#!/bin/bash
# session 50, run 1: LSW_E_NUMERIC (both backends' samplers refuse NaN / infinite logits) on the GPU.
#   tests (new library, pack-nf): test_cuda (new op cases and the NaN-norm model through every CUDA sampling path),
#   the harness's sampler section (greedy_advance / sample_kernel flags, re-arm) plain and under memcheck,
#   test_forward, test_cuda under memcheck (small), the CLI end to end CPU == CUDA (bundle-nf, ABI 7);
#   then the 7B `base` decode A/B: HEAD's library + bundle (old) against the new ones, interleaved, 2 rounds.
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
mkdir -p .gpu/old && tar -xJf .gpu/old-lib/liblsw-old.tar.xz -C .gpu/old
xz -dc .gpu/old-lib/lora-switch.mjs.xz > .gpu/old/lora-switch.mjs && cp .gpu/old-lib/koffi-linux-x64.node .gpu/old-lib/package.json .gpu/old/
tar -xJf .gpu/pack-nf/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
mkdir -p .gpu/g/bundle && cp .gpu/bundle-nf/koffi-linux-x64.node .gpu/bundle-nf/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-nf/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
mkdir -p .gpu/g/fx && tar -xJf .gpu/fx.tar.xz -C .gpu/g/fx
mkdir -p .gpu/g/bin && cp .gpu/bin/node .gpu/g/bin/
echo "setup $(( $(date +%s) - T0 ))s"
GPU=$R/.gpu/g SESSION_BUDGET_S=200 timeout 210 bash scripts/gpu/session.sh $X/s cudatests forward sanitizer e2e > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; grep "=== .*rc=" $X/session.txt
grep -h "passed\|FAIL" $X/s/cudatests.log 2>/dev/null | tail -3
rm -f $X/s/session.tgz; pack
LSW_HARNESS_ONLY=test_sampling timeout 60 build/dev/bench_kernels $X/sampling.txt > $X/sampling.out 2>&1
echo "harness rc=$? $(( $(date +%s) - T0 ))s"; grep -hE "passed|FAIL|non-finite" $X/sampling.txt | head -12
LSW_HARNESS_ONLY=test_sampling timeout 90 compute-sanitizer --tool memcheck --error-exitcode 3 build/dev/bench_kernels > $X/sampling-memcheck.txt 2>&1
echo "harness memcheck rc=$? $(( $(date +%s) - T0 ))s"; grep -h "ERROR SUMMARY" $X/sampling-memcheck.txt
pack
# 7B base decode, old vs new, interleaved
for r in 1 2; do
  for v in old new; do
    if [ $v = old ]; then L=$R/.gpu/old/build/native/liblsw.so; C=$R/.gpu/old/lora-switch.mjs; else L=$R/build/native/liblsw.so; C=$R/.gpu/g/bundle/lora-switch.mjs; fi
    env LSW_NATIVE_LIB=$L timeout 70 node "$C" bench --backend cuda --preset llama2-7b --modes base --repetitions 3 --out "$X/base-$v-$r.json" > "$X/base-$v-$r.txt" 2>&1
    echo "base $v $r rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch +base' $X/base-$v-$r.txt | cut -c1-60)"
    pack
  done
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
