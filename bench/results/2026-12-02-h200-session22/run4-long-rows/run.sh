#!/bin/bash
# session 22 run 4: the streaming GEMV (no per-stage barrier) for long rows only (LSW_CUDA_GEMV_STREAM_MIN_COLS=8192:
# the 7B down projection) and for all, one and two blocks per SM; whole 7B decode, interleaved twice; harness graphs
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
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { # name modes env...
  local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 120 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --modes $m --out "$X/$n.json" $ADA > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4 | tr '\n' ';')"
}
ADA=""
for r in 1 2; do
  b base-def-$r base LSW_CUDA_GEMV_STREAM=0
  b base-long2-$r base LSW_CUDA_GEMV_STREAM=1 LSW_CUDA_GEMV_STREAM_BPS=2 LSW_CUDA_GEMV_STREAM_MIN_COLS=8192
  b base-long1-$r base LSW_CUDA_GEMV_STREAM=1 LSW_CUDA_GEMV_STREAM_MIN_COLS=8192
  b base-all2-$r base LSW_CUDA_GEMV_STREAM=1 LSW_CUDA_GEMV_STREAM_BPS=2
done
ADA="--experts 8 --top-k 2 --rank 16 --targets q,v --router pregated"
b qv16-def base,fused LSW_CUDA_GEMV_STREAM=0
b qv16-long2 base,fused LSW_CUDA_GEMV_STREAM=1 LSW_CUDA_GEMV_STREAM_BPS=2 LSW_CUDA_GEMV_STREAM_MIN_COLS=8192
b qv16-merge-def merge LSW_CUDA_GEMV_STREAM=0
b qv16-merge-long2 merge LSW_CUDA_GEMV_STREAM=1 LSW_CUDA_GEMV_STREAM_BPS=2 LSW_CUDA_GEMV_STREAM_MIN_COLS=8192
echo "benches $(( $(date +%s) - T0 ))s"
for cfg in "2 8192" "1 8192"; do
  set -- $cfg
  LSW_CUDA_GEMV_STREAM_BPS=$1 LSW_CUDA_GEMV_STREAM_MIN_COLS=$2 LSW_HARNESS_ONLY=bench_stream timeout 120 ./build/dev/bench_kernels $X/stream-b$1-min$2.txt > /dev/null 2>&1
  echo "== bps $1 min cols $2 rc=$? $(( $(date +%s) - T0 ))s"
  grep -E "^\| (down|7B)" $X/stream-b$1-min$2.txt | awk -F'|' '{printf "%-45s %s %s\n", $2, $3, $5}'
done
LSW_CUDA_GEMV_STREAM=1 LSW_CUDA_GEMV_STREAM_BPS=2 LSW_CUDA_GEMV_STREAM_MIN_COLS=8192 timeout 120 ./build/dev/test_forward > $X/forward-long2.txt 2>&1; echo "forward long2 rc=$? $(tail -1 $X/forward-long2.txt)"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
