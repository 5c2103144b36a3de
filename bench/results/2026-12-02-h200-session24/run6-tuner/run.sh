#!/bin/bash
# session 24 run 6: why `base` differs from process to process on one machine (run 5: 3.716-3.790 ms/token): five
# base benches with LSW_CUDA_VERBOSE=1, which prints the GEMV tuner's per-shape timings and choices
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
GPU=$R/.gpu SESSION_BUDGET_S=30 timeout 40 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; echo "unpack rc=$?"
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
for r in 1 2 3 4 5 6; do
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_VERBOSE=1 timeout 70 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --modes base --out "$X/b$r.json" > "$X/b$r.txt" 2>&1
  echo "b$r rc=$? $(grep -E '^lora-switch' $X/b$r.txt | tr -s ' ' | cut -d' ' -f2-3) | $(grep -oE 'gemv f16 [0-9]+x[0-9]+ -> v[0-9]+' $X/b$r.txt | sed 's/gemv f16 //' | tr '\n' ' ')"
  [ $(( $(date +%s) - T0 )) -gt 200 ] && break
done
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
