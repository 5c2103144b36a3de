#!/usr/bin/env bash
# Session 68 run 2 (2026-12-08 00:45-00:47 UTC), the same warm H100 80GB HBM3 as run 1: tree 1c0f1f2 against the
# library of 35da44d (the two-pass route_tail_regs), built on the development VM and carried as .gpu/old/liblsw.so.xz.
# The pack without the kernel harness (.gpu/packlib: build/dev/bench_kernels taken out, so that the carried files fit
# in the device tool's 64 MiB beside the old library); no fixtures (lib-ab needs none).
# Carried: .gpu/node.xz .gpu/bundle .gpu/packlib .gpu/old
mkdir -p .gpu/fx .gpu/pack && cp .gpu/packlib/bin.tar.xz .gpu/pack/bin.tar.xz && touch .gpu/fx.tar.xz
SESSION_BUDGET_S=300 bash scripts/gpu/remote.sh /tmp/r2 lib-ab > /tmp/s2.log 2>&1
