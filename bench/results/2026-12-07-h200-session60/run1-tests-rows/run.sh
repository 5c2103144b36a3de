#!/bin/bash
# session 60, run 1 (2026-12-07 05:56 UTC, one NVIDIA H200; tree 74991b2, whose engine is 3aa833e's; prebuilt pack of
# 3aa833e made on the development VM with nvcc 13.0 and no cuBLAS). Made on the development machine first:
#   npm install && bash scripts/gpu/prepare.sh      # .gpu/node.xz .gpu/bundle .gpu/fx.tar.xz .gpu/pack/bin.tar.xz
# then the device tool (kind nvidia-h200), carrying those four paths, ran from the repository root:
nvidia-smi --query-gpu=name --format=csv,noheader
if nvidia-smi --query-gpu=name --format=csv | grep -q H200; then
  SESSION_BUDGET_S=520 bash scripts/gpu/remote.sh /tmp/s cudatests e2e sanitizer sgmm-r64k2 readme-rows
  cp /tmp/s/session.tgz /tmp/s/summary.txt "$OUT"/
else echo "not an H200: nothing run"; fi
