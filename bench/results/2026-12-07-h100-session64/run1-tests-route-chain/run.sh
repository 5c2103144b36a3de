#!/usr/bin/env bash
# Session 64 run 1 (2026-12-07 14:45 UTC), one NVIDIA H100 80GB HBM3 (the call asked for nvidia-h200), tree 986eae0
# (the pack: LSW_PACK_TRACE=1 scripts/gpu/pack-prebuilt.sh). session.tgz did not come back (over the size limit: the
# traces' .bin files), so only s.log holds route-chain's output: its timelines' tail, not the harness rows.
# Carried: .gpu/node.xz .gpu/bundle .gpu/pack .gpu/fx.tar.xz
nvidia-smi --query-gpu=name --format=csv,noheader
(while true; do nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader >> /tmp/clocks.csv; sleep 2; done) & CP=$!
ST="cudatests lora-tests route-chain e2e sanitizer"   # (the H100 branch of the command's stage choice)
SESSION_BUDGET_S=540 bash scripts/gpu/remote.sh /tmp/r1 $ST > /tmp/s.log 2>&1
kill $CP
