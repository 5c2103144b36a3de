#!/bin/bash
# session 59, run 1 (2026-12-07 05:00 UTC, one NVIDIA H100 80GB HBM3; tree 3aa833e, prebuilt pack of 3aa833e made on
# the development VM with nvcc 13.0 and no cuBLAS). Made on the development machine first:
#   npm install && bash scripts/gpu/prepare.sh      # .gpu/node.xz .gpu/bundle .gpu/fx.tar.xz .gpu/pack/bin.tar.xz
# then the device tool, carrying those four paths, ran from the repository root:
SESSION_BUDGET_S=470 bash scripts/gpu/remote.sh /tmp/s cudatests e2e sanitizer sgmm-r64k2 readme-rows
cp /tmp/s/session.tgz /tmp/s/summary.txt "$OUT"/
nvidia-smi --query-gpu=name --format=csv
