#!/bin/bash
# session 45 run 3: generate before and after chunked decoding, interleaved, on the run-2 synthetic 0.8 B F16 Llama
# (same script to write it): "old" = 707ff9f's CLI bundle (one asynchronous lsw_model_step call per token) with
# 6ee6231's library (ABI 4), "new" = 0d08664's bundle (lsw_model_decode in chunks, the next chunk started while one is delivered) with 307c730's library (ABI 5; no engine change since); greedy,
# 400 new tokens, four rounds in alternating order; then bench -m with the new library for its in-engine loop.
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p /tmp/new /tmp/old .gpu/bundle-old
tar -xJf .gpu/pack/libnew.tar.xz -C /tmp/new && tar -xJf .gpu/pack/libold.tar.xz -C /tmp/old
cp /tmp/new/build/prebuilt.txt $X/prebuilt-new.txt; cp /tmp/old/build/prebuilt.txt $X/prebuilt-old.txt
xz -dc .gpu/pack/old-mjs.xz > .gpu/bundle-old/lora-switch.mjs; cp .gpu/pack/old-package.json .gpu/bundle-old/package.json
cp .gpu/bundle/koffi-linux-x64.node .gpu/bundle-old/
mkdir -p .gpu/bin; [ -x .gpu/bin/node ] || { xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node; }
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
M=/tmp/m08b; mkdir -p $M; cp .gpu/pack/tok-tokenizer.json $M/tokenizer.json; [ -f .gpu/pack/tok-tokenizer_config.json ] && cp .gpu/pack/tok-tokenizer_config.json $M/tokenizer_config.json
python3 - "$M" <<'PY' > $X/make-model.txt 2>&1
import json, sys, torch
from safetensors.torch import save_file
d = sys.argv[1]; H, I, L, V = 2048, 5504, 16, 298
cfg = json.load(open('/dev/stdin')) if False else {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": 16, "num_key_value_heads": 16, "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "vocab_size": V, "rope_theta": 10000.0, "torch_dtype": "float16", "bos_token_id": 296, "eos_token_id": 297}
json.dump(cfg, open(f"{d}/config.json", "w"))
g = torch.Generator(device="cuda").manual_seed(45)
r = lambda *s: (torch.randn(*s, generator=g, device="cuda") * 0.02).half().cpu()
t = {"model.embed_tokens.weight": r(V, H), "model.norm.weight": torch.ones(H).half(), "lm_head.weight": r(V, H)}
for l in range(L):
    p = f"model.layers.{l}."
    for n in ["q", "k", "v", "o"]: t[p + f"self_attn.{n}_proj.weight"] = r(H, H)
    t[p + "mlp.gate_proj.weight"] = r(I, H); t[p + "mlp.up_proj.weight"] = r(I, H); t[p + "mlp.down_proj.weight"] = r(H, I)
    t[p + "input_layernorm.weight"] = torch.ones(H).half(); t[p + "post_attention_layernorm.weight"] = torch.ones(H).half()
save_file(t, f"{d}/model.safetensors", metadata={"format": "pt"})
print("params", sum(x.numel() for x in t.values()))
PY
echo "model rc=$? $(( $(date +%s) - T0 ))s $(cat $X/make-model.txt | tail -1)"
node "$CLI" convert $M -o /tmp/m08b.lsw > $X/convert.txt 2>&1; echo "convert rc=$? $(( $(date +%s) - T0 ))s"
g() { local v=$1 r=$2 cli lib
  if [ $v = old ]; then cli=$R/.gpu/bundle-old/lora-switch.mjs; lib=/tmp/old/build/native/liblsw.so; else cli=$CLI; lib=/tmp/new/build/native/liblsw.so; fi
  LSW_NATIVE_LIB=$lib timeout 120 node "$cli" generate -m /tmp/m08b.lsw --backend cuda -p "Hello world, the quick brown fox" -n 400 --ignore-eos --temperature 0 --json > $X/gen-$v-$r.json 2> $X/gen-$v-$r.err
  echo "gen-$v-$r rc=$? $(node -e 'const j=require(process.argv[1]);console.log(j.timings.tokens_per_s, j.timings.decode_ms, j.tokens.length, require("crypto").createHash("md5").update(j.tokens.join()).digest("hex").slice(0,8))' $X/gen-$v-$r.json 2>&1 | tail -1)"
}
for r in 1 2 3 4; do
  if [ $((r % 2)) = 1 ]; then g old $r; g new $r; else g new $r; g old $r; fi
done
for r in 1 2; do
  LSW_NATIVE_LIB=/tmp/new/build/native/liblsw.so timeout 120 node "$CLI" bench -m /tmp/m08b.lsw --backend cuda --modes base --prompt-tokens 8 --new-tokens 400 --repetitions 3 --out $X/bench$r.json > $X/bench$r.txt 2>&1
  echo "bench$r rc=$? $(grep -E '^lora-switch' $X/bench$r.txt | tr -s ' ' | cut -d' ' -f2-6)"
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
