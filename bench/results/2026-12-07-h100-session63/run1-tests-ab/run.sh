#!/usr/bin/env bash
# Session 63 run 1 (2026-12-07 13:02 UTC), one NVIDIA H100 80GB HBM3 (the call asked for nvidia-h200), tree 60d6038
# (engine of 0e832c4); the old library (.gpu/old/liblsw.so.xz) is the build of d75bdc5.
# Carried: .gpu/node.xz .gpu/bundle .gpu/pack .gpu/fx.tar.xz .gpu/old (scripts/gpu/prepare.sh, pack-prebuilt.sh)
nvidia-smi --query-gpu=name --format=csv,noheader
(while true; do nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader >> /tmp/clocks.csv; sleep 2; done) & CP=$!
ST="cudatests lora-tests lib-ab lt-ab e2e sanitizer rsa-ab"   # (the H100 branch of the command's stage choice)
SESSION_BUDGET_S=420 bash scripts/gpu/remote.sh /tmp/r1 $ST > /tmp/s.log 2>&1
kill $CP
