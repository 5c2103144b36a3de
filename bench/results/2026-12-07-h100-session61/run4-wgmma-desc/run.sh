#!/bin/bash
# session 61, run 4 (2026-12-07 ~08:44 UTC, one NVIDIA H100 80GB HBM3; kind nvidia-h200, which gave an H100; tree
# 9ac6e08 (the wgmma consumer's descriptors stepped in their address word); prebuilt pack of 9ac6e08 made on the
# development VM with nvcc 13.0, no cuBLAS, sm_90a). Made on the development machine first:
#   npm install && bash scripts/gpu/prepare.sh      # .gpu/node.xz .gpu/bundle .gpu/fx.tar.xz .gpu/pack/bin.tar.xz
# then the device tool, carrying those four paths, ran from the repository root:
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv -lms 250 > /tmp/clocks.csv 2>&1 & CP=$!
ST="sgmm ncu-wg wg-ab"; nvidia-smi --query-gpu=name --format=csv | grep -q H200 && ST="sgmm wg-ab ncu-wg readme-rows"
SESSION_BUDGET_S=420 bash scripts/gpu/remote.sh /tmp/s $ST > /tmp/s.log 2>&1; kill $CP
cp /tmp/clocks.csv /tmp/s.log $OUT/; cp /tmp/s/session.tgz /tmp/s/summary.txt $OUT/
# then, on the still-warm machine, Nsight Compute's source counters of the wgmma kernel at r64 top-2
# (ncu-wg-source-hot.txt: every SASS instruction executed >= 1 M times, with its count in millions):
LSW_HARNESS_ONLY=bench_sgmm LSW_BENCH_SGMM_CASE=64,2 timeout 200 ncu --clock-control none --kernel-name-base mangled \
  --kernel-name regex:sgmm_tc_stream_kernelI6__halfLb1 --launch-skip 3 --launch-count 1 --section SourceCounters \
  -f -o /tmp/wgsrc ./build/dev/bench_kernels > /dev/null 2>&1
ncu --import /tmp/wgsrc.ncu-rep --page source --print-source sass --csv > $OUT/wg-source.csv 2>&1
