#!/bin/bash
# session 28 run 2: tree 4b72ee6 (LoRA GEMV blocks: up to 3 looks at the shrink counter, thread 0's post-loop wait
# skipped when its look saw t, store operands staged by cp.async).  session.sh unpack cudatests forward sanitizer
# fold-tests lora-tests e2e; then all-linear r64 base,fused: this tree (3 looks) / LSW_CUDA_LORA_LOOKS=1 / the library
# of 5ce9e19 with LSW_CUDA_LORA_BALANCE=0 (= the code before this session), interleaved; the GEMV timeline trace;
# then session.sh bench-final bench-lw (the README's table) if time is left
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=230 timeout 250 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer fold-tests lora-tests e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.log $X/s/work/*.txt 2>/dev/null | sort | uniq -c
grep -h "FAIL" $X/s/work/*.txt 2>/dev/null | head -20
cp build/prebuilt.txt $X/
xz -dc .gpu/pack/liblsw-5ce9e19.so.xz > $R/build/native/liblsw-old.so
pack
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 lib=$2 m=$3; shift 3
  env LSW_NATIVE_LIB=$R/build/native/$lib "$@" timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
R64="--modes base,fused --router pregated --rank 64 --targets all"
for r in a b c; do b r64new$r liblsw.so "$R64"; b r64look1$r liblsw.so "$R64" LSW_CUDA_LORA_LOOKS=1; b r64old$r liblsw-old.so "$R64" LSW_CUDA_LORA_BALANCE=0; done
pack
if [ -f .gpu/pack/trace.tar.xz ]; then
  tar -xJf .gpu/pack/trace.tar.xz && cat build/prebuilt-trace.txt >> $X/prebuilt.txt
  export LSW_CUDA_GEMV_SHAPES=12288x4096=10,4096x4096=11,22016x4096=10,4096x11008=11,32000x4096=11
  LSW_HARNESS_ONLY=trace_7b timeout 120 ./build/dev/bench_kernels_trace $X/trace.txt > $X/trace-stdout.txt 2>&1; echo "trace rc=$? $(( $(date +%s) - T0 ))s"
  unset LSW_CUDA_GEMV_SHAPES
  grep -E "median" $X/trace.txt | head -20
  python3 cuda/dev/trace_gemv.py --copy 4243 --phases --placement $X/trace-fused-ik-fold-model.bin $X/trace-fold-model.bin > $X/trace-summary.txt 2>&1; echo "summary rc=$?"
  grep -E "^trace|time lost|^  (kernel|qkv|o |gate|down|lm_head)" $X/trace-summary.txt | head -30
  rm -f $X/trace-*.bin
fi
pack
left=$(( 585 - ($(date +%s) - T0) ))
if [ $left -gt 100 ]; then
  GPU=$R/.gpu SESSION_BUDGET_S=$(( left - 10 )) timeout $left bash scripts/gpu/session.sh $X/f bench-final bench-lw > $X/final.txt 2>&1; echo "final rc=$? $(( $(date +%s) - T0 ))s"
  cat $X/f/summary.txt 2>/dev/null
  for f in $X/f/work/bench-*.log; do echo "== $f"; grep -E "^lora-switch" $f | head -8; done
fi
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
