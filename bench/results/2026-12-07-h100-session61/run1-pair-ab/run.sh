#!/bin/bash
# session 61, run 1 (2026-12-07 08:00 UTC, one NVIDIA H100 80GB HBM3; kind nvidia-h100-x1 after nvidia-h200 got no
# machine; tree 7b0b00c; prebuilt pack of 3a6bf32's engine made on the development VM with nvcc 13.0, no cuBLAS).
# Made on the development machine first:
#   npm install && bash scripts/gpu/prepare.sh      # .gpu/node.xz .gpu/bundle .gpu/fx.tar.xz .gpu/pack/bin.tar.xz
# then the device tool, carrying those four paths, ran from the repository root:
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv -lms 250 > $OUT/clocks.csv 2>&1 &
SESSION_BUDGET_S=480 bash scripts/gpu/remote.sh /tmp/s cudatests sgmm pair-ab sgmm-r64k2 readme-rows > /tmp/s.log 2>&1
pkill -f "nvidia-smi --query-gpu=timestamp"
cp /tmp/s/session.tgz /tmp/s/summary.txt /tmp/s.log $OUT/
# Every stage passed (session.log), but the call's result transfer failed after 282 s (rc -1, only clocks.csv came
# back); the machine was still warm, and a second call fetched the stage outputs:
#   cd /tmp/s && tar -czf $OUT/partial.tgz work
