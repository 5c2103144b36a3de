#!/usr/bin/env bash
# Builds the engine, test_cuda, the kernel harness and test_forward HERE (a machine with nvcc; no GPU needed) and packs
# them for session.sh's `unpack` stage, so that a GPU call need not spend 3-4 minutes building:
#   bash scripts/gpu/pack-prebuilt.sh [OUT.tar.xz]        (default .gpu/pack/bin.tar.xz)
# then on the GPU machine: GPU=… bash scripts/gpu/session.sh OUT unpack cudatests forward attn-tests e2e …
# Where there is no cuBLAS header the library has no cuBLAS prefill and the harness no cuBLAS baselines; use the
# `build` stage for prefill numbers and for the record of a final tree.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUTF="${1:-$ROOT/.gpu/pack/bin.tar.xz}"
cd "$ROOT"
command -v nvcc > /dev/null || { echo "pack-prebuilt.sh: nvcc not found: the CUDA backend cannot be built here" >&2; exit 1; }
cmake -S cuda -B build/native-cmake -DCMAKE_BUILD_TYPE=Release -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$ROOT/build/native" > /dev/null
cmake --build build/native-cmake --parallel "${LSW_BUILD_JOBS:-2}" --target lsw test_cuda
strings build/native/liblsw.so | grep attn_decode_fused_kernel > /dev/null ||  # (no -q: no SIGPIPE under pipefail)
  { echo "pack-prebuilt.sh: build/native/liblsw.so has no CUDA backend (CMake did not find nvcc?)" >&2; exit 1; }
bash cuda/dev/build.sh
TRACE=()  # LSW_PACK_TRACE=1: the harness's GEMV timeline build too (build/dev/bench_kernels_trace, ~3 more minutes)
if [ "${LSW_PACK_TRACE:-0}" = 1 ]; then LSW_GEMV_TRACE=1 bash cuda/dev/build.sh; TRACE=(build/dev/bench_kernels_trace); fi
{ echo "prebuilt $(date -u '+%Y-%m-%d %H:%M UTC') on $(hostname): $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- cuda || echo ' + uncommitted cuda/ changes')";
  nvcc --version | tail -n 1; } > build/prebuilt.txt
mkdir -p "$(dirname "$OUTF")"
tar -cJf "$OUTF.tmp" build/prebuilt.txt build/native/liblsw.so build/native-cmake/test_cuda build/dev/bench_kernels build/dev/test_forward \
  "${TRACE[@]}"
mv "$OUTF.tmp" "$OUTF"
echo "pack-prebuilt.sh: $OUTF ($(du -h "$OUTF" | cut -f1)): $(head -n 1 build/prebuilt.txt)"
