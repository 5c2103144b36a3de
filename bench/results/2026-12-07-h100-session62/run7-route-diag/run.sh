#!/bin/bash
# session 62, run 7 (2026-12-07 ~10:56 UTC, one NVIDIA H100 80GB HBM3; kind nvidia-h200, which gave an H100; tree
# 0ff13b8 (the timing-only routing diagnostic LSW_CUDA_ROUTE_DIAG=1 as a kernel instance of its own); prebuilt pack
# of that cuda/ tree made on the development VM with nvcc 13.0, no cuBLAS, sm_90a). Made on the development machine:
#   npm install && bash scripts/gpu/prepare.sh      # .gpu/node.xz .gpu/bundle .gpu/fx.tar.xz .gpu/pack/bin.tar.xz
# then the device tool, carrying those four paths, ran from the repository root (stage rsd-ab and LSW_CUDA_ROUTE_DIAG
# are in 0ff13b8's tree; both were removed after this run):
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -lms 250 > /tmp/clocks.csv 2>&1 & CP=$!
ST="cudatests rsd-ab"; nvidia-smi --query-gpu=name --format=csv | grep -q H200 && ST="cudatests rsd-ab wg-kernel ncu-wg readme-rows"
SESSION_BUDGET_S=540 bash scripts/gpu/remote.sh /tmp/s $ST > /tmp/s.log 2>&1; kill $CP
xz -c /tmp/clocks.csv > $OUT/clocks.csv.xz; cp /tmp/s.log $OUT/; cp /tmp/s/session.tgz /tmp/s/summary.txt $OUT/
