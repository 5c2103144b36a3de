#!/usr/bin/env bash
# Session 65 run 1 (2026-12-07 18:14-18:19 UTC), one NVIDIA H100 80GB HBM3 (the call asked for nvidia-h100-x1 after
# eight calls for either kind got no machine): tree 6b69c6c, the routed q,k,v launch's expand left to the decode
# attention (pack: scripts/gpu/pack-prebuilt.sh, "prebuilt 2026-12-07 17:14 UTC on vm: 6b69c6c"; the timeline build
# was taken out of the pack, which with it was over the device tool's 64 MiB).
# Carried: .gpu/node.xz .gpu/bundle .gpu/pack .gpu/fx.tar.xz
# Call 1 (the tests; xa-ab stopped at its first step, the attention tests, 5 of 3,104 failed: see README.md):
nvidia-smi --query-gpu=name --format=csv,noheader
(while true; do nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader >> /tmp/clocks.csv; sleep 2; done) & CP=$!
ST="cudatests xa-ab lora-tests route-tests e2e sanitizer"
SESSION_BUDGET_S=360 bash scripts/gpu/remote.sh /tmp/r1 $ST > /tmp/s.log 2>&1
kill $CP
# Call 2, on the same warm machine, with session.sh's xa-ab going on past a failed attention test (as committed):
(while true; do nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader >> /tmp/clocks2.csv; sleep 2; done) & CP=$!
SESSION_BUDGET_S=330 bash scripts/gpu/remote.sh /tmp/r3 xa-ab > /tmp/s3.log 2>&1
kill $CP
# (a call between the two ran session.sh directly, without remote.sh's bundle unpack: its benches found no CLI; its
# harness rows equal call 2's within 0.02 ms, and it is not kept)
