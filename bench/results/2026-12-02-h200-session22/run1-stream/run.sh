#!/bin/bash
# session 22 run 1: the streaming GEMV (variant 13): harness tests (+ memcheck), test_forward / test_cuda with it as
# the decode's choice, harness 7B graphs A-B, whole 7B decode A-B (LSW_CUDA_GEMV_STREAM=0/1, same binary)
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
tar -xJf .gpu/pack/bin.tar.xz
export LD_LIBRARY_PATH=$R/build/native
mkdir -p "$OUT/x" .gpu/bin
xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
X=$OUT/x
cp build/prebuilt.txt $X/
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
LSW_HARNESS_ONLY=test_gemv,test_gemv_stream,test_gemv_pdl,test_norm_fold,test_swiglu_fold timeout 200 ./build/dev/bench_kernels $X/harness-tests.txt > $X/harness-tests.log 2>&1; echo "harness tests rc=$? $(( $(date +%s) - T0 ))s"
grep -E "FAIL|validation:" $X/harness-tests.txt | head -20
LSW_CUDA_GEMV_STREAM=1 timeout 120 ./build/dev/test_forward > $X/forward-stream.txt 2>&1; echo "forward stream rc=$? $(tail -1 $X/forward-stream.txt)"
LSW_CUDA_GEMV_STREAM=1 LSW_REQUIRE_GPU=1 timeout 200 ./build/native-cmake/test_cuda > $X/test_cuda-stream.txt 2>&1; echo "test_cuda stream rc=$? $(tail -1 $X/test_cuda-stream.txt) $(( $(date +%s) - T0 ))s"
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { # name stream args...
  local n=$1 st=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_GEMV_STREAM=$st timeout 120 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --out "$X/$n.json" "$@" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | head -3 | tr '\n' ';')"
}
for r in 1 2; do
  b base-def-$r 0 --modes base
  b base-str-$r 1 --modes base
done
b qv16-def 0 --modes base,fused --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated
b qv16-str 1 --modes base,fused --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated
b r64-def 0 --modes base,fused --experts 8 --top-k 2 --rank 64 --targets all --router pregated
b r64-str 1 --modes base,fused --experts 8 --top-k 2 --rank 64 --targets all --router pregated
echo "benches done $(( $(date +%s) - T0 ))s"
LSW_HARNESS_ONLY=bench_7b timeout 240 ./build/dev/bench_kernels $X/bench7b.txt > $X/bench7b.log 2>&1; echo "bench_7b rc=$? $(( $(date +%s) - T0 ))s"
grep -E "streaming|linears only|folded, PDL \(" $X/bench7b.txt | head -30
LSW_SANITIZER_SMALL=1 LSW_HARNESS_ONLY=test_gemv_stream,test_swiglu_fold timeout 150 compute-sanitizer --tool memcheck ./build/dev/bench_kernels $X/memcheck-h.txt > $X/memcheck.log 2>&1; echo "memcheck rc=$? $(grep -E 'ERROR SUMMARY' $X/memcheck.log | tail -1) $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
