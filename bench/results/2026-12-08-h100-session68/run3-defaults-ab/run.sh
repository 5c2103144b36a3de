#!/usr/bin/env bash
# Session 68 run 3 (2026-12-08 01:16-01:22 UTC), one NVIDIA H100 80GB HBM3 (the call asked for nvidia-h200; four
# calls after run 2 got no machine): tree 57931d8 (LSW_CUDA_ROUTE_PARTS on by default, LSW_CUDA_DL_RU=2 removed; the
# pack was built from that tree before its commit: "prebuilt 2026-12-08 00:54 UTC on vm: 1c0f1f2 + uncommitted cuda/
# changes").  Carried: .gpu/node.xz .gpu/bundle .gpu/pack .gpu/fx.tar.xz
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv -l 2 > /tmp/clocks.csv 2>&1 &
SESSION_BUDGET_S=370 bash scripts/gpu/remote.sh /tmp/r3 cudatests e2e sanitizer xa-ab parts-ab readme-rows > /tmp/s3.log 2>&1
# readme-rows ran out of the session budget in its third row (rc 124): bench-qv-r16.json and bench-all-r64.json are
# whole, the layer-wise row was cut off.  xa-ab and parts-ab are 57931d8's (LSW_CUDA_DL_B_L2=1 and
# LSW_CUDA_EXPAND_IN_ATTN=0 against the default in xa-ab; LSW_CUDA_ROUTE_PARTS=0 in parts-ab).
