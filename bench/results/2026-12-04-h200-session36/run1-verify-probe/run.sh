#!/bin/bash
# session 36 run 1: every GPU test on the final tree of session 35 plus the copy probes in other tile geometries
# (harness bench_sgmm, twice), then the SGMM sweep rows come along with them
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack/bf.tar.xz -C .gpu
SESSION_BUDGET_S=330 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer lora-tests sgmm fold-tests attn-tests e2e compare > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; tail -n 16 $X/session.txt
pack
for r in 1 2; do
  LSW_HARNESS_ONLY=bench_sgmm timeout 150 build/dev/bench_kernels $X/sgmm-probe-$r.txt > $X/sgmm-probe-$r.log 2>&1
  echo "probe $r rc=$? $(( $(date +%s) - T0 ))s"
  grep -hE "copy probe|sgmm tc stream q,v x32 layers r(16|64) top-(1|2) \(|FAIL" $X/sgmm-probe-$r.txt | cut -c1-140
  pack
done 2>&1 | tee $X/probe.txt
pack; rm -rf "$OUT/x"
