#!/bin/bash
# session 54, run 3: the candidate tree (pack-54b): the wide tiles on by default for grouped-query attention (16-bit
# cache, head_dim <= 128, G <= 8) from kAttnLongGqa = 4,096 positions, the wide split cap min(one wave, 64).
# (a) harness attention tests, plain and under memcheck; (b) session.sh cudatests sanitizer e2e (default), and
# cudatests e2e with LSW_CUDA_ATTN_LONG=1 (every GQA decode step on the wide tiles); (c) whole decodes, base,
# alternating processes: the new default against LSW_CUDA_ATTN_LONG=0 (the register kernel throughout, the old
# default), and at 3,000 prompt tokens the wide tiles from 1,024 positions against LSW_CUDA_ATTN_LONG=0
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
cat $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack-54b/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
LSW_HARNESS_ONLY=test_attention timeout 60 build/dev/bench_kernels $X/attn-tests.txt > /dev/null 2>&1
echo "attention tests rc=$? $(( $(date +%s) - T0 ))s"; grep -h "validation\|FAIL" $X/attn-tests.txt | head -8
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
mkdir -p .gpu/g/bundle && cp .gpu/bundle-52/koffi-linux-x64.node .gpu/bundle-52/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-52/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
mkdir -p .gpu/g/fx && tar -xJf .gpu/fx.tar.xz -C .gpu/g/fx
mkdir -p .gpu/g/bin && cp .gpu/bin/node .gpu/g/bin/
GPU=$R/.gpu/g SESSION_BUDGET_S=150 timeout 160 bash scripts/gpu/session.sh $X/s cudatests sanitizer e2e > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; grep "=== .*rc=" $X/session.txt
grep -h "passed\|ERROR SUMMARY" $X/s/work/cudatests.log $X/s/work/sanitizer.log $X/s/work/e2e.log 2>/dev/null | tail -5
rm -f $X/s/session.tgz; pack
LSW_CUDA_ATTN_LONG=1 GPU=$R/.gpu/g SESSION_BUDGET_S=120 timeout 130 bash scripts/gpu/session.sh $X/s1 cudatests e2e > $X/session-long1.txt 2>&1
echo "session LSW_CUDA_ATTN_LONG=1 rc=$? $(( $(date +%s) - T0 ))s"; grep "=== .*rc=" $X/session-long1.txt
grep -h "passed" $X/s1/work/cudatests.log $X/s1/work/e2e.log 2>/dev/null | tail -3
rm -f $X/s1/session.tgz; pack
LSW_HARNESS_ONLY=test_attention timeout 120 compute-sanitizer --tool memcheck --error-exitcode 3 build/dev/bench_kernels > $X/attn-memcheck.txt 2>&1
echo "attention memcheck rc=$? $(( $(date +%s) - T0 ))s"; grep -h "ERROR SUMMARY\|validation" $X/attn-memcheck.txt | head -3
pack
CLI=$R/.gpu/g/bundle/lora-switch.mjs
b() { local n=$1 pre=$2 p=$3; shift 3
  [ $(( $(date +%s) - T0 )) -gt 540 ] && { echo "$n skipped (time)"; return; }
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 60 node "$CLI" bench --backend cuda --preset $pre --modes base --repetitions 2 --prompt-tokens $p --new-tokens 100 --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-9)"
  pack
}
for round in 1 2; do
  for pc in "qwen2.5-7b 16000" "qwen2.5-7b 8000" "llama3-8b 8000" "qwen2.5-7b 4096" "llama3-8b 4096"; do
    set -- $pc
    b $1-p$2-new-$round $1 $2 LSW_X=1
    b $1-p$2-old-$round $1 $2 LSW_CUDA_ATTN_LONG=0
  done
  for pre in qwen2.5-7b llama3-8b; do
    b $pre-p3000-wide1024-$round $pre 3000 LSW_CUDA_ATTN_LONG=1024
    b $pre-p3000-old-$round $pre 3000 LSW_CUDA_ATTN_LONG=0
  done
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
