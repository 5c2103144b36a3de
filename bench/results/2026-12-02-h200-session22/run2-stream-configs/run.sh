#!/bin/bash
# session 22 run 2: the streaming GEMV's configurations (blocks per SM, ring stages, trigger): per-kind chains and the
# 7B graphs against the default kernels (bench_stream), then the whole 7B base decode for two of them
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
LSW_HARNESS_ONLY=test_gemv_stream,test_swiglu_fold,test_norm_fold LSW_CUDA_GEMV_STREAM_STAGES=6 timeout 100 ./build/dev/bench_kernels $X/tests-s6.txt > /dev/null 2>&1; echo "tests S6 rc=$? $(tail -1 $X/tests-s6.txt)"
for cfg in "1 4 0" "1 6 0" "2 4 0" "2 6 0" "2 4 1000" "1 6 1000"; do
  set -- $cfg
  LSW_CUDA_GEMV_STREAM_BPS=$1 LSW_CUDA_GEMV_STREAM_STAGES=$2 LSW_CUDA_GEMV_STREAM_TRIGGER=$3 LSW_HARNESS_ONLY=bench_stream timeout 120 ./build/dev/bench_kernels $X/stream-b$1-s$2-t$3.txt > /dev/null 2>&1
  echo "== bps $1 stages $2 trig $3 rc=$? $(( $(date +%s) - T0 ))s"
  grep -E "^\| (qkv|o |gate|down|7B)" $X/stream-b$1-s$2-t$3.txt | awk -F'|' '{printf "%-45s %s %s\n", $2, $3, $5}'
done
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { # name env...
  local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 120 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --modes base --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | head -1)"
}
b base-def LSW_CUDA_GEMV_STREAM=0
b base-b2s4 LSW_CUDA_GEMV_STREAM=1 LSW_CUDA_GEMV_STREAM_BPS=2
b base-b1s6 LSW_CUDA_GEMV_STREAM=1 LSW_CUDA_GEMV_STREAM_STAGES=6
b base-b2s6 LSW_CUDA_GEMV_STREAM=1 LSW_CUDA_GEMV_STREAM_BPS=2 LSW_CUDA_GEMV_STREAM_STAGES=6
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
