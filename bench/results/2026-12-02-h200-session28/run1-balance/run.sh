#!/bin/bash
# session 28 run 1: tree 5ce9e19 (balanced in-kernel shrinks, LSW_CUDA_LORA_BALANCE, default on).  session.sh unpack
# cudatests forward sanitizer fold-tests lora-tests e2e; then all-linear r64 base,fused with the balanced shrinks
# against LSW_CUDA_LORA_BALANCE=0, interleaved; then the GEMV timeline trace (trace_7b, model configuration) if time
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
pack
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
R64="--modes base,fused --router pregated --rank 64 --targets all"
for r in a b; do b r64bal$r "$R64"; b r64old$r "$R64" LSW_CUDA_LORA_BALANCE=0; pack; done
[ $(( $(date +%s) - T0 )) -lt 430 ] && { b r64balc "$R64"; b r64oldc "$R64" LSW_CUDA_LORA_BALANCE=0; pack; }
if [ $(( $(date +%s) - T0 )) -lt 470 ] && [ -f .gpu/pack/trace.tar.xz ]; then
  tar -xJf .gpu/pack/trace.tar.xz && cat build/prebuilt-trace.txt >> $X/prebuilt.txt
  export LSW_CUDA_GEMV_SHAPES=12288x4096=10,4096x4096=11,22016x4096=10,4096x11008=11,32000x4096=11
  LSW_HARNESS_ONLY=trace_7b timeout $(( 560 - ($(date +%s) - T0) )) ./build/dev/bench_kernels_trace $X/trace.txt > $X/trace-stdout.txt 2>&1; echo "trace rc=$? $(( $(date +%s) - T0 ))s"
  unset LSW_CUDA_GEMV_SHAPES
  grep -E "median" $X/trace.txt | head -20
  python3 cuda/dev/trace_gemv.py --copy 4243 --phases --placement $X/trace-fused-ik-fold-model.bin $X/trace-fused-ik-fold-model-bal.bin $X/trace-fold-model.bin > $X/trace-summary.txt 2>&1; echo "summary rc=$?"
  grep -E "^trace|time lost|^  (kernel|qkv|o |gate|down|lm_head)" $X/trace-summary.txt | head -40
  rm -f $X/trace-*.bin
fi
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
