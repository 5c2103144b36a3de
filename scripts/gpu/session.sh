#!/usr/bin/env bash
# One GPU-machine session in one command (the machine has CUDA, cuBLAS, PyTorch, transformers, peft; no Node.js,
# no network).  Run from a source tree (repo root) that has, next to it under $GPU (default .gpu):
#   node.xz        xz-compressed node binary of the dev machine        (xz -T2 -c "$(command -v node)" > .gpu/node.xz)
#   bundle/        `npm run bundle` output (lora-switch.mjs + koffi)   (optional: CLI stages)
#   fx/            `npx tsx test/helpers/make-fixtures.ts fx --engine` (optional: transformers comparison)
# Usage: bash scripts/gpu/session.sh OUTDIR [stage ...]
# Stages: each st_NAME function below is the stage NAME (with - for _); an unknown stage prints the list.
# (`npm run test:gpu` runs the default: build cudatests forward sanitizer fold-tests e2e)
# `unpack` instead of `build`: binaries built on a machine with nvcc but no GPU (scripts/gpu/pack-prebuilt.sh ->
# $GPU/pack/bin.tar.xz), which saves the 3-4 minutes of the build; without cuBLAS there, so no cuBLAS prefill and no
# cuBLAS rows in the harness (decode does not use cuBLAS).  Then cudatests runs test_cuda directly (no ctest tree).
# Every stage logs to OUTDIR/work/<stage>.log; a summary table is printed last and everything is packed into
# OUTDIR/session.tgz (the device tool returns at most 8 files).  A failing stage does not stop the others.
# SESSION_BUDGET_S (default 540): stages stop being started, and the running one is cut, when it is spent.
set -u
TOP=$(mkdir -p "$1" && cd "$1" && pwd); shift
OUT="$TOP/work"; mkdir -p "$OUT"
T_END=$(( $(date +%s) + ${SESSION_BUDGET_S:-540} ))
GPU=${GPU:-$(pwd)/.gpu}
STAGES=("$@"); [ ${#STAGES[@]} -gt 0 ] || STAGES=(build cudatests forward sanitizer fold-tests e2e)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
mkdir -p "$GPU/bin"
if [ -f "$GPU/node.xz" ] && ! command -v node > /dev/null && [ ! -x "$GPU/bin/node" ]; then xz -dc "$GPU/node.xz" > "$GPU/bin/node" && chmod +x "$GPU/bin/node"; fi
export PATH="$GPU/bin:$PATH"
export LSW_NATIVE_LIB=$(pwd)/build/native/liblsw.so
# prebuilt test binaries carry the packing machine's rpath: find the library here first
export LD_LIBRARY_PATH="$(pwd)/build/native${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
CLI="$GPU/bundle/lora-switch.mjs"; [ -f "$CLI" ] || CLI="$(pwd)/bin/run.js"
export OUT GPU CLI LSW_NATIVE_LIB PATH
declare -A RESULT; declare -A SECS
run_stage() {
  local name=$1; shift
  local t0=$(date +%s)
  echo "=== $name: $*" | tee -a "$OUT/session.log"
  local left=$(( T_END - $(date +%s) ))
  if [ $left -le 5 ]; then RESULT[$name]=skipped; SECS[$name]=0; echo "=== $name: skipped (budget spent)"; return; fi
  # every function goes along (stages share helpers such as ab_r64)
  timeout --signal=TERM $left bash -c "$(declare -f); $1" > "$OUT/$name.log" 2>&1
  local rc=$?
  RESULT[$name]=$rc; SECS[$name]=$(( $(date +%s) - t0 ))
  tail -n 25 "$OUT/$name.log"
  echo "=== $name: rc=$rc (${SECS[$name]} s)" | tee -a "$OUT/session.log"
}
st_build() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  cmake -S cuda -B build/native-cmake -DCMAKE_BUILD_TYPE=Release -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$(pwd)/build/native" || return 1
  cmake --build build/native-cmake -j "$(nproc)" & local p=$!
  bash cuda/dev/build.sh; local r=$?
  wait $p || return 1
  [ $r -eq 0 ] || return $r
  g++ -std=c++17 -O2 -Icuda/include cuda/dev/test_forward.cpp -Lbuild/native -llsw -Wl,-rpath,"$(pwd)/build/native" -o build/dev/test_forward
  cp build/dev/ptxas.txt "$OUT/" 2>/dev/null; true; }
st_cudatests() {
  if [ -f build/native-cmake/CTestTestfile.cmake ]; then LSW_REQUIRE_GPU=1 ctest --test-dir build/native-cmake --output-on-failure
  else LSW_REQUIRE_GPU=1 build/native-cmake/test_cuda; fi; }
# test_cuda with the settings given (VAR=value ...) into $OUT/test-cuda-NAME.txt, its last lines tagged with them
# (the last 20 on a failure): `test_cuda_with NAME VAR=value ...`
test_cuda_with() {
  local n=$1; shift
  env "$@" LSW_REQUIRE_GPU=1 build/native-cmake/test_cuda > "$OUT/test-cuda-$n.txt" 2>&1 ||
    { tail -n 20 "$OUT/test-cuda-$n.txt"; return 1; }
  tail -n 2 "$OUT/test-cuda-$n.txt" | sed "s/^/test_cuda, $*: /"; }
# CPU == CUDA end to end (st_e2e) with the settings given (VAR=value ...) into $OUT/e2e-cuda-NAME.json and
# $OUT/e2e-NAME.txt, its last lines tagged with them (the last 20 on a failure): `e2e_with NAME VAR=value ...`
e2e_with() {
  local n=$1; shift
  env "$@" LSW_CLI="$CLI" node scripts/gpu/e2e-cuda.mjs "$GPU/fx" "$OUT/e2e-cuda-$n.json" > "$OUT/e2e-$n.txt" 2>&1 ||
    { tail -n 20 "$OUT/e2e-$n.txt"; return 1; }
  tail -n 2 "$OUT/e2e-$n.txt" | sed "s/^/e2e, $*: /"; }
# the kernel harness's tests ONLY (LSW_HARNESS_ONLY, comma-separated) with the settings given (VAR=value ...), their
# report in $OUT/NAME.txt and their ok / FAIL counts printed with LABEL in front (the last 20 lines on a failure);
# with MEMCHECK=1 in front, under compute-sanitizer memcheck (its summary line printed too):
# `[MEMCHECK=1] harness_tests NAME ONLY LABEL [VAR=value ...]`
harness_tests() {
  local n=$1 only=$2 label=$3 r; shift 3
  if [ "${MEMCHECK:-0}" = 1 ]; then
    env "$@" LSW_HARNESS_ONLY="$only" compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > "$OUT/$n.txt" 2>&1; r=$?
    grep -h "ERROR SUMMARY" "$OUT/$n.txt" | sed "s/^/$label: /"
  else
    env "$@" LSW_HARNESS_ONLY="$only" ./build/dev/bench_kernels "$OUT/$n.txt" > /dev/null; r=$?
  fi
  grep -hE "^  (ok|FAIL)" "$OUT/$n.txt" | awk "{print \$1}" | sort | uniq -c | sed "s/^/$label: /"
  [ $r -eq 0 ] || tail -n 20 "$OUT/$n.txt"
  return $r; }
st_unpack() {
  [ -f "$GPU/pack/bin.tar.xz" ] || { echo "$GPU/pack/bin.tar.xz: missing (scripts/gpu/pack-prebuilt.sh)"; return 1; }
  tar -xJf "$GPU/pack/bin.tar.xz" && cat build/prebuilt.txt; }
# the third run switches the decode attention to the K/V tile kernel from 24 positions on (its greedy decode runs
# from 6 to 45 positions: both decode graphs, CPU logits compared at every step)
st_forward() {
  ./build/dev/test_forward && LSW_CUDA_PDL=1 ./build/dev/test_forward &&
  LSW_CUDA_ATTN_LONG=24 LSW_CUDA_VERBOSE=1 ./build/dev/test_forward > "$OUT/forward-attn-long.txt" 2>&1; local r=$?
  tail -n 4 "$OUT/forward-attn-long.txt"
  [ $r -eq 0 ] && grep -q "decode attention kernel 1 (from 24 positions)" "$OUT/forward-attn-long.txt"; }
st_kernels() { ./build/dev/bench_kernels "$OUT/cuda-kernels.txt"; }
st_sanitizer() {
  LSW_REQUIRE_GPU=1 LSW_SANITIZER_SMALL=1 compute-sanitizer --tool memcheck --error-exitcode 1 build/native-cmake/test_cuda; }
# every fixture case x mode x (greedy, seeded sampling) through the real CLI: CPU tokens/routes == CUDA ones
st_e2e() { LSW_CLI="$CLI" node scripts/gpu/e2e-cuda.mjs "$GPU/fx" "$OUT/e2e-cuda.json"; }
st_safetensors() {
  local w=/tmp/lsw-st; rm -rf $w; mkdir -p $w
  for m in "$GPU"/fx/models/*/; do node "$CLI" convert "$m" -o "$w/$(basename "$m").lsw" --json > /dev/null || return 1; done
  node "$CLI" convert "$GPU/fx/models/qwen2-f32-sharded" -o "$w/with-adapters.lsw" --adapter "$GPU/fx/adapters/qwen2-lsw-e4k2-all" --adapter "$GPU/fx/adapters/qwen2-peft-qv:0.5" --json > /dev/null || return 1
  python3 scripts/check_safetensors.py "$w"/*.lsw; }
st_compare() { python3 scripts/gpu/compare_transformers.py "$GPU/fx" --device cuda --dtype float64 && cp "$GPU/fx/compare.json" "$OUT/compare-transformers.json"; }
st_peer_quick() { python3 scripts/bench/torch_peer.py --quick --json "$OUT/peer-quick.json"; }
st_peer() { python3 scripts/bench/torch_peer.py --preset llama2-7b --json "$OUT/torch-llama2-7b.json"; }
# prefill rate at 2,048 prompt tokens (issue 4: >= 50 % of the measured bf16 matmul rate), both GEMM precisions
st_prefill() {
  node "$CLI" bench --backend cuda --preset llama2-7b --dtype bf16 --prompt-tokens 2048 --new-tokens 8 --modes base --precision fast --out "$OUT/bench-llama2-7b-prefill2048-fast.json" &&
  node "$CLI" bench --backend cuda --preset llama2-7b --dtype bf16 --prompt-tokens 2048 --new-tokens 8 --modes base --precision precise --out "$OUT/bench-llama2-7b-prefill2048-precise.json"; }
# the streaming SGMM (variant 3) on its own first: harness tests, then memcheck; writes sgmm-ok when all pass
st_sgmm() {
  LSW_HARNESS_ONLY=sgmm_tests ./build/dev/bench_kernels "$OUT/sgmm-tests.txt" &&
  LSW_HARNESS_ONLY=sgmm_tests compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > "$OUT/sgmm-memcheck.txt" 2>&1 &&
  touch "$OUT/sgmm-ok"; }
# merge mode with the streaming SGMM forced (only after st_sgmm passed)
st_bench_stream() {
  [ -f "$OUT/sgmm-ok" ] || { echo "st_sgmm did not pass: skipped"; return 1; }
  LSW_CUDA_SGMM_VARIANT=3 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge,fused --out "$OUT/bench-llama2-7b-qv-r16-sgmm-stream.json" &&
  LSW_CUDA_SGMM_VARIANT=3 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge --merge-prompt batched --repetitions 3 --out "$OUT/bench-llama2-7b-qv-r16-sgmm-stream-batched.json"; }
# decode attention: harness validation + timing, then base/fused decode with 4 and 8 positions in flight per warp
st_attn() {
  st_attn_tests &&
  node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,fused --repetitions 3 --out "$OUT/bench-llama2-7b-qv-r16-attn.json" &&
  LSW_CUDA_ATTN_P8=1 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,fused --repetitions 3 --out "$OUT/bench-llama2-7b-qv-r16-attn-p8.json"; }
# SGMM variants: harness tests + timing + the copy probe, then memcheck of the tests
st_sgmm_bench() {
  LSW_HARNESS_ONLY=sgmm ./build/dev/bench_kernels "$OUT/cuda-kernels-sgmm.txt" &&
  LSW_HARNESS_ONLY=sgmm_tests compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > "$OUT/sgmm-memcheck.txt" 2>&1; }
# the 7B linears graph section of the harness (base / fused, PDL)
st_k7b() { LSW_HARNESS_ONLY=bench_7b ./build/dev/bench_kernels "$OUT/cuda-kernels-7b.txt"; }
# Nsight Compute on the SGMM streaming kernel (variant 3, r16 top-2) and on the copy probe of its tile walk: speed of
# light, memory, occupancy, the per-reason stall averages and the executed warp instructions (needs a runtime where
# ncu reads the counters); then the streaming kernel's per-instruction source view (SASS, CSV) from a saved report
st_ncu_sgmm() {
  local k
  for k in sgmm_tc_stream_kernel sgmm_copy_tiles_kernel; do
    LSW_HARNESS_ONLY=bench_sgmm timeout 240 ncu --clock-control none --kernel-name "regex:$k" --launch-skip 3 --launch-count 1 \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section WarpStateStats \
      --section SchedulerStats --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,smsp__inst_executed.sum" \
      ./build/dev/bench_kernels > "$OUT/ncu-$k.txt" 2>&1 || return 1
  done
  LSW_HARNESS_ONLY=bench_sgmm timeout 240 ncu --clock-control none --kernel-name regex:sgmm_tc_stream_kernel --launch-skip 3 \
    --launch-count 1 --section SourceCounters --section WarpStateStats -f -o "$OUT/ncu-sgmm-src" ./build/dev/bench_kernels > /dev/null 2>&1 &&
    ncu --import "$OUT/ncu-sgmm-src.ncu-rep" --page source --print-source sass --csv > "$OUT/ncu-sgmm-source.csv" 2>&1
  rm -f "$OUT/ncu-sgmm-src.ncu-rep"
  cuobjdump -sass build/dev/bench_kernels 2> /dev/null | awk '/Function : .*sgmm_tc_stream_kernel.*6__half/{f=1; next} /Function :/{f=0} f' > "$OUT/sgmm-stream-f16.sass"
  true; }
# the decode attention (the main part of base's gap to its floor): harness timing, then Nsight Compute on the fused
# decode kernel at 712 positions (ncu cannot profile kernels inside the CLI process: "Failed to prepare kernel for
# profiling", with and without graphs, session 13; the harness profiles fine; nsys is not installed)
st_ncu_attn() {
  LSW_HARNESS_ONLY=bench_attention ./build/dev/bench_kernels "$OUT/attn-bench.txt" &&
  LSW_HARNESS_ONLY=bench_attention timeout 120 ncu --clock-control none --kernel-name regex:attn_decode_fused --launch-skip 20 \
    --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
    --section WarpStateStats --section SchedulerStats ./build/dev/bench_kernels > "$OUT/ncu-attn.txt" 2>&1; }
# fused LoRA: the harness's shrink / epilogue tests (separate shrink and shrink inside the GEMV launch) + memcheck
st_lora_tests() {
  LSW_HARNESS_ONLY=test_lora,test_lora_pdl_chain ./build/dev/bench_kernels "$OUT/cuda-kernels-lora.txt" &&
  LSW_HARNESS_ONLY=test_lora compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > "$OUT/lora-memcheck.txt" 2>&1; }
# the harness's sampling and router tests (test_sampling: route_n against the fp64 reference with 3 to 64 experts, the
# folded router with 8 and 12 experts; the layout from LSW_CUDA_ROUTE_WIDE as set)
st_route_tests() { LSW_HARNESS_ONLY=test_sampling ./build/dev/bench_kernels "$OUT/route-tests.txt"; }
# decode attention: the harness's tests and timing rows (both kernels)
st_attn_tests() { LSW_HARNESS_ONLY=test_attention,bench_attention ./build/dev/bench_kernels "$OUT/attn.txt"; }
# the attention tests (every decode kernel) under compute-sanitizer memcheck
st_attn_memcheck() {
  LSW_HARNESS_ONLY=test_attention compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > "$OUT/attn-memcheck.txt" 2>&1; local r=$?
  tail -n 3 "$OUT/attn-memcheck.txt"; return $r; }
# `bench_row TAG FILE ARGS...`: one `bench --backend cuda ARGS` process (environment settings from $BENCH_ENV), its
# JSON in $OUT/FILE, its result rows printed with TAG in front; a failing bench fails the row, not only the grep / sed
bench_row() {
  set -o pipefail
  local tag=$1 file=$2; shift 2
  env ${BENCH_ENV:-} node "$CLI" bench --backend cuda "$@" --out "$OUT/$file" | grep -E "^lora-switch" | sed "s|^|$tag: |"; }  # (| : tags may hold paths)
# the JSON file of one A-B row: `ab_file NAME SETTING` (setting "" = default; spaces, = and / made file-name safe)
ab_file() { echo "bench-llama2-7b-$1-$(echo "${2:-default}" | tr " /=" "__-").json"; }  # (- last: not a tr range)
# A-B in the whole decode: `ab_bench NAME "BENCH FLAGS" SETTING...` runs base + one mode, 3 repetitions, once per
# environment setting ("" = the defaults); JSON per setting, the result rows prefixed with the name and the setting
ab_bench() {
  local name=$1 flags=$2 cfg; shift 2
  for cfg in "$@"; do
    BENCH_ENV=$cfg bench_row "$name ${cfg:-default}" "$(ab_file "$name" "$cfg")" \
      --preset llama2-7b --experts 8 --top-k 2 $flags --repetitions 3 || return 1
  done; }
# all-linear r64 top-2, base and fused
ab_r64() { ab_bench all-r64 "--rank 64 --targets all --router pregated --modes base,fused" "$@"; }
# fused mode A-B: shrinks inside the GEMV launches with their A rows before the wait (default), after it
# (LSW_CUDA_FUSED_SHRINK=late), separate shrink launches (LSW_CUDA_FUSED_SHRINK=separate)
st_fused_ab() { ab_r64 "" "LSW_CUDA_FUSED_SHRINK=late" "LSW_CUDA_FUSED_SHRINK=separate"; }
# decode attention A-B in the whole model: kernel 0 (registers, default) / 1 (cp.async tiles), each without and with
# PDL for the attention launch (LSW_CUDA_PDL_ATTN=1: kernel 1 requests all its first tiles before the wait)
st_attn_ab() {
  local cfg
  for cfg in "LSW_CUDA_ATTN_VARIANT=0" "LSW_CUDA_ATTN_VARIANT=1" "LSW_CUDA_ATTN_VARIANT=0 LSW_CUDA_PDL_ATTN=1" "LSW_CUDA_ATTN_VARIANT=1 LSW_CUDA_PDL_ATTN=1"; do
    BENCH_ENV=$cfg bench_row "$cfg" "$(ab_file base "$cfg")" --preset llama2-7b --modes base --repetitions 3 || return 1
  done; }
# KV cache element type in the whole 7B decode: base at the benchmark's 512-token prompt (f32 / f16 / bf16) and at a
# 3,968-token prompt (f32 / f16, 100 new tokens); kv-modes: every mode with an f16 cache (q,v r16; all-linear r64)
st_kv_ab() { st_kv_base && st_kv_modes; }
st_kv_base() {
  local kv
  for kv in f32 f16 bf16; do
    bench_row "p512 kv $kv" "bench-llama2-7b-base-kv-$kv.json" --preset llama2-7b --modes base --repetitions 3 --kv-cache $kv || return 1
  done
  for kv in f32 f16; do
    bench_row "p3968 kv $kv" "bench-llama2-7b-base-p3968-kv-$kv.json" --preset llama2-7b --modes base --prompt-tokens 3968 --new-tokens 100 --repetitions 3 --kv-cache $kv || return 1
  done; }
st_kv_modes() {
  node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --kv-cache f16 --out "$OUT/bench-llama2-7b-qv-r16-kv-f16.json" &&
  node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 64 --targets all --router pregated --modes base,fused --kv-cache f16 --out "$OUT/bench-llama2-7b-all-r64-kv-f16.json"; }
# RMSNorm folded into the decode GEMVs (NormFold): the harness's tests (+ the GEMV tests around it) and memcheck
st_fold_tests() {
  LSW_HARNESS_ONLY=test_norm_fold,test_swiglu_fold,test_gemv,test_gemv_pdl,test_lora_pdl_chain ./build/dev/bench_kernels "$OUT/cuda-kernels-fold.txt" &&
  LSW_HARNESS_ONLY=test_norm_fold,test_swiglu_fold compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > "$OUT/fold-memcheck.txt" 2>&1; }
# the folds in the whole decode: both (default), RMSNorm only, neither
st_fold_ab() { ab_r64 "" "LSW_CUDA_SWIGLU_FOLD=0" "LSW_CUDA_NORM_FOLD=0 LSW_CUDA_SWIGLU_FOLD=0"; }
# session 17 (run 6): every fused-LoRA launch forced to GEMV variant 10 (4 rows per 2 warps); the tuner over every
# variant (v11 / v12 too)
st_s17_ab() { ab_r64 "" "LSW_CUDA_GEMV_LORA_VARIANT=10" "LSW_CUDA_GEMV_MAX_VARIANT=12"; }
# session 22: the GEMV tuner over v1..v11 (default) against v1..v10 (before), interleaved: base twice, q,v r16 in every
# fused-side mode, all-linear r64
st_tune_ab() {
  ab_bench base-1 "--modes base" "" "LSW_CUDA_GEMV_MAX_VARIANT=10" &&
  ab_bench base-2 "--modes base" "" "LSW_CUDA_GEMV_MAX_VARIANT=10" &&
  ab_bench qv-r16 "--rank 16 --targets q,v --router pregated --modes base,fused,merge" "" "LSW_CUDA_GEMV_MAX_VARIANT=10" &&
  ab_r64 "" "LSW_CUDA_GEMV_MAX_VARIANT=10"; }
# in-kernel-shrink launches past one wave on variant 10 (the default since session 17) against the plain choice of
# each shape (before), for all-linear r64, q,v r16 and layer-wise q,v r16
st_lorav_ab() {
  ab_r64 "" "LSW_CUDA_GEMV_LORA_DEFAULT=0" &&
  ab_bench qv-r16 "--rank 16 --targets q,v --router pregated --modes base,fused" "" "LSW_CUDA_GEMV_LORA_DEFAULT=0" &&
  ab_bench qv-r16-lw "--rank 16 --targets q,v --router layerwise --modes base,fused" "" "LSW_CUDA_GEMV_LORA_DEFAULT=0"; }
# where the GEMVs trigger their PDL dependents: after their main loop (default) / at their start
st_trig_ab() { ab_r64 "" "LSW_CUDA_GEMV_TRIGGER=start"; }
# PDL for the attention / SwiGLU launches (LSW_CUDA_PDL_ATTN / LSW_CUDA_PDL_NORM) in base and all-linear fused: with the
# LoRA epilogue at the tail of q,k,v and gate,up, an early start of the next launch could hide it
st_pdlx_ab() { ab_r64 "" "LSW_CUDA_PDL_ATTN=1" "LSW_CUDA_PDL_NORM=1" "LSW_CUDA_PDL_ATTN=1 LSW_CUDA_PDL_NORM=1"; }
# the README's lora-switch rows, one bench process each (as session 38's run 8): q,v r16 every mode; all-linear r64
# base / fused; layer-wise q,v r16; the batched merge prompt; all-linear r64 unfused; base of the grouped-query presets
st_readme_rows() {
  local L="--preset llama2-7b --experts 8 --top-k 2" r
  bench_row qv-r16 bench-qv-r16.json $L --rank 16 --targets q,v --router pregated &&
  bench_row all-r64 bench-all-r64.json $L --rank 64 --targets all --router pregated --modes base,fused &&
  bench_row qv-r16-lw bench-qv-r16-lw.json $L --rank 16 --targets q,v --router layerwise --repetitions 3 &&
  bench_row qv-r16-batched bench-qv-r16-batched.json $L --rank 16 --targets q,v --router pregated --modes base,merge --merge-prompt batched --repetitions 3 &&
  bench_row all-r64-unfused bench-all-r64-unfused.json $L --rank 64 --targets all --router pregated --modes base,unfused --repetitions 3 || return 1
  for r in llama3-8b mistral-7b qwen2.5-7b; do bench_row "gqa-$r" "bench-gqa-$r.json" --preset $r --modes base --repetitions 3 || return 1; done; }
# the SGMM harness's bench for one "rank,top_k" case in N processes (files NAME-1.txt ..), printing the rows that
# match the extended regex RE: `sgmm_procs NAME CASE N RE`
sgmm_procs() {
  local name=$1 case=$2 n=$3 re=$4 i
  for i in $(seq 1 "$n"); do
    LSW_HARNESS_ONLY=bench_sgmm LSW_BENCH_SGMM_CASE=$case ./build/dev/bench_kernels "$OUT/$name-$i.txt" > /dev/null || return 1
    grep -h "% of copy" "$OUT/$name-$i.txt" | grep -E "$re" | sed "s/^/$name process $i: /"
  done; }
# the SGMM harness at r64 top-2 (the issue's >= 85 % of copy), three processes: the default plan and the forced ones
st_sgmm_r64k2() { sgmm_procs sgmm-r64k2 64,2 3 "stream( q,v|, contiguous|, lockstep)"; }
# the SGMM's wgmma consumer (sgmm.cu s3_wg_*, session 61; default where top_k x max rank is 128): test_cuda with it
# wherever it applies (LSW_CUDA_SGMM_WGMMA=2: every merge against the CPU backend), the harness's SGMM cases where
# top_k x rank is 64 or 128 (A-B rows, mma.sync / wgmma, with the bits compared; r64 top-2 in three processes), then
# the 7B q,v merge: r64 top-2 (the default, then without it: LSW_CUDA_SGMM_WGMMA=0), r32 top-2 and r64 top-1 (the
# default, then with it: =2; top-1 with LSW_CUDA_SGMM_HALF=0 too).  The `sgmm` stage runs its harness tests (every
# plan shape, fp64 and bits against the one-shot kernel) and their memcheck.
st_wg_ab() {
  test_cuda_with wgmma LSW_CUDA_SGMM_WGMMA=2 || return 1
  st_wg_kernel &&
    sgmm_procs sgmm-wg-r32k2 32,2 1 "stream( q,v|, mma.sync consumer|, wgmma consumer)" &&
    sgmm_procs sgmm-wg-r64k1 64,1 1 "stream( q,v|, mma.sync consumer|, wgmma consumer)" &&
    ab_bench qv-r64-merge "--rank 64 --targets q,v --router pregated --modes base,merge" "" "LSW_CUDA_SGMM_WGMMA=0" &&
    ab_bench qv-r32-merge "--rank 32 --targets q,v --router pregated --modes base,merge" "" "LSW_CUDA_SGMM_WGMMA=2" &&
    for cfg in "" "LSW_CUDA_SGMM_WGMMA=2 LSW_CUDA_SGMM_HALF=0"; do  # top-1: the wgmma consumer runs in whole tiles
      BENCH_ENV=$cfg bench_row "qv-r64k1-merge ${cfg:-default}" "$(ab_file qv-r64k1-merge "$cfg")" \
        --preset llama2-7b --experts 8 --top-k 1 --rank 64 --targets q,v --router pregated --modes base,merge --repetitions 3 || return 1
    done; }
# layer-wise q,v r16 base + fused, the defaults against one setting, two interleaved rounds: `ab_lw TAG SETTING`
ab_lw() {
  local i
  for i in 1 2; do
    ab_bench "qv-r16-lw-$1$i" "--rank 16 --targets q,v --router layerwise --modes base,fused" "" "$2" || return 1
  done; }
# a layer-wise router in the q,k,v launch's shrink blocks (LoraRoute, session 62; LSW_CUDA_ROUTE_IN_SHRINK=0: its own
# launch): test_cuda with it off (the default has it on), the harness's LoRA tests (the route_n comparison in every
# variant) and their memcheck, then the decode A-B
st_rs_ab() {
  test_cuda_with route-launch LSW_CUDA_ROUTE_IN_SHRINK=0 || return 1
  st_lora_tests || return 1
  grep -h "router in the shrink" "$OUT/cuda-kernels-lora.txt" | awk "{print \$1}" | sort | uniq -c
  ab_lw rs "LSW_CUDA_ROUTE_IN_SHRINK=0"; }
# this tree's library against another build of it carried as $GPU/old/liblsw.so[.xz] (LSW_NATIVE_LIB per process), for
# device-code changes that keep every result's bits and so have no switch: layer-wise and pre-gated q,v r16 fused
# (two interleaved rounds each), then all-linear r64 fused
st_lib_ab() {
  [ -f "$GPU/old/liblsw.so" ] || { [ -f "$GPU/old/liblsw.so.xz" ] && xz -dc "$GPU/old/liblsw.so.xz" > "$GPU/old/liblsw.so"; } ||
    { echo "$GPU/old/liblsw.so(.xz): missing"; return 1; }
  local o="LSW_NATIVE_LIB=$GPU/old/liblsw.so" i
  for i in 1 2; do
    ab_bench "qv-r16-lw-lib$i" "--rank 16 --targets q,v --router layerwise --modes base,fused" "" "$o" || return 1
    ab_bench "qv-r16-lib$i" "--rank 16 --targets q,v --router pregated --modes base,fused" "" "$o" || return 1
  done
  ab_r64 "" "$o"; }
# what the layer-wise router in the q,k,v launch's shrink blocks costs in the 7B linears chain (harness bench_7b_route:
# base, q,v r16 deferred pre-gated, the same routed by the router's dots and by the down GEMV's partial logits; model
# launch configuration) into $OUT/NAME.txt, then, where the pack has the trace build (LSW_PACK_TRACE=1
# scripts/gpu/pack-prebuilt.sh), the block timelines of the model-config chains (trace_7b: fold-model,
# qv16-defer-model, qv16-route-model, qv16-routep-model) read by cuda/dev/trace_gemv.py --phases into
# $OUT/NAME-trace.txt; the .bin files (~15 MB each) are deleted, so session.tgz stays under the device tool's file
# limit.  `route_chain_run NAME` (the caller's environment applies)
route_chain_run() {
  local n=$1 r
  LSW_HARNESS_ONLY=bench_7b_route ./build/dev/bench_kernels "$OUT/$n.txt" || return 1
  grep -E "against base|partial logits:" "$OUT/$n.txt"
  [ -x build/dev/bench_kernels_trace ] || { echo "no build/dev/bench_kernels_trace in the pack: timelines skipped"; return 0; }
  mkdir -p "$OUT/$n-tr"
  LSW_HARNESS_ONLY=trace_7b ./build/dev/bench_kernels_trace "$OUT/$n-tr/trace-7b.txt" > /dev/null || return 1
  python3 cuda/dev/trace_gemv.py --phases "$OUT/$n-tr/trace-fold-model.bin" "$OUT/$n-tr/trace-qv16-defer-model.bin" \
    "$OUT/$n-tr/trace-qv16-route-model.bin" "$OUT/$n-tr/trace-qv16-routep-model.bin" > "$OUT/$n-trace.txt" 2>&1; r=$?
  rm -f "$OUT/$n-tr"/*.bin
  grep -E "first start|qkv" "$OUT/$n-trace.txt"; return $r; }
st_route_chain() { route_chain_run route-chain; }
# the router's partial logits from the producer GEMV (LSW_CUDA_ROUTE_PARTS, default 1 since session 68; 0: the routing
# shrink blocks' own dots): the harness's test_route_parts and its memcheck, test_cuda and CPU == CUDA end to end with
# it off (the default's ran in cudatests and e2e), then layer-wise q,v r16 fused in the whole decode (default, off),
# two interleaved rounds
st_parts_ab() {
  set -o pipefail
  harness_tests route-parts-tests test_route_parts "router partials tests" || return 1
  MEMCHECK=1 harness_tests route-parts-memcheck test_route_parts "router partials tests under memcheck" || return 1
  test_cuda_with parts0 LSW_CUDA_ROUTE_PARTS=0 || return 1
  e2e_with parts0 LSW_CUDA_ROUTE_PARTS=0 || return 1
  ab_lw parts "LSW_CUDA_ROUTE_PARTS=0"; }
# route_block's layouts (LSW_CUDA_ROUTE_WIDE, default 1: a thread per 16-byte chunk of every expert's row, with <= 8
# experts the selection in registers; 0: a warp per expert and the shared-memory tail, session 23's): the harness's
# router tests and route-chain with each, then layer-wise q,v r16 fused and merge (route_n launches) in the whole
# decode, two interleaved rounds
st_route_ab() {
  set -o pipefail
  local w i
  for w in 1 0; do
    harness_tests "route-tests-w$w" test_sampling "wide=$w tests" LSW_CUDA_ROUTE_WIDE=$w || return 1
    LSW_CUDA_ROUTE_WIDE=$w route_chain_run "route-chain-w$w" | sed "s/^/wide=$w: /" || return 1
  done
  for i in 1 2; do
    ab_bench "qv-r16-lw-w$i" "--rank 16 --targets q,v --router layerwise --modes base,fused,merge" "" "LSW_CUDA_ROUTE_WIDE=0" || return 1
  done; }
# the LoRA GEMV blocks' trusted half-way look (LSW_CUDA_LORA_TRUST_LOOK, default 1; 0: thread 0 polls the shrink
# counter after the main loop whatever its look saw): the harness's LoRA tests with it off (the default's ran in
# lora-tests), then all-linear r64 fused, two interleaved rounds
st_lt_ab() {
  harness_tests cuda-kernels-lora-untrusted test_lora,test_lora_pdl_chain "LoRA tests, LSW_CUDA_LORA_TRUST_LOOK=0" LSW_CUDA_LORA_TRUST_LOOK=0 || return 1
  local i
  for i in 1 2; do ab_bench "all-r64-lt$i" "--rank 64 --targets all --router pregated --modes base,fused" "" "LSW_CUDA_LORA_TRUST_LOOK=0" || return 1; done; }
# the kernel part of wg-ab alone: r64 top-2 in the harness, three processes (mma.sync / wgmma rows, bits compared)
st_wg_kernel() { sgmm_procs sgmm-wg-r64k2 64,2 3 "stream( q,v|, mma.sync consumer|, wgmma consumer)"; }
# Nsight Compute on the SGMM at r64 top-2 (harness case 64,2), the default kernel and the wgmma one (mangled names: the
# template argument is Li0 / Li1 since session 62, Lb0 / Lb1 before): duration, DRAM throughput, executed warp
# instructions, issue activity and stall reasons.
# Where the card's memory is not the limit (the H100s at ~85 % of copy) the A-B rows cannot show an instruction saving;
# these counters can.
st_ncu_wg() {
  local k
  for k in sgmm_tc_stream_kernelI6__halfLi0 sgmm_tc_stream_kernelI6__halfLi1; do
    LSW_HARNESS_ONLY=bench_sgmm LSW_BENCH_SGMM_CASE=64,2 timeout 200 ncu --clock-control none --kernel-name-base mangled \
      --kernel-name "regex:$k" --launch-skip 3 --launch-count 1 --section SpeedOfLight --section WarpStateStats \
      --section SchedulerStats --metrics "smsp__inst_executed.sum,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
      ./build/dev/bench_kernels > "$OUT/ncu-wg-$k.txt" 2>&1 || return 1
    grep -E "Duration|DRAM Throughput|inst_executed.sum|Issue Slots Busy|Issued Warp|No Eligible|Eligible Warps" \
      "$OUT/ncu-wg-$k.txt" | sed "s/^/$k: /"
  done; }
# the harness's PDL ordering tests (GEMV chain with a PDL RMSNorm, decode attention after a late producer, LoRA chain)
st_pdl_tests() { LSW_HARNESS_ONLY=test_gemv_pdl,test_attention,test_lora_pdl_chain ./build/dev/bench_kernels "$OUT/cuda-kernels-pdl.txt"; }
# PDL scope A-B on the base decode (default: GEMVs only; none; + norms; + attention)
st_pdl_ab() { ab_bench base-pdl "--modes base" "" "LSW_CUDA_PDL=0" "LSW_CUDA_PDL_NORM=1" "LSW_CUDA_PDL_ATTN=1"; }
for s in "${STAGES[@]}"; do
  fn="st_${s//-/_}"
  if declare -F "$fn" > /dev/null; then run_stage "$s" "$fn"
  else RESULT[$s]=unknown; echo "unknown stage $s (stages: $(declare -F | sed -n 's/^declare -f st_//p' | tr _ - | tr '\n' ' '))"; fi
done
echo; echo "stage            rc   seconds"
for s in "${STAGES[@]}"; do printf '%-16s %-7s %s\n' "$s" "${RESULT[$s]:-?}" "${SECS[$s]:-?}"; done | tee "$TOP/summary.txt"
tar czf "$TOP/session.tgz" -C "$OUT" . && echo "packed $TOP/session.tgz"
