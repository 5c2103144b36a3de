#!/bin/bash
# session 55, run 7: run 5 (the sampler's tests on pack-55c), then on an H200 run 6 (run 2 on pack-55c: the README's rows) until
# the call's deadline
export DEADLINE=$(( $(date +%s) + 570 ))
bash .gpu/s55/run5.sh
if grep -q H200 "$OUT/x/gpu.txt" 2>/dev/null || nvidia-smi --query-gpu=name --format=csv | grep -q H200; then
  SKIP_UNPACK=1 bash .gpu/s55/run6.sh
else echo "not an H200: run 6 skipped"; fi
