#!/bin/bash
# session 45 run 4: 2acbd2c (review mends: run_step's host bookkeeping moved into steps_done, decode_attn_variant_at)
# through the GPU tests that compare the GPU with the CPU backend: test_cuda, test_forward, end to end (generate on
# both backends); then the bench_decode diagnostic once (7B base, ordinary and LSW_CUDA_BENCH_AHEAD=1).
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz -C "$R")
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
cp build/prebuilt.txt $X/
GPU=$R/.gpu SESSION_BUDGET_S=300 timeout 315 bash scripts/gpu/session.sh $X/s cudatests forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null; grep -h "passed, " $X/s/work/*.log | tail -4
rm -f $X/s/session.tgz; pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
for v in def ahead; do
  lg=LSW_X=1; [ $v = ahead ] && lg=LSW_CUDA_BENCH_AHEAD=1
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $lg timeout 120 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --modes base --out "$X/$v.json" > "$X/$v.txt" 2>&1
  echo "$v rc=$? $(grep -E '^lora-switch' $X/$v.txt | tr -s ' ' | cut -d' ' -f2-5)"
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
