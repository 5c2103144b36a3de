#!/bin/bash
# session 46 run 6: the top-1 SGMM in half tiles, final plan (two groups, the widest super-strip, at most 4 half stages above
# 4 TB/s of peak memory bandwidth, else 3) as the default; test_cuda now with top-1 shapes; test_forward, the SGMM harness
# tests and memcheck, bench_sgmm twice (whole / half tiles interleaved at r16, r32, r64 top-1), then the 7B decode with
# a top-1 r64 q,v adapter in merge mode, half tiles on / off (LSW_CUDA_SGMM_HALF=0), two interleaved rounds
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
grep -h "passed, " $X/s/work/*.log 2>/dev/null | tail -4
rm -f $X/s/session.tgz; pack
for r in 1 2; do
  LSW_HARNESS_ONLY=bench_sgmm timeout 100 build/dev/bench_kernels $X/sgmm-final-$r.txt > /dev/null 2>&1
  echo "bench $r rc=$? $(( $(date +%s) - T0 ))s"
  grep -hE "tiles, q,v|FAIL|stream q,v x32 layers r(16|32|64) top-" $X/sgmm-final-$r.txt | grep -v "^  " | cut -c16-140
  pack
done 2>&1 | tee $X/final.txt
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
for round in 1 2; do
  for v in half whole; do
    lg=LSW_X=1; [ $v = whole ] && lg=LSW_CUDA_SGMM_HALF=0
    env LSW_CUDA_VERBOSE=1 LSW_NATIVE_LIB=$R/build/native/liblsw.so $lg timeout 150 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 1 --rank 64 --targets q,v --router pregated --modes base,merge --repetitions 3 --out "$X/merge-r64-top1-$v-$round.json" > "$X/merge-r64-top1-$v-$round.txt" 2>&1
    echo "$v $round rc=$? $(( $(date +%s) - T0 ))s"; grep -h "half tiles with" $X/merge-r64-top1-$v-$round.txt | head -1; grep -E "^lora-switch|merge|base" $X/merge-r64-top1-$v-$round.txt | grep -v "^ *$" | tail -4 | cut -c1-150
    pack
  done
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
