#!/bin/bash
# session 62, run 3 (2026-12-07 ~10:10 UTC, the same warm H100 80GB HBM3 as run 2, tree 7dc5545, the same pack; its
# files already unpacked by run 2): the README's lora-switch rows, one bench process each
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_throttle_reasons.active --format=csv -lms 250 > /tmp/clocks4.csv 2>&1 & CP=$!
rm -rf /tmp/s4; SESSION_BUDGET_S=400 GPU=$(pwd)/.gpu bash scripts/gpu/session.sh /tmp/s4 readme-rows > /tmp/s4.log 2>&1; kill $CP
xz -c /tmp/clocks4.csv > $OUT/clocks.csv.xz; cp /tmp/s4.log $OUT/; cp /tmp/s4/session.tgz /tmp/s4/summary.txt $OUT/
