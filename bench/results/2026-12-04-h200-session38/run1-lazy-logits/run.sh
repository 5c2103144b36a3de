#!/bin/bash
# session 38 run 1: the decode step's logits left on the device until asked for (LSW_CUDA_STEP_LOGITS=copy restores
# the per-step copy).  The GPU tests that reach the step (test_cuda, its memcheck, test_forward, end to end), then
# base A-B interleaved on llama2-7b and llama3-8b with LSW_CUDA_BENCH_EVENTS=1 (host vs device time per step)
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 215 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -30
grep -hE "^  FAIL|FAILED|MISMATCH" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 lg=$2 pre=$3; shift 3
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_BENCH_EVENTS=1 LSW_CUDA_STEP_LOGITS=$lg timeout 100 node "$CLI" bench --backend cuda --preset $pre "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -c1-100 | tr '\n' ';')"
  grep -E "^lswc: bench_decode" $X/$n.txt | tail -4
}
for r in 1 2; do
  b 7b-lazy-$r lazy llama2-7b --modes base --repetitions 3
  b 7b-copy-$r copy llama2-7b --modes base --repetitions 3
  pack
done
b 8b-lazy-1 lazy llama3-8b --modes base --repetitions 3
b 8b-copy-1 copy llama3-8b --modes base --repetitions 3
pack
[ $(( $(date +%s) - T0 )) -lt 450 ] && { b 8b-copy-2 copy llama3-8b --modes base --repetitions 3; b 8b-lazy-2 lazy llama3-8b --modes base --repetitions 3; }
pack
[ $(( $(date +%s) - T0 )) -lt 500 ] && b qv16-lazy lazy llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge,fused --repetitions 2
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
