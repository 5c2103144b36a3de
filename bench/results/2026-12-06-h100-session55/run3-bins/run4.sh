#!/bin/bash
# session 55, run 4: run 3 (the sampler's tests on pack-55b), then on an H200 run 2 (the README's rows) until the call's
# deadline
export DEADLINE=$(( $(date +%s) + 570 ))
bash .gpu/s55/run3.sh
if grep -q H200 "$OUT/x/gpu.txt" 2>/dev/null || nvidia-smi --query-gpu=name --format=csv | grep -q H200; then
  SKIP_UNPACK=1 bash .gpu/s55/run2.sh
else echo "not an H200: run 2 skipped"; fi
