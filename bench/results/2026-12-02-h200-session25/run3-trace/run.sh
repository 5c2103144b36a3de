#!/bin/bash
# session 25 run 3: GEMV timeline traces of the 7B graphs (dev build LSW_GEMV_TRACE=1 of the harness, trace_7b), with
# two new configurations that launch as the model has since session 24 (plain GEMVs trigger at their start, LoRA
# GEMVs late, folding GEMVs on PDL too): the folded base graph and the all-linear r64 top-2 fused graph with in-kernel
# shrinks; summaries by cuda/dev/trace_gemv.py --phases --placement
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
tar -xJf .gpu/pack/trace.tar.xz && cat build/prebuilt-trace.txt > $X/prebuilt.txt
LSW_HARNESS_ONLY=trace_7b timeout 200 ./build/dev/bench_kernels_trace $X/trace.txt > $X/trace-stdout.txt 2>&1; echo "trace rc=$? $(( $(date +%s) - T0 ))s"
grep -E "median|lswc: gemv" $X/trace.txt | head -20
python3 cuda/dev/trace_gemv.py --copy 4243 --phases --placement $X/trace-*.bin > $X/trace-summary.txt 2>&1; echo "summary rc=$?"
grep -E "^trace|time lost|^  (kernel|qkv|o |gate|down|lm_head)" $X/trace-summary.txt | head -80
grep -A8 "phases" $X/trace-summary.txt | head -40
mkdir -p $X/bins && for n in fold-model fused-ik-fold-model; do [ -f $X/trace-$n.bin ] && xz -T8 -c $X/trace-$n.bin > $X/bins/trace-$n.bin.xz; done; rm -f $X/trace-*.bin
ls -la $X/bins
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
