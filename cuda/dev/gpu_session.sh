#!/usr/bin/env bash
# The CUDA backend's GPU session in one command (H200; no Node.js needed):
#   bash cuda/dev/gpu_session.sh OUTDIR
# builds liblsw.so with CMake (cuBLAS when CMake finds it) and the dev harness, then runs
#   test_cuda (LSW_REQUIRE_GPU=1)        CUDA vs CPU through the C ABI: ops, adapters in every mode, drift
#   test_forward                          backbone forward CPU vs CUDA (graph and eager), then with PDL
#   bench_kernels --quick                 kernel validation + timings (results file)
#   compute-sanitizer memcheck test_cuda  reduced sizes (LSW_SANITIZER_SMALL=1)
# Each stage logs to OUTDIR/<stage>.log (time-limited, a failing stage does not stop the others); a summary
# table ends the run and is written to OUTDIR/summary.txt.  Budget: ~6 minutes on an H200 with 16 cores.
set -u
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$(mkdir -p "${1:?usage: gpu_session.sh OUTDIR}" && cd "$1" && pwd)"
cd "$ROOT"
BUILD="$ROOT/build/native-cmake"
declare -a NAMES; declare -A RC; declare -A SECS
stage() {  # stage NAME TIMEOUT_S command...
  local name=$1 lim=$2; shift 2
  NAMES+=("$name")
  local t0=$(date +%s)
  echo "=== $name: $*" | tee -a "$OUT/session.log"
  timeout --signal=TERM "$lim" "$@" > "$OUT/$name.log" 2>&1
  RC[$name]=$?; SECS[$name]=$(( $(date +%s) - t0 ))
  tail -n 15 "$OUT/$name.log"
  echo "=== $name: rc=${RC[$name]} (${SECS[$name]} s)" | tee -a "$OUT/session.log"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nvcc --version | tail -2; date -u; git -C "$ROOT" log -1 --oneline; } > "$OUT/machine.txt" 2>&1
build() {  # the library and the harness (one long nvcc) compile side by side
  cmake -S cuda -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$ROOT/build/native" || return 1
  cmake --build "$BUILD" -j "$(nproc)" & local p=$!
  bash cuda/dev/build.sh; local r=$?
  wait $p || return 1
  [ $r -eq 0 ] || return $r
  g++ -std=c++17 -O2 -I"$ROOT/cuda/include" "$ROOT/cuda/dev/test_forward.cpp" -L"$ROOT/build/native" -llsw \
    -Wl,-rpath,"$ROOT/build/native" -o "$ROOT/build/dev/test_forward"
}
stage build 330 bash -c "$(declare -f build); BUILD='$BUILD'; ROOT='$ROOT'; build"
stage test_cuda 240 env LSW_REQUIRE_GPU=1 "$BUILD/test_cuda"
stage test_forward 120 bash -c "./build/dev/test_forward && LSW_CUDA_PDL=1 ./build/dev/test_forward"
stage bench_kernels 240 ./build/dev/bench_kernels "$OUT/cuda-kernels.txt" --quick
stage sanitizer 200 env LSW_REQUIRE_GPU=1 LSW_SANITIZER_SMALL=1 compute-sanitizer --tool memcheck --error-exitcode 1 "$BUILD/test_cuda"
{
  echo "stage            rc   seconds  result"
  for s in "${NAMES[@]}"; do
    line=$(grep -E "passed, [0-9]+ failed|validation:" "$OUT/$s.log" 2>/dev/null | tail -1)
    [ "$s" = sanitizer ] && line=$(grep -E "ERROR SUMMARY" "$OUT/$s.log" | tail -1)
    printf '%-16s %-4s %-8s %s\n' "$s" "${RC[$s]}" "${SECS[$s]}" "$line"
  done
} | tee "$OUT/summary.txt"
