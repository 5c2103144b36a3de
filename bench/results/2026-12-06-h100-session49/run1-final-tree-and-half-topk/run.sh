#!/bin/bash
# session 49, one H200 call: (A) the final tree's library (5944010; cuda/ unchanged since) with the CLI bundle of
# 830728c (bench's merge share per layer): the 7B benches the README reports; (B) session 46's half tiles for
# top_k >= 2 (pack-halfk, built at 736d6b3 + half-topk diff, off by default): test_cuda + SGMM harness tests with
# memcheck, bench_sgmm whole/half interleaved, and the 7B q,v r16 top-2 merge decode with LSW_CUDA_SGMM_HALF=1 and 2.
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
xz -dc .gpu/bundle/lora-switch.mjs.xz > .gpu/bundle/lora-switch.mjs
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
# ---- A: final tree
(cd .gpu && tar -xJf pack/bf.tar.xz -C "$R")
mkdir -p $X/a; cp build/prebuilt.txt $X/a/
b() {  # name, time limit, flags
  local n=$1 t=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout $t node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 "$@" --out "$X/a/$n.json" > "$X/a/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s"; grep -E "^lora-switch|^merge:" $X/a/$n.txt | cut -c1-120; pack
}
b qv-r16 100 --rank 16 --targets q,v --router pregated --modes base,merge,fused --repetitions 2
b all-r64 80 --rank 64 --targets all --router pregated --modes base,fused --repetitions 2
b lw-qv-r16 100 --rank 16 --targets q,v --router layerwise --modes base,merge,fused --repetitions 2
# ---- B: half tiles at top_k >= 2
rm -rf build
(cd .gpu && tar -xJf pack-halfk/bf.tar.xz -C "$R")
mkdir -p $X/b; cp build/prebuilt.txt $X/b/
GPU=$R/.gpu SESSION_BUDGET_S=100 timeout 110 bash scripts/gpu/session.sh $X/b/s cudatests sgmm > $X/b/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; tail -n 5 $X/b/session.txt
grep -h "passed\|FAIL" $X/b/s/work/sgmm-tests.txt 2>/dev/null | tail -2; grep -h "ERROR SUMMARY" $X/b/s/work/sgmm-memcheck.txt 2>/dev/null
rm -f $X/b/s/session.tgz; pack
LSW_HARNESS_ONLY=bench_sgmm timeout 80 build/dev/bench_kernels $X/b/sgmm-k-1.txt > /dev/null 2>&1
echo "bench rc=$? $(( $(date +%s) - T0 ))s"
grep -hE "tiles, q,v|FAIL" $X/b/sgmm-k-1.txt | grep -v "^  " | cut -c16-140
pack
for v in 1 2; do
  env LSW_CUDA_SGMM_HALF=$v LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge --repetitions 2 --out "$X/b/merge-qv-r16-top2-half$v.json" > "$X/b/merge-qv-r16-top2-half$v.txt" 2>&1
  echo "half=$v rc=$? $(( $(date +%s) - T0 ))s"; grep -E "^lora-switch|^merge:" $X/b/merge-qv-r16-top2-half$v.txt | cut -c1-100
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
