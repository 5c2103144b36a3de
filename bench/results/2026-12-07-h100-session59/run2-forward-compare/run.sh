#!/bin/bash
# session 59, run 2 (2026-12-07 05:05 UTC, the same H100, still warm; same carried files as run 1)
SESSION_BUDGET_S=300 bash scripts/gpu/remote.sh /tmp/s2 forward compare
cp /tmp/s2/session.tgz /tmp/s2/summary.txt "$OUT"/
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv
