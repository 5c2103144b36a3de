#!/bin/bash
# session 23 run 4: the router rewrite (16-byte loads, exp once per expert) with the RMSNorm folded into decode-time
# routers (RouteFold) + the defer_expand review mend: tests (test_cuda, test_forward, memcheck, fold harness, e2e,
# harness test_sampling / test_lora / test_attention + memcheck of test_lora), bench-final, layer-wise q,v A-B
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
GPU=$R/.gpu SESSION_BUDGET_S=300 timeout 320 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer fold-tests e2e bench-final > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
LSW_HARNESS_ONLY=test_sampling,test_lora,test_attention timeout 100 ./build/dev/bench_kernels $X/harness-tests.txt > /dev/null 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-tests.txt | tail -1)"
grep -E "FAIL" $X/harness-tests.txt | head -5
LSW_HARNESS_ONLY=test_lora timeout 60 compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > $X/lora-memcheck.txt 2>&1; echo "lora memcheck rc=$? $(( $(date +%s) - T0 ))s $(grep -E 'ERROR SUMMARY|^validation' $X/lora-memcheck.txt | tail -2 | tr '\n' ' ')"
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { # name fold flags...
  local n=$1 f=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_ROUTE_FOLD=$f timeout 60 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [route fold=$f] rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
LW="--router layerwise --rank 16 --targets q,v --modes base,fused,merge"
for r in a b; do
  b lw-f1$r 1 $LW; b lw-f0$r 0 $LW
  [ $(( $(date +%s) - T0 )) -gt 540 ] && break
done
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
