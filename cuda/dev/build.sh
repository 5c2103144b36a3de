#!/usr/bin/env bash
# Builds the CUDA kernel harness:  bash cuda/dev/build.sh && ./build/dev/bench_kernels [results.txt] [--quick]
# Links cuBLAS (for the baselines of issue 4) when its header is available.
# LSW_GEMV_TRACE=1: builds build/dev/bench_kernels_trace instead, with the GEMV timeline trace compiled in
#   (LSW_HARNESS_ONLY=trace_7b ./build/dev/bench_kernels_trace OUT/x.txt; python3 cuda/dev/trace_gemv.py OUT/trace-*.bin)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/build/dev"
mkdir -p "$OUT"
NVCC="${NVCC:-nvcc}"
ARCH="${LSW_CUDA_ARCH:--gencode arch=compute_90a,code=sm_90a}"  # sm_90a: the SGMM's wgmma consumer
EXTRA=()
BIN=bench_kernels PTX=ptxas.txt
if [ "${LSW_GEMV_TRACE:-0}" = 1 ]; then EXTRA+=(-DLSW_GEMV_TRACE=1); BIN=bench_kernels_trace PTX=ptxas-trace.txt; fi
if echo '#include <cublas_v2.h>' | "$NVCC" -x cu -E - -o /dev/null >/dev/null 2>&1; then
  EXTRA+=(-DLSW_DEV_CUBLAS=1 -lcublas)
  echo "build.sh: cuBLAS found: baselines enabled"
else
  echo "build.sh: no cuBLAS header: baselines disabled"
fi
SRC="$ROOT/cuda/src/cuda"
# shellcheck disable=SC2086
"$NVCC" -std=c++17 -O3 $ARCH -lineinfo -Xptxas -v -I"$ROOT/cuda/include" \
  "$ROOT/cuda/dev/bench_kernels.cu" "$SRC/gemv.cu" "$SRC/gemm.cu" "$SRC/sgmm.cu" "$SRC/elementwise.cu" \
  "$SRC/attention.cu" "$SRC/sample.cu" "$SRC/common.cu" \
  -o "$OUT/$BIN" "${EXTRA[@]}" 2> "$OUT/$PTX" || { cat "$OUT/$PTX"; exit 1; }
grep -E "error|warning" "$OUT/$PTX" | grep -v "ptxas info" || true
echo "build.sh: built $OUT/$BIN (resource report: $OUT/$PTX)"
[ "$BIN" = bench_kernels ] || exit 0

# End-to-end forward check (CPU vs CUDA through the C ABI) against the library the engine's CMake built.
LIB="$ROOT/build/native/liblsw.so"
if [ -f "$LIB" ]; then
  g++ -std=c++17 -O2 -I"$ROOT/cuda/include" "$ROOT/cuda/dev/test_forward.cpp" -L"$ROOT/build/native" -llsw \
    -Wl,-rpath,"$ROOT/build/native" -o "$OUT/test_forward"
  echo "build.sh: built $OUT/test_forward (uses $LIB)"
else
  echo "build.sh: $LIB not built yet (npm install / cmake): skipping test_forward"
fi
