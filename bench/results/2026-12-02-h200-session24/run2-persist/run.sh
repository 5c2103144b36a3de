#!/bin/bash
# session 24 run 2: persistent plain GEMVs (LSW_CUDA_GEMV_PERSIST=P blocks per SM, PDL also after a GEMV):
# correctness with P=2 (test_cuda, test_forward, harness GEMV / fold tests), harness 7B linears graph P=0 / 2,
# whole 7B base A-B (P = 0, 2, 2 with the late trigger, 3), interleaved
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
LSW_CUDA_GEMV_PERSIST=2 GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 80 bash scripts/gpu/session.sh $X/s unpack cudatests forward > $X/session.txt 2>&1; echo "session (P=2) rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
LSW_CUDA_GEMV_PERSIST=2 LSW_HARNESS_ONLY=test_gemv,test_gemv_pdl,test_norm_fold,test_swiglu_fold timeout 90 ./build/dev/bench_kernels $X/harness-tests-p2.txt > /dev/null 2>&1; echo "harness P=2 rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-tests-p2.txt | tail -1)"
grep -E "FAIL" $X/harness-tests-p2.txt | head -5
for p in 0 2; do
  LSW_CUDA_GEMV_PERSIST=$p LSW_HARNESS_ONLY=bench_7b timeout 90 ./build/dev/bench_kernels $X/k7b-p$p.txt > /dev/null 2>&1; echo "k7b P=$p rc=$? $(( $(date +%s) - T0 ))s"
  grep -E "graph|7B" $X/k7b-p$p.txt | grep "|" | head -8
done
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 60 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --modes base --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-5 | tr '\n' ';')"
}
for r in a b c; do
  b p0$r LSW_CUDA_GEMV_PERSIST=0
  b p2$r LSW_CUDA_GEMV_PERSIST=2
  b p2late$r LSW_CUDA_GEMV_PERSIST=2 LSW_CUDA_GEMV_PERSIST_TRIG=late
  b p3$r LSW_CUDA_GEMV_PERSIST=3
  [ $(( $(date +%s) - T0 )) -gt 420 ] && break
done
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
