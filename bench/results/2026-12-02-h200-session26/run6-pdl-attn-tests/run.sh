#!/bin/bash
# session 26 run 6: run 4's binaries (20709a7) with LSW_CUDA_PDL_ATTN=1 (the decode attention launched with PDL, made
# the default after run 5): session.sh unpack cudatests forward e2e under that setting
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
LSW_CUDA_PDL_ATTN=1 GPU=$R/.gpu SESSION_BUDGET_S=120 timeout 130 bash scripts/gpu/session.sh $X/s unpack cudatests forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
(cd "$OUT" && tar -czf x.tgz x); rm -rf "$OUT/x"
