#!/bin/bash
# session 33 run 3: DRAM bytes per launch of the streaming SGMM under the L2-request knobs of runs 1-2 (the harness of
# run 2: harness.tar.xz), Nsight Compute, 4 metrics, the first 1000 launches of bench_sgmm (r16 top-2, then r64 top-1)
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
tar -xJf .gpu/pack/bin.tar.xz && tar -xJf .gpu/pack/harness.tar.xz && cp build/prebuilt.txt build/harness.txt $X/
ncu --version | tail -1 > $X/ncu-version.txt
LSW_HARNESS_ONLY=bench_sgmm timeout 420 ncu --clock-control none --kernel-name "regex:sgmm_tc_stream_kernel" --launch-count 1000 \
  --metrics dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,lts__t_sector_hit_rate.pct --csv --print-units base \
  ./build/dev/bench_kernels $X/harness.txt > $X/ncu.csv 2> $X/ncu.err
echo "ncu rc=$? $(( $(date +%s) - T0 ))s"; tail -3 $X/ncu.err; wc -l $X/ncu.csv
grep -E "tc stream q,v|L2 ahead" $X/harness.txt | head -30 | cut -c1-140
xz -T4 $X/ncu.csv
(cd "$OUT" && tar -czf x.tgz x); rm -rf "$OUT/x"
