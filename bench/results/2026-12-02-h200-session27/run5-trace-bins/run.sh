#!/bin/bash
# session 27 run 5 (run 4 again, every trace kept): GEMV timeline traces of the 7B graphs (dev build LSW_GEMV_TRACE=1 of the harness, trace_7b) with
# the plain GEMVs on the variants the model's PDL tuner chose in run 2 (q,k,v v10, o v11, gate,up v10, down v11,
# lm_head v11; LSW_CUDA_GEMV_SHAPES), so that `fold-model` is the model's current GEMV chain; summaries by
# cuda/dev/trace_gemv.py --phases --placement
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
tar -xJf .gpu/pack/trace.tar.xz && cat build/prebuilt-trace.txt > $X/prebuilt.txt
export LSW_CUDA_GEMV_SHAPES=12288x4096=10,4096x4096=11,22016x4096=10,4096x11008=11,32000x4096=11
LSW_HARNESS_ONLY=trace_7b timeout 240 ./build/dev/bench_kernels_trace $X/trace.txt > $X/trace-stdout.txt 2>&1; echo "trace rc=$? $(( $(date +%s) - T0 ))s"
grep -E "median|lswc: gemv" $X/trace.txt | head -20
python3 cuda/dev/trace_gemv.py --copy 4243 --phases --placement $X/trace-*.bin > $X/trace-summary.txt 2>&1; echo "summary rc=$?"
grep -E "^trace|time lost|^  (kernel|qkv|o |gate|down|lm_head)" $X/trace-summary.txt | head -80
mkdir -p $X/bins && for n in fold-model fused-ik-fold-model lin-nopdl fold-nopdl lin-pdl fold-pdl lin-pdl-start; do [ -f $X/trace-$n.bin ] && xz -T8 -c $X/trace-$n.bin > $X/bins/trace-$n.bin.xz; done; rm -f $X/trace-*.bin
ls -la $X/bins
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
