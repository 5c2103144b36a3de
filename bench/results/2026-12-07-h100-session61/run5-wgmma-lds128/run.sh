#!/bin/bash
# session 61, run 5 (2026-12-07 ~09:00 UTC, one NVIDIA H100 80GB HBM3; kind nvidia-h200, which gave an H100; tree
# e4ed999 (the wgmma consumer with 16-byte W0 loads and r64's chains without the jump table); prebuilt pack of e4ed999
# made on the development VM with nvcc 13.0, no cuBLAS, sm_90a). Made on the development machine first:
#   npm install && bash scripts/gpu/prepare.sh      # .gpu/node.xz .gpu/bundle .gpu/fx.tar.xz .gpu/pack/bin.tar.xz
# then the device tool, carrying those four paths, ran from the repository root:
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv -lms 250 > /tmp/clocks.csv 2>&1 & CP=$!
ST="sgmm ncu-wg wg-ab"; nvidia-smi --query-gpu=name --format=csv | grep -q H200 && ST="sgmm wg-ab ncu-wg readme-rows"
SESSION_BUDGET_S=420 bash scripts/gpu/remote.sh /tmp/s $ST > /tmp/s.log 2>&1; kill $CP
cp /tmp/clocks.csv /tmp/s.log $OUT/; cp /tmp/s/session.tgz /tmp/s/summary.txt $OUT/
# (wg-ab's rows here are named "default consumer" for the mma.sync one; its model A-B ran LSW_CUDA_SGMM_WGMMA=1
# against the then default, off)
