#!/usr/bin/env bash
# Session 64 run 3 (2026-12-07 15:36 UTC), one NVIDIA H100 80GB HBM3 (the call asked for nvidia-h200): tree 986eae0
# plus route_block's wide layout AND its register tail (route_tail_regs, <= 8 experts), the router trace marks
# [11] / [12] / [13] (pack: LSW_PACK_TRACE=1 scripts/gpu/pack-prebuilt.sh, "986eae0 + uncommitted cuda/ changes";
# committed as the next commit). The traces' .bin files were deleted on the machine before the transfer; their
# analyses are trace-route-w1.txt / -w0.txt.  LSW_CUDA_ROUTE_WIDE=0 rows: the warp-per-expert layout and the
# shared-memory tail, i.e. 986eae0's routing.
# Carried: .gpu/node.xz .gpu/bundle .gpu/pack .gpu/fx.tar.xz
nvidia-smi --query-gpu=name --format=csv,noheader
(while true; do nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader >> /tmp/clocks.csv; sleep 2; done) & CP=$!
ST="cudatests lora-tests route-ab e2e sanitizer"   # (the H100 branch of the command's stage choice)
SESSION_BUDGET_S=540 bash scripts/gpu/remote.sh /tmp/r3 $ST > /tmp/s.log 2>&1
kill $CP
find /tmp/r3/work -name '*.bin' -delete; tar -cJf $OUT/work.tar.xz -C /tmp/r3 work
