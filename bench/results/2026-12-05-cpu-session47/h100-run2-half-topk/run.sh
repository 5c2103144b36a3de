#!/bin/bash
# session 47: session 46's half tiles for top_k >= 2 (half-topk-untested.diff) on this tree (S3_F_HALFK, off by default;
# LSW_CUDA_SGMM_HALF=2 turns it on in the model): test_cuda, the SGMM harness tests (half tiles at top-2 / top-3 in every
# plan shape) with memcheck, one bench_sgmm (whole / half tiles interleaved), then the 7B q,v r16 top-2 merge decode with
# LSW_CUDA_SGMM_HALF=1 (default: top-1 only) and 2 (every top_k)
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack-halfk/bf.tar.xz -C "$R")
cp build/prebuilt.txt $X/
GPU=$R/.gpu SESSION_BUDGET_S=230 timeout 240 bash scripts/gpu/session.sh $X/s cudatests sgmm > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; tail -n 5 $X/session.txt
grep -h "passed\|FAIL" $X/s/work/sgmm-tests.txt 2>/dev/null | tail -2; grep -h "ERROR SUMMARY" $X/s/work/sgmm-memcheck.txt 2>/dev/null
rm -f $X/s/session.tgz; pack
LSW_HARNESS_ONLY=bench_sgmm timeout 100 build/dev/bench_kernels $X/sgmm-k-1.txt > /dev/null 2>&1
echo "bench rc=$? $(( $(date +%s) - T0 ))s"
grep -hE "tiles, q,v|FAIL" $X/sgmm-k-1.txt | grep -v "^  " | cut -c16-140
pack
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
for v in 1 2; do
  env LSW_CUDA_SGMM_HALF=$v LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 110 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge --repetitions 2 --out "$X/merge-qv-r16-top2-half$v.json" > "$X/merge-qv-r16-top2-half$v.txt" 2>&1
  echo "half=$v rc=$? $(( $(date +%s) - T0 ))s"; grep -E "^lora-switch|^merge:" $X/merge-qv-r16-top2-half$v.txt | cut -c1-100
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
