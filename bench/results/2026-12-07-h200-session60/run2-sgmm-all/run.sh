#!/bin/bash
# session 60, run 2 (2026-12-07 ~06:00 UTC, the same H200, still warm after run 1; same prebuilt harness): the whole
# SGMM bench section of the harness (every rank / top-k case, every plan, the copy probes), two processes
ls build/dev | head
for i in 1 2; do
  LSW_HARNESS_ONLY=bench_sgmm timeout 150 ./build/dev/bench_kernels $OUT/sgmm-all-$i.txt > /dev/null
  grep -h "% of copy\|copy bandwidth" $OUT/sgmm-all-$i.txt | sed "s/^/p$i: /"
done
