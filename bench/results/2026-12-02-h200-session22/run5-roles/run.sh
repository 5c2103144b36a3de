#!/bin/bash
# session 22 run 5: per-role GEMV variants in the folded 7B decode graph (harness bench_roles), twice; the streaming
# kernel there with two blocks per SM
set -u
R=$(pwd)
tar -xJf .gpu/pack/bin.tar.xz
export LD_LIBRARY_PATH=$R/build/native
mkdir -p "$OUT/x"
X=$OUT/x
cp build/prebuilt.txt $X/
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
for r in 1 2; do
  LSW_CUDA_GEMV_STREAM_BPS=2 LSW_HARNESS_ONLY=bench_roles timeout 200 ./build/dev/bench_kernels $X/roles-$r.txt > /dev/null 2>&1
  echo "== round $r rc=$?"; grep -E "^  (q,k,v|o |gate|down|lm_)" $X/roles-$r.txt | grep -v "lswc:"
done
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
