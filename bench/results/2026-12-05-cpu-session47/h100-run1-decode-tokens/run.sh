#!/bin/bash
# Queued for the next session with a GPU (not run: no device could be lent in session 47). Copy it to .gpu/pack/ and
# carry .gpu/pack (bf.tar.xz from scripts/gpu/pack-prebuilt.sh on the tree to test), .gpu/node.xz and .gpu/bundle
# (dist/bundle after `node scripts/bundle.mjs`, less its liblsw.so); move bench/results aside for the call (the
# carry limit: the three come to about 51 MB).
# 1. test_cuda (now also lsw_model_bench_decode_tokens, CUDA against CPU: logits and merge counters) and test_forward;
# 2. llama2-7b, q,v r16 top-2 pre-gated, base / merge / fused with --decode-tokens random (the new default) and greedy
#    (what every GPU row so far used), two interleaved rounds: merges_per_token of the greedy rows says how many of the
#    README's merge steps merged, and the random rows are the merge numbers to keep.
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz -C "$R")
cp build/prebuilt.txt $X/
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 215 bash scripts/gpu/session.sh $X/s cudatests > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"; tail -n 7 $X/session.txt
grep -h "passed, \|FAIL" $X/s/work/*.log 2>/dev/null | tail -6
rm -f $X/s/session.tgz; pack
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
for round in 1; do
  for dt in random greedy; do
    env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 140 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge --repetitions 2 --decode-tokens $dt --out "$X/qv-r16-$dt-$round.json" > "$X/qv-r16-$dt-$round.txt" 2>&1
    echo "$dt $round rc=$? $(( $(date +%s) - T0 ))s"; grep -E "^lora-switch|^merge:" $X/qv-r16-$dt-$round.txt | cut -c1-150
    pack
  done
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
