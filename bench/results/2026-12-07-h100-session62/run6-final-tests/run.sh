#!/bin/bash
# session 62, run 6 (2026-12-07 ~10:35 UTC, one NVIDIA H100 80GB HBM3; kind nvidia-h200, which gave an H100; tree
# f7801d1, the session's final engine (7dc5545's, plus a comment); prebuilt pack of f7801d1 made on the development VM
# with nvcc 13.0, no cuBLAS, sm_90a). The first call on this machine ran only the name check
# (`nvidia-smi ... | grep -q H200 || echo "not an H200: nothing run"`); this second one, on the warm machine:
rm -rf /tmp/s; SESSION_BUDGET_S=300 bash scripts/gpu/remote.sh /tmp/s cudatests lora-tests e2e > /tmp/s.log 2>&1; cp /tmp/s.log $OUT/; cp /tmp/s/session.tgz /tmp/s/summary.txt $OUT/
