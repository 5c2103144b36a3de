#!/bin/bash
# session 24 run 1: first GPU run of the review mends 3336d2a / 66ee041 (fold_rs helper, rope_value, resolve_variant
# for the deferral, alin arguments, harness launch helper): test_cuda, test_forward, memcheck of test_cuda, fold harness
# (+ memcheck), attention harness (tests + timing), e2e CPU == CUDA; harness test_sampling / test_lora / test_norm_fold /
# test_attention; memcheck of test_lora; q,v r16 and all-linear r64 benches
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
GPU=$R/.gpu SESSION_BUDGET_S=240 timeout 260 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer fold-tests attn-tests e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
LSW_HARNESS_ONLY=test_sampling,test_lora,test_norm_fold,test_attention timeout 120 ./build/dev/bench_kernels $X/harness-tests.txt > /dev/null 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-tests.txt | tail -1)"
grep -E "FAIL" $X/harness-tests.txt | head -5
LSW_HARNESS_ONLY=test_lora timeout 60 compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > $X/lora-memcheck.txt 2>&1; echo "lora memcheck rc=$? $(( $(date +%s) - T0 ))s $(grep -E 'ERROR SUMMARY|^validation' $X/lora-memcheck.txt | tail -2 | tr '\n' ' ')"
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 60 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
[ $(( $(date +%s) - T0 )) -lt 400 ] && b qv --router pregated --rank 16 --targets q,v --modes base,fused
[ $(( $(date +%s) - T0 )) -lt 450 ] && b r64-2 --router pregated --rank 64 --targets all --modes base,fused
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
