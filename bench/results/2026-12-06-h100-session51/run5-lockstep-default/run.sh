#!/bin/bash
# session 51, run 5: the tree to commit: lockstep SGMM rounds by default where they pay (s3_lock_pays: r64 top-2, not
#   r16 top-2), mode 2 forced in the tests: SGMM harness tests and memcheck, test_cuda plain and under memcheck, the CLI
#   end to end, bench_sgmm, then 7B q,v merge decodes: r64 top-2 default / LSW_CUDA_SGMM_LOCK=0, r16 top-2 default
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
tar -xJf .gpu/pack-lock2/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
mkdir -p .gpu/g/bundle && cp .gpu/bundle-51/koffi-linux-x64.node .gpu/bundle-51/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-51/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
mkdir -p .gpu/g/fx && tar -xJf .gpu/fx.tar.xz -C .gpu/g/fx
mkdir -p .gpu/g/bin && cp .gpu/bin/node .gpu/g/bin/
LSW_HARNESS_ONLY=sgmm_tests timeout 60 build/dev/bench_kernels $X/sgmm-tests.txt > /dev/null 2>&1
echo "sgmm tests rc=$? $(( $(date +%s) - T0 ))s"; grep -h "validation\|FAIL" $X/sgmm-tests.txt | head -5
LSW_HARNESS_ONLY=sgmm_tests timeout 90 compute-sanitizer --tool memcheck --error-exitcode 3 build/dev/bench_kernels > $X/sgmm-memcheck.txt 2>&1
echo "sgmm memcheck rc=$? $(( $(date +%s) - T0 ))s"; grep -h "ERROR SUMMARY\|validation" $X/sgmm-memcheck.txt | head -3
pack
GPU=$R/.gpu/g SESSION_BUDGET_S=150 timeout 160 bash scripts/gpu/session.sh $X/s cudatests sanitizer e2e > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; grep "=== .*rc=" $X/session.txt
grep -h "passed\|ERROR SUMMARY" $X/s/work/cudatests.log $X/s/work/sanitizer.log $X/s/work/e2e.log 2>/dev/null | tail -5
rm -f $X/s/session.tgz; pack
LSW_HARNESS_ONLY=bench_sgmm timeout 100 build/dev/bench_kernels $X/sgmm-bench.txt > /dev/null 2>&1
echo "bench rc=$? $(( $(date +%s) - T0 ))s"
grep -hE "FAIL|stream q,v x32 layers r(16|64) top-|contiguous split|lockstep" $X/sgmm-bench.txt | grep -v "^  ok" | cut -c1-150
pack
CLI=$R/.gpu/g/bundle/lora-switch.mjs
for cfg in "64 def" "64 0" "16 def"; do
  set -- $cfg; rk=$1; lk=$2; ev=LSW_X=1; [ $lk = 0 ] && ev=LSW_CUDA_SGMM_LOCK=0
  env LSW_CUDA_VERBOSE=1 LSW_NATIVE_LIB=$R/build/native/liblsw.so $ev timeout 120 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank $rk --targets q,v --router pregated --modes base,merge --merge-prompt batched --repetitions 3 --out "$X/merge-r$rk-top2-lock-$lk.json" > "$X/merge-r$rk-top2-lock-$lk.txt" 2>&1
  echo "r$rk lock $lk rc=$? $(( $(date +%s) - T0 ))s"; grep -hE "^lora-switch|sgmm tensor-core" $X/merge-r$rk-top2-lock-$lk.txt | cut -c1-130
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
