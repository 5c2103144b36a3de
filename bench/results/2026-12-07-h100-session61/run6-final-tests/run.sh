#!/bin/bash
# session 61, run 6 (2026-12-07 ~09:10 UTC, one NVIDIA H100 80GB HBM3; kind nvidia-h200, which gave an H100; tree
# cb0ce9f, whose engine is 8bbbf47's (the wgmma consumer the default where top_k x max rank is 128, chosen on the host);
# prebuilt pack of 8bbbf47 made on the development VM with nvcc 13.0, no cuBLAS, sm_90a). Made on the development
# machine first:
#   npm install && bash scripts/gpu/prepare.sh      # .gpu/node.xz .gpu/bundle .gpu/fx.tar.xz .gpu/pack/bin.tar.xz
# then the device tool, carrying those four paths, ran from the repository root:
nvidia-smi --query-gpu=name --format=csv,noheader
ST="cudatests sgmm e2e sanitizer wg-kernel"; nvidia-smi --query-gpu=name --format=csv | grep -q H200 && ST="cudatests sgmm wg-kernel e2e sanitizer"
SESSION_BUDGET_S=150 bash scripts/gpu/remote.sh /tmp/s $ST > /tmp/s.log 2>&1
cp /tmp/s.log $OUT/; cp /tmp/s/session.tgz /tmp/s/summary.txt $OUT/
