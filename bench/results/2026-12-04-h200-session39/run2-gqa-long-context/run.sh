#!/bin/bash
# session 39 run 2: GQA at long contexts.  The model switches the decode attention to the tile kernel (variant 1, a
# block per KV group) from 1,024 positions; with a block per query head in variant 0 that point may be wrong for GQA.
# Harness GQA rows (variant 0 by group / by query head / variant 1) at 612..4096 positions, then llama3-8b base with
# 1,024 / 2,048 / 3,968-token prompts, default against LSW_CUDA_ATTN_LONG=0 (variant 0 throughout), interleaved.
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 75 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cp build/prebuilt.txt $X/
LSW_HARNESS_ONLY=bench_attention timeout 150 ./build/dev/bench_kernels $X/attn-bench.txt > $X/attn-bench.log 2>&1; echo "attn bench rc=$? $(( $(date +%s) - T0 ))s"
grep -E "heads (32/8|28/4)" $X/attn-bench.txt | head -30 | cut -c1-110
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 pre=$2 p=$3 lg=$4; shift 4
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_ATTN_LONG=$lg timeout 100 node "$CLI" bench --backend cuda --preset $pre --modes base --repetitions 3 --prompt-tokens $p --new-tokens 100 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-5,8-9 | tr '\n' ';')"
}
for p in 1024 2048 3968; do
  b 8b-p$p-long1024 llama3-8b $p 1024
  b 8b-p$p-v0 llama3-8b $p 0
  pack
done
for p in 2048 3968; do
  b qwen-p$p-long1024 qwen2.5-7b $p 1024
  b qwen-p$p-v0 qwen2.5-7b $p 0
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
