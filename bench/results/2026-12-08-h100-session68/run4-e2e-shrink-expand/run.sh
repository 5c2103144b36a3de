#!/usr/bin/env bash
# Session 68 run 4 (2026-12-08 01:23 UTC), the same warm H100 as run 3, same tree and pack: CPU == CUDA end to end
# with the expand back in the q,k,v launch's shrink blocks and the router partials on (the defaults that run 3's A-B
# chose, committed after it).  Carried: .gpu/node.xz .gpu/bundle .gpu/pack .gpu/fx.tar.xz
LSW_CUDA_EXPAND_IN_ATTN=0 SESSION_BUDGET_S=85 bash scripts/gpu/remote.sh /tmp/r4 e2e > /tmp/s4.log 2>&1
