#!/bin/bash
# session 61, run 3 (2026-12-07 ~08:45 UTC, the H100 of run 2, still held; tree 1315092, the pack of run 2 (824eea6's
# engine)): Nsight Compute on the SGMM at r64 top-2, the mma.sync kernel (Lb0) and the wgmma one (Lb1)
SESSION_BUDGET_S=430 bash scripts/gpu/remote.sh /tmp/s ncu-wg > /tmp/s.log 2>&1
# (the call also sampled clocks and ended with `pkill -f "nvidia-smi --query-gpu=timestamp"`, which matched the
# call's own shell: rc -1 and nothing came back -- the cause of runs 1 and 2's lost transfers too; a second call
# fetched /tmp/s/work)
