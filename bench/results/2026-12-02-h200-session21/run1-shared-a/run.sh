#!/bin/bash
# session 21 run 1: prebuilt (dev machine, no cuBLAS) engine + harness; SGMM shared-A tests/bench, test_cuda,
# test_forward, e2e, whole-model merge A-B (LSW_CUDA_SGMM_SHARE=1 private A vs default)
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
tar -xJf .gpu/pack/bin.tar.xz
export LD_LIBRARY_PATH=$R/build/native
mkdir -p "$OUT/x"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > "$OUT/x/gpu.txt"
date -u >> "$OUT/x/gpu.txt"
LSW_REQUIRE_GPU=1 ./build/native-cmake/test_cuda > "$OUT/x/test_cuda.txt" 2>&1; echo "test_cuda rc=$?" | tee -a "$OUT/x/test_cuda.txt"
GPU=$R/.gpu SESSION_BUDGET_S=${BUDGET1:-330} bash scripts/gpu/session.sh "$OUT/s" sgmm-bench forward e2e > "$OUT/x/session-stdout.txt" 2>&1
tail -15 "$OUT/x/session-stdout.txt"
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
ab() { # name share args...
  local n=$1 sh=$2; shift 2
  LSW_CUDA_SGMM_SHARE=$sh timeout 150 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --router pregated --modes base,merge --merge-prompt batched --repetitions 3 "$@" --out "$OUT/x/bench-$n-share$sh.json" > "$OUT/x/bench-$n-share$sh.txt" 2>&1
  echo "$n share=$sh rc=$?"; grep -E "^ *(base|merge)" "$OUT/x/bench-$n-share$sh.txt" | head -4
}
ab qv-r64 1 --rank 64 --targets q,v
ab qv-r64 0 --rank 64 --targets q,v
ab qv-r16 1 --rank 16 --targets q,v
ab qv-r16 0 --rank 16 --targets q,v
ab qv-r64 1 --rank 64 --targets q,v
ab qv-r64 0 --rank 64 --targets q,v
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
