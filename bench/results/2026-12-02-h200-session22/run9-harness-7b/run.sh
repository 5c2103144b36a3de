#!/bin/bash
# session 22 run 9: the harness 7B graphs (bench_7b) with the tuner over v1..v11 (the default since cb58f1d)
set -u
R=$(pwd)
tar -xJf .gpu/pack/bin.tar.xz
export LD_LIBRARY_PATH=$R/build/native
mkdir -p "$OUT/x"
X=$OUT/x
cp build/prebuilt.txt $X/
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
LSW_HARNESS_ONLY=bench_7b timeout 150 ./build/dev/bench_kernels $X/cuda-kernels-7b.txt > /dev/null 2>&1; echo "bench_7b rc=$?"
grep -E "^\| .*(linears only|linears\+norms|folded, PDL \(|autotuned, graph)" $X/cuda-kernels-7b.txt | head -12
grep -E "lswc: gemv f16" $X/cuda-kernels-7b.txt | head -5
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
