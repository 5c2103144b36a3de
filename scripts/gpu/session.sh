#!/usr/bin/env bash
# One GPU-machine session in one command (the machine has CUDA, cuBLAS, PyTorch, transformers, peft; no Node.js,
# no network).  Run from a source tree (repo root) that has, next to it under $GPU (default .gpu):
#   node.xz        xz-compressed node binary of the dev machine        (xz -T2 -c "$(command -v node)" > .gpu/node.xz)
#   bundle/        `npm run bundle` output (lora-switch.mjs + koffi)   (optional: CLI stages)
#   fx/            `npx tsx test/helpers/make-fixtures.ts fx --engine` (optional: transformers comparison)
# Usage: bash scripts/gpu/session.sh OUTDIR [stage ...]
# Stages: build kernels forward cudatests sanitizer cli compare safetensors peer-quick peer bench
# Every stage logs to OUTDIR/work/<stage>.log; a summary table is printed last and everything is packed into
# OUTDIR/session.tgz (the device tool returns at most 8 files).  A failing stage does not stop the others.
# SESSION_BUDGET_S (default 540): stages stop being started, and the running one is cut, when it is spent.
set -u
TOP=$(mkdir -p "$1" && cd "$1" && pwd); shift
OUT="$TOP/work"; mkdir -p "$OUT"
T_END=$(( $(date +%s) + ${SESSION_BUDGET_S:-540} ))
GPU=${GPU:-$(pwd)/.gpu}
STAGES=("$@"); [ ${#STAGES[@]} -gt 0 ] || STAGES=(build cudatests forward kernels cli compare safetensors peer-quick)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
mkdir -p "$GPU/bin"
if [ -f "$GPU/node.xz" ] && [ ! -x "$GPU/bin/node" ]; then xz -dc "$GPU/node.xz" > "$GPU/bin/node" && chmod +x "$GPU/bin/node"; fi
export PATH="$GPU/bin:$PATH"
export LSW_NATIVE_LIB=$(pwd)/build/native/liblsw.so
CLI="$GPU/bundle/lora-switch.mjs"
export OUT GPU CLI LSW_NATIVE_LIB PATH
declare -A RESULT; declare -A SECS
run_stage() {
  local name=$1; shift
  local t0=$(date +%s)
  echo "=== $name: $*" | tee -a "$OUT/session.log"
  local left=$(( T_END - $(date +%s) ))
  if [ $left -le 5 ]; then RESULT[$name]=skipped; SECS[$name]=0; echo "=== $name: skipped (budget spent)"; return; fi
  timeout --signal=TERM $left bash -c "$(declare -f "$1"); $1" > "$OUT/$name.log" 2>&1
  local rc=$?
  RESULT[$name]=$rc; SECS[$name]=$(( $(date +%s) - t0 ))
  tail -n 25 "$OUT/$name.log"
  echo "=== $name: rc=$rc (${SECS[$name]} s)" | tee -a "$OUT/session.log"
}
st_build() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  cmake -S cuda -B build/native-cmake -DCMAKE_BUILD_TYPE=Release -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$(pwd)/build/native" \
    && cmake --build build/native-cmake -j 16 && bash cuda/dev/build.sh && cp build/dev/ptxas.txt "$OUT/" 2>/dev/null; }
st_cudatests() { LSW_REQUIRE_GPU=1 ctest --test-dir build/native-cmake --output-on-failure; }
st_forward() { ./build/dev/test_forward && LSW_CUDA_PDL=1 ./build/dev/test_forward; }
st_kernels() { ./build/dev/bench_kernels "$OUT/cuda-kernels.txt"; }
st_sanitizer() {
  local t; t=$(ls build/native-cmake/test_cuda 2>/dev/null || true)
  compute-sanitizer --tool memcheck --error-exitcode 1 ./build/dev/test_forward
  if [ -n "$t" ]; then LSW_SANITIZER_SMALL=1 compute-sanitizer --tool memcheck --error-exitcode 1 "$t"; fi; }
st_cli() {
  local fx="$GPU/fx" w=/tmp/lsw-cli; rm -rf $w; mkdir -p $w; local rc=0
  for m in "$fx"/models/*/; do
    local n; n=$(basename "$m")
    node "$CLI" convert "$m" -o "$w/$n.lsw" --json > /dev/null || { echo "convert $n failed"; rc=1; continue; }
    for mode in base; do
      node "$CLI" generate -m "$w/$n.lsw" -p "Hello world" --max-tokens 24 --temperature 0 --backend cpu --json > "$w/$n.cpu.json" || rc=1
      node "$CLI" generate -m "$w/$n.lsw" -p "Hello world" --max-tokens 24 --temperature 0 --backend cuda --json > "$w/$n.cuda.json" || rc=1
      python3 - "$w/$n.cpu.json" "$w/$n.cuda.json" "$n" <<'PY' || rc=1
import json,sys
a=json.load(open(sys.argv[1]));b=json.load(open(sys.argv[2]))
same=a["tokens"]==b["tokens"]
print(f'{sys.argv[3]:40s} cpu==cuda greedy tokens: {same}  cpu {a["timings"].get("tokens_per_s",0):.1f} tok/s  cuda {b["timings"].get("tokens_per_s",0):.1f} tok/s')
sys.exit(0 if same else 1)
PY
    done
  done
  return $rc; }
st_compare() { python3 scripts/gpu/compare_transformers.py "$GPU/fx" --device cuda --dtype float64 && cp "$GPU/fx/compare.json" "$OUT/compare-transformers.json"; }
st_safetensors() { for f in /tmp/lsw-cli/*.lsw; do python3 scripts/check_safetensors.py "$f" || return 1; done; }
st_peer_quick() { python3 scripts/bench/torch_peer.py --quick --json "$OUT/peer-quick.json"; }
st_peer() { python3 scripts/bench/torch_peer.py --preset llama2-7b --json "$OUT/torch-llama2-7b.json"; }
st_bench() {
  node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --out "$OUT/bench-llama2-7b-qv-r16.json" &&
  node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 64 --targets all --router pregated --modes base,fused,unfused --out "$OUT/bench-llama2-7b-all-r64.json"; }
for s in "${STAGES[@]}"; do
  fn="st_${s//-/_}"
  if declare -F "$fn" > /dev/null; then run_stage "$s" "$fn"; else echo "unknown stage $s"; fi
done
echo; echo "stage            rc   seconds"
for s in "${STAGES[@]}"; do printf '%-16s %-7s %s\n' "$s" "${RESULT[$s]:-?}" "${SECS[$s]:-?}"; done | tee "$TOP/summary.txt"
tar czf "$TOP/session.tgz" -C "$OUT" . && echo "packed $TOP/session.tgz"
