#!/usr/bin/env bash
# Session 64 run 5 (2026-12-07 16:05 UTC), one NVIDIA H100 80GB HBM3 (the call asked for nvidia-h200): the GPU tests of
# c4866cc, the session's final engine (pack: scripts/gpu/pack-prebuilt.sh, "prebuilt 16:02 UTC on vm: c4866cc").
# Carried: .gpu/node.xz .gpu/bundle .gpu/pack .gpu/fx.tar.xz
nvidia-smi --query-gpu=name --format=csv,noheader
SESSION_BUDGET_S=200 bash scripts/gpu/remote.sh /tmp/r5 cudatests lora-tests e2e sanitizer > /tmp/s.log 2>&1
tar -cJf $OUT/work.tar.xz -C /tmp/r5 work
