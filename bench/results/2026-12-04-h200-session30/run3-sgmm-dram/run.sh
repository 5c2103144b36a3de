#!/bin/bash
# session 30 run 3: DRAM bytes of the streaming SGMM per launch (Nsight Compute, 4 metrics, every launch of the harness's
# bench_sgmm up to 700): does r64 top-1 read its LoRA-B rows from DRAM once per super-strip?
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
tar -xJf .gpu/pack/bin.tar.xz && cp build/prebuilt.txt $X/
ncu --version | tail -1 > $X/ncu-version.txt
LSW_HARNESS_ONLY=bench_sgmm timeout 500 ncu --clock-control none --kernel-name "regex:sgmm_tc_stream_kernel|sgmm_copy_tiles_kernel" --launch-count 700 \
  --metrics dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,lts__t_sector_hit_rate.pct --csv --print-units base \
  ./build/dev/bench_kernels $X/harness.txt > $X/ncu.csv 2> $X/ncu.err
echo "ncu rc=$? $(( $(date +%s) - T0 ))s"; tail -3 $X/ncu.err; wc -l $X/ncu.csv
grep -E "sgmm tc stream q,v|copy probe" $X/harness.txt | head
(cd "$OUT" && tar -czf x.tgz x); rm -rf "$OUT/x"
