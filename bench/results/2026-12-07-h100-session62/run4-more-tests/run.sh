#!/bin/bash
# session 62, run 4 (2026-12-07 ~10:12 UTC, the same warm H100 as runs 2-3, tree 7dc5545): the other GPU tests that
# read LoraEpilogue (its layout grew): test_forward, the harness's fold and PDL tests (and the folds' memcheck)
rm -rf /tmp/s5; SESSION_BUDGET_S=300 GPU=$(pwd)/.gpu bash scripts/gpu/session.sh /tmp/s5 forward fold-tests pdl-tests > /tmp/s5.log 2>&1; cp /tmp/s5.log $OUT/; cp /tmp/s5/session.tgz /tmp/s5/summary.txt $OUT/
