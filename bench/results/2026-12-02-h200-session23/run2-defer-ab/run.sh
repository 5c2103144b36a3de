#!/bin/bash
# session 23 run 2: the qkv GEMV's deferred LoRA expand (LoraEpilogue::defer, added by the decode attention):
# tests (test_cuda, test_forward, harness test_lora / test_norm_fold / test_attention + memcheck, e2e), then A-B benches
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
GPU=$R/.gpu SESSION_BUDGET_S=330 timeout 340 bash scripts/gpu/session.sh $X/s unpack cudatests forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
tail -5 $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
LSW_HARNESS_ONLY=test_lora,test_norm_fold,test_attention timeout 200 ./build/dev/bench_kernels $X/harness-tests.txt > /dev/null 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-tests.txt | tail -1)"
grep -E "FAIL" $X/harness-tests.txt | head -8
LSW_HARNESS_ONLY=test_norm_fold timeout 150 compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > $X/fold-memcheck.txt 2>&1; echo "memcheck rc=$? $(( $(date +%s) - T0 ))s $(grep -E 'ERROR SUMMARY|^validation' $X/fold-memcheck.txt | tail -2 | tr '\n' ' ')"
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { # name defer flags...
  local n=$1 d=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_QKV_DEFER=$d timeout 100 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 --router pregated "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [defer=$d] rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
QV="--rank 16 --targets q,v --modes base,fused"
R64="--rank 64 --targets all --modes base,fused"
for r in a b; do
  b qv-d1$r 1 $QV; b qv-d0$r 0 $QV; b r64-d1$r 1 $R64; b r64-d0$r 0 $R64
  [ $(( $(date +%s) - T0 )) -gt 500 ] && break
done
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
