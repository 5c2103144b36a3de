#!/bin/bash
# session 52, run 5: Nsight Compute's full view of one r64 top-2 streaming-SGMM launch (lockstep, the default) and one
#   r64 top-1 launch (half tiles) for comparison: instruction mix, warp stalls, pipe utilisation
set -u
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
for cs in 64,2 64,1; do
  LSW_BENCH_SGMM_CASE=$cs LSW_HARNESS_ONLY=bench_sgmm timeout 200 ncu --clock-control none -k regex:sgmm_tc_stream --launch-skip 3 --launch-count 1 \
    --set full --import-source no -o $X/rep-${cs/,/-top} build/dev/bench_kernels $X/bench-$cs.txt > $X/ncu-$cs.out 2> $X/ncu-$cs.err
  ncu -i $X/rep-${cs/,/-top}.ncu-rep --page details --print-details all > $X/ncu-full-${cs/,/-top}.txt 2>&1
  ncu -i $X/rep-${cs/,/-top}.ncu-rep --page raw > $X/ncu-raw-${cs/,/-top}.txt 2>&1
  grep -E "issue_stalled.*per_warp_active|inst_executed_pipe_.*sum |sm__inst_executed.sum |smsp__inst_executed_op_shared|l1tex__data_pipe_lsu_wavefronts_mem_shared.sum |sm__pipe_tensor" $X/ncu-raw-${cs/,/-top}.txt | head -60
  echo "ncu $cs rc=$? $(( $(date +%s) - T0 ))s"; tail -2 $X/ncu-$cs.err
  grep -E "Duration|DRAM Throughput|Executed Ipc Active|Issue Slots Busy|Issued Warp Per Scheduler|No Eligible|Active Warps Per Scheduler|Eligible Warps|Warp Cycles Per Issued|Executed Instructions  |Registers Per|Achieved Occupancy|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Compute \(SM\) Throughput|Memory Throughput" $X/ncu-full-${cs/,/-top}.txt | head -40
done
rm -f $X/*.ncu-rep; (cd "$OUT" && tar -czf x.tgz x); rm -rf "$OUT/x"
