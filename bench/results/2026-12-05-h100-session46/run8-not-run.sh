#!/bin/bash
# session 46 run 8: half tiles for top_k >= 2 as well (s3_half's general consumer, S3_F_HALFK, off by default):
# test_cuda, test_forward, the SGMM harness tests (half tiles at top-2 / top-3 in every plan shape) and memcheck, then
# bench_sgmm twice (whole / half tiles interleaved at r16 top-2, r64 top-1, r64 top-2, r16 / r32 top-1), then the 7B
# q,v r16 top-2 decode in merge mode with LSW_CUDA_SGMM_HALF=1 (default: top-1 only) and 2 (every top_k), two rounds
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz -C "$R")
cp build/prebuilt.txt $X/
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 215 bash scripts/gpu/session.sh $X/s cudatests forward sgmm > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; tail -n 7 $X/session.txt
grep -h "passed\|FAIL" $X/s/work/sgmm-tests.txt | tail -2; grep -h "ERROR SUMMARY" $X/s/work/sgmm-memcheck.txt
tail -1 $X/s/work/cudatests.log
rm -f $X/s/session.tgz; pack
for r in 1 2; do
  LSW_HARNESS_ONLY=bench_sgmm timeout 100 build/dev/bench_kernels $X/sgmm-k-$r.txt > /dev/null 2>&1
  echo "bench $r rc=$? $(( $(date +%s) - T0 ))s"
  grep -hE "tiles, q,v|FAIL" $X/sgmm-k-$r.txt | grep -v "^  " | cut -c16-140
  pack
done 2>&1 | tee $X/k.txt
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
for round in 1 2; do
  for v in 1 2; do
    env LSW_CUDA_SGMM_HALF=$v LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 150 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge --repetitions 3 --out "$X/merge-qv-r16-top2-half$v-$round.json" > "$X/merge-qv-r16-top2-half$v-$round.txt" 2>&1
    echo "half=$v $round rc=$? $(( $(date +%s) - T0 ))s"; grep -E "^lora-switch" $X/merge-qv-r16-top2-half$v-$round.txt | cut -c1-80
    pack
  done
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
