#!/bin/bash
# session 38 run 4: the greedy decode tail in one launch (lswc::greedy_advance; LSW_CUDA_GREEDY_TAIL=0 restores the
# argmax + advance + copy node) on top of run 1's lazy logits.  The GPU tests that reach it (test_cuda with the new
# greedy op checks, its memcheck, test_forward, end to end), then base A-B interleaved on llama2-7b and llama3-8b,
# and q,v r16 in every mode
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
grep -hE "^  FAIL|FAILED|MISMATCH|greedy sample" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 tail=$2 pre=$3; shift 3
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_BENCH_EVENTS=1 LSW_CUDA_GREEDY_TAIL=$tail timeout 100 node "$CLI" bench --backend cuda --preset $pre "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-5,8-9,16 | tr '\n' ';')"
  grep -E "^lswc: bench_decode" $X/$n.txt | tail -2
}
for r in 1 2 3; do
  b 7b-tail-$r 1 llama2-7b --modes base --repetitions 3
  b 7b-notail-$r 0 llama2-7b --modes base --repetitions 3
  b 8b-tail-$r 1 llama3-8b --modes base --repetitions 3
  b 8b-notail-$r 0 llama3-8b --modes base --repetitions 3
  pack
done
b qv16-tail 1 llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --repetitions 3
b qv16-notail 0 llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --repetitions 3
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
