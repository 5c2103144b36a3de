#!/bin/bash
# session 24 run 7: the GEMV target, measured as the cuBLAS baseline is (every 7B linear in one CUDA graph),
# in the configuration the model now uses for plain GEMVs (PDL, dependents triggered at the start): harness bench_7b,
# three processes
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
GPU=$R/.gpu SESSION_BUDGET_S=30 timeout 40 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; echo "unpack rc=$?"
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native
for r in 1 2 3 4; do
  LSW_HARNESS_ONLY=bench_7b timeout 60 ./build/dev/bench_kernels $X/k7b-$r.txt > /dev/null 2>&1; echo "k7b $r rc=$? $(( $(date +%s) - T0 ))s"
  grep -E "^\|.*(linears only|all linears only)" $X/k7b-$r.txt | cut -c1-130
  [ $(( $(date +%s) - T0 )) -gt 150 ] && break
done
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
