#!/bin/bash
# session 61, run 2 (2026-12-07 08:31 UTC, one NVIDIA H100 80GB HBM3 (another machine than run 1); kind nvidia-h200,
# which gave an H100; tree 824eea6; prebuilt pack of 824eea6's engine made on the development VM with nvcc 13.0, no
# cuBLAS, sm_90a). Made on the development machine first:
#   npm install && bash scripts/gpu/prepare.sh      # .gpu/node.xz .gpu/bundle .gpu/fx.tar.xz .gpu/pack/bin.tar.xz
# then the device tool, carrying those four paths, ran from the repository root:
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active \
  --format=csv -lms 250 > /tmp/clocks.csv 2>&1 &
ST="cudatests sgmm wg-ab"; nvidia-smi --query-gpu=name --format=csv | grep -q H200 && ST="$ST readme-rows"
SESSION_BUDGET_S=440 bash scripts/gpu/remote.sh /tmp/s $ST > /tmp/s.log 2>&1
pkill -f "nvidia-smi --query-gpu=timestamp"
cp /tmp/clocks.csv /tmp/s.log $OUT/; cp /tmp/s/session.tgz /tmp/s/summary.txt $OUT/
# As in run 1, every stage passed (session.log) but the call's result transfer failed (rc -1 after 184 s); a second
# call on the still-warm machine fetched the stage outputs:  cd /tmp/s && tar -czf $OUT/partial.tgz work
