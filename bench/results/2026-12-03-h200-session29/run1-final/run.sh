#!/bin/bash
# session 29 run 1: the final tree (prebuilt.txt; cuda/ as session 27's ed29646 plus two comments).
# session.sh unpack cudatests forward sanitizer fold-tests lora-tests e2e compare, then bench-final bench-lw
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=330 timeout 345 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer fold-tests lora-tests e2e compare > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.log $X/s/work/*.txt 2>/dev/null | sort | uniq -c | head -30
grep -h "FAIL" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -20
tail -5 $X/s/work/compare.log 2>/dev/null
cp build/prebuilt.txt $X/
pack
left=$(( 580 - ($(date +%s) - T0) ))
if [ $left -gt 100 ]; then
  GPU=$R/.gpu SESSION_BUDGET_S=$(( left - 10 )) timeout $left bash scripts/gpu/session.sh $X/f bench-final bench-lw > $X/final.txt 2>&1; echo "final rc=$? $(( $(date +%s) - T0 ))s"
  cat $X/f/summary.txt 2>/dev/null
  for f in $X/f/work/bench-*.log; do echo "== $f"; grep -E "^lora-switch" $f | head -8; done
fi
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
