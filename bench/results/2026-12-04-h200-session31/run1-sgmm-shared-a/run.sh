#!/bin/bash
# session 31 run 1: the streaming SGMM's shared-A mode (both groups of a block on one super-strip, one A block,
# alternate tiles; auto where it gives a wider super-strip: r64 top-1 w4 -> w8, r64 top-2 w1 -> w2).  The tree's GPU
# tests (test_cuda, the SGMM harness with forced-shared bit-identity checks and memcheck, test_forward, end to end),
# the harness's SGMM bench (shared off / on / auto interleaved x3), then Nsight Compute DRAM bytes of the streaming
# launches of the SGMM bench
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=260 timeout 275 bash scripts/gpu/session.sh $X/s unpack cudatests sgmm-bench forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -20
grep -hE "^  FAIL|not bit-identical|FAILED" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
grep -E "sgmm tc stream(,| q,v)|copy probe|tc stream plan" $X/s/work/cuda-kernels-sgmm.txt | grep -v " g[12] s" | head -40
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 sh=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_SGMM_SHARED=$sh LSW_CUDA_VERBOSE=1 timeout 90 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --router pregated "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6,14 | tr '\n' ';')"
}
b r64k1-off off --top-k 1 --rank 64 --targets q,v --modes base,merge
b r64k1-auto auto --top-k 1 --rank 64 --targets q,v --modes base,merge
pack
LEFT=$(( 560 - ($(date +%s) - T0) ))
LSW_HARNESS_REPS=1 LSW_HARNESS_ONLY=bench_sgmm timeout $LEFT ncu --clock-control none --kernel-name "regex:sgmm_tc_stream_kernel|sgmm_copy_tiles_kernel" --launch-count 400 \
  --metrics dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,lts__t_sector_hit_rate.pct --csv --print-units base \
  ./build/dev/bench_kernels $X/ncu-harness.txt > $X/ncu.csv 2> $X/ncu.err
echo "ncu rc=$? $(( $(date +%s) - T0 ))s"; tail -2 $X/ncu.err
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
