#!/usr/bin/env bash
# Session 68 run 1 (2026-12-08 00:36-00:44 UTC), one NVIDIA H100 80GB HBM3 (the call asked for nvidia-h200; three
# calls before it got no machine): tree 1c0f1f2 (pack: scripts/gpu/pack-prebuilt.sh, "prebuilt 2026-12-08 00:14 UTC on
# vm: 1c0f1f2").  Carried: .gpu/node.xz .gpu/bundle .gpu/pack .gpu/fx.tar.xz
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv -l 2 > /tmp/clocks.csv 2>&1 &
SESSION_BUDGET_S=530 bash scripts/gpu/remote.sh /tmp/r1 cudatests xa-ab parts-ab e2e lora-tests route-tests sanitizer forward readme-rows > /tmp/s.log 2>&1
# (s.log: the session's log; the large text files are kept xz-compressed)
