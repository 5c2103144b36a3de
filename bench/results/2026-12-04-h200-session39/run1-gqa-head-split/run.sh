#!/bin/bash
# session 39 run 1: GQA decode attention with a block per query head (LSW_CUDA_ATTN_HEAD_SPLIT, default 1) against a
# block per KV group (0).  Tests first (test_cuda, test_forward in both settings, the attention harness with both
# settings and its memcheck, end to end, which also runs caec51c's sampler_greedy), then the harness's GQA timing
# rows, then whole-model base A-B interleaved: llama3-8b, mistral-7b, qwen2.5-7b, and llama2-7b (MHA: unaffected)
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 215 bash scripts/gpu/session.sh $X/s unpack cudatests forward attn-tests attn-memcheck e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
LSW_CUDA_ATTN_HEAD_SPLIT=0 ./build/dev/test_forward > $X/forward-headsplit0.txt 2>&1; echo "forward head split 0 rc=$? $(tail -n 1 $X/forward-headsplit0.txt)"
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -30
grep -hE "^  FAIL|FAILED|MISMATCH" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
grep -c "head split" $X/s/work/attn-tests.txt 2>/dev/null
pack
LSW_HARNESS_ONLY=bench_attention timeout 120 ./build/dev/bench_kernels $X/attn-bench.txt > $X/attn-bench.log 2>&1; echo "attn bench rc=$? $(( $(date +%s) - T0 ))s"
grep -E "heads (32/8|28/4)|validation" $X/attn-bench.txt | head -20
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 pre=$2 modes=$3 hs=$4; shift 4
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_ATTN_HEAD_SPLIT=$hs timeout 100 node "$CLI" bench --backend cuda --preset $pre --modes $modes --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-5,8-9 | tr '\n' ';')"
}
for r in 1 2; do
  b 8b-hs1-$r llama3-8b base 1
  b 8b-hs0-$r llama3-8b base 0
  b mistral-hs1-$r mistral-7b base 1
  b mistral-hs0-$r mistral-7b base 0
  b qwen-hs1-$r qwen2.5-7b base 1
  b qwen-hs0-$r qwen2.5-7b base 0
  pack
done
b 7b llama2-7b base 1
b 8b-qv-hs1 llama3-8b base,merge,fused 1 --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated
b 8b-qv-hs0 llama3-8b base,merge,fused 0 --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
