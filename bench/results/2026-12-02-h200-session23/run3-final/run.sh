#!/bin/bash
# session 23 run 3 (final, commit 4f3cab2 + the harness's wave-aware expectation): npm run test:gpu's stages on the
# prebuilt binaries, bench-final, harness test_lora / test_attention (+ memcheck of test_lora), layer-wise q,v r16
# fused with and without the deferred qkv expand
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
GPU=$R/.gpu SESSION_BUDGET_S=400 timeout 420 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer fold-tests e2e bench-final > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { # name defer flags...
  local n=$1 d=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_QKV_DEFER=$d timeout 60 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [defer=$d] rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
LW="--router layerwise --rank 16 --targets q,v --modes base,fused"
b lw-d1 1 $LW; b lw-d0 0 $LW
LSW_HARNESS_ONLY=test_lora,test_attention timeout 100 ./build/dev/bench_kernels $X/harness-tests.txt > /dev/null 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-tests.txt | tail -1)"
grep -E "FAIL" $X/harness-tests.txt | head -5
left=$(( 585 - ($(date +%s) - T0) ))
[ $left -gt 30 ] && { LSW_HARNESS_ONLY=test_lora timeout $left compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > $X/lora-memcheck.txt 2>&1; echo "lora memcheck rc=$? $(( $(date +%s) - T0 ))s $(grep -E 'ERROR SUMMARY|^validation' $X/lora-memcheck.txt | tail -2 | tr '\n' ' ')"; }
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
