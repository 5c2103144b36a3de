#!/bin/bash
# session 52, run 4: why r64 top-2 lockstep varies (65-83 % of copy in one process): per-launch DRAM bytes and time
#   under Nsight Compute for the streaming SGMM (r64 top-2 only: LSW_BENCH_SGMM_CASE=64,2, a probe filter), lockstep
#   default and contiguous launches alike; then the same case timed plainly
set -u
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
export LSW_BENCH_SGMM_CASE=64,2
LSW_HARNESS_ONLY=bench_sgmm timeout 100 build/dev/bench_kernels $X/sgmm-bench-plain.txt > /dev/null 2>&1
echo "plain rc=$? $(( $(date +%s) - T0 ))s"
grep -hE "top-2" $X/sgmm-bench-plain.txt | grep "^|" | cut -c1-150 | head -12
LSW_HARNESS_ONLY=bench_sgmm timeout 300 ncu --clock-control none -k regex:sgmm_tc_stream_kernel --launch-count 60 \
  --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,lts__t_sectors_srcunit_tex_op_read.sum \
  --csv build/dev/bench_kernels $X/sgmm-bench-ncu.txt > $X/ncu.csv 2> $X/ncu.err
echo "ncu rc=$? $(( $(date +%s) - T0 ))s"; tail -3 $X/ncu.err
python3 - "$X/ncu.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
hdr = rows[0]; rows = rows[1:]
iid, iname, ival, iunit = hdr.index('ID'), hdr.index('Metric Name'), hdr.index('Metric Value'), hdr.index('Metric Unit')
m = collections.OrderedDict()
for r in rows:
    m.setdefault(r[iid], {})[r[iname]] = (r[ival], r[iunit])
for k, v in m.items():
    print(k, ' '.join(f"{n.split('__')[1][:22]}={x[0]}{x[1]}" for n, x in v.items()))
PY
(cd "$OUT" && tar -czf x.tgz x); rm -rf "$OUT/x"
