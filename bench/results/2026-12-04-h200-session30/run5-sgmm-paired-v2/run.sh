#!/bin/bash
# session 30 run 5: the paired walk v2 (slot-granular split over the blocks; both groups meet at a block-wide barrier at each unit, lockstep) against the plain walk; two resident groups of a block on the two halves of a double
# super-strip, row block by row block: LoRA-B rows from DRAM once for both).  The tree's GPU tests (test_cuda, the SGMM
# harness with its paired / plain bit-identity checks and memcheck, test_forward, end to end), then Nsight Compute DRAM
# bytes of every streaming launch of the SGMM bench, then the 7B q,v r16 `merge` bench paired / plain interleaved x2
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 215 bash scripts/gpu/session.sh $X/s unpack cudatests sgmm-bench forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -20
grep -hE "^  FAIL|not bit-identical|FAILED" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
grep -E "sgmm tc stream(,| q,v)|copy probe" $X/s/work/cuda-kernels-sgmm.txt | grep -v " g[12] s" | head -20
pack
LSW_HARNESS_ONLY=bench_sgmm timeout 160 ncu --clock-control none --kernel-name "regex:sgmm_tc_stream_kernel|sgmm_copy_tiles_kernel" --launch-count 520 \
  --metrics dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum,lts__t_sector_hit_rate.pct --csv --print-units base \
  ./build/dev/bench_kernels $X/ncu-harness.txt > $X/ncu.csv 2> $X/ncu.err
echo "ncu rc=$? $(( $(date +%s) - T0 ))s"; tail -2 $X/ncu.err
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 pr=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_SGMM_PAIR=$pr timeout 100 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 --router pregated "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6,14 | tr '\n' ';')"
}
for r in a b; do
  b qv-plain-$r 0 --rank 16 --targets q,v --modes base,merge
  b qv-pair-$r 1 --rank 16 --targets q,v --modes base,merge
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
