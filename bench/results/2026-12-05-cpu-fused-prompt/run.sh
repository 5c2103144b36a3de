#!/bin/bash
# CPU fused prefill: old = ced6d51 (per-token deltas) vs the expert-grouped prompt path; alternating, old first.
cd /work/main
for router in pregated layerwise; do
 for p in 128 512; do
  for round in 1 2; do
   for lib in old new; do
    so=/tmp/head.so; [ $lib = new ] && so=/tmp/grp3.so
    out=$(LSW_NATIVE_LIB=$so node bin/run.js bench --backend cpu --model /tmp/smol/hf --modes base,fused --targets all --rank 64 --router $router --threads 2 --prompt-tokens $p --new-tokens 8 --repetitions 2 --warmup 1 --json 2>/dev/null)
    echo "$out" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);const r=j.rows||j.results;console.log(process.argv[1], r.map(x=>`${x.mode} prefill ${x.prefill_tokens_per_s} tok/s ttft ${x.ttft_ms} ms`).join(" | "))})' "$router p$p round$round $lib"
   done
  done
 done
done
