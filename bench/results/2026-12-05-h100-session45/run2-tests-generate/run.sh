#!/bin/bash
# session 45 run 2: 307c730 (lsw_model_decode, ABI 5; generate decodes in chunks) through the GPU tests that compare
# the GPU with the CPU backend (test_cuda, test_forward, end to end: generate on both backends in every mode), then
# generate against bench on one synthetic 0.8 B-parameter F16 Llama (hidden 2048, 16 layers; random weights written
# here; the llama2-f32 fixture's tokenizer): generate's decode tokens/s (chunked, one native call per chunk) against
# bench's in-engine decode loop on the same file.
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz -C "$R")
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
cp build/prebuilt.txt $X/
GPU=$R/.gpu SESSION_BUDGET_S=330 timeout 345 bash scripts/gpu/session.sh $X/s unpack cudatests forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null; tail -15 $X/session.txt
grep -hE "^  FAIL|FAILED|MISMATCH" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
rm -f $X/s/session.tgz
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
M=/tmp/m08b; mkdir -p $M; cp .gpu/fx/models/llama2-f32/tokenizer*.json $M/
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
for r in 1 2 3; do
  LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 120 node "$CLI" generate -m /tmp/m08b.lsw --backend cuda -p "Hello world, the quick brown fox" -n 400 --ignore-eos --temperature 0 --json > $X/gen$r.json 2> $X/gen$r.err
  echo "gen$r rc=$? $(node -e 'const j=require(process.argv[1]);console.log(JSON.stringify(j.timings), j.tokens.length)' $X/gen$r.json 2>&1 | tail -1)"
  LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 120 node "$CLI" bench -m /tmp/m08b.lsw --backend cuda --modes base --prompt-tokens 8 --new-tokens 400 --repetitions 3 --out $X/bench$r.json > $X/bench$r.txt 2>&1
  echo "bench$r rc=$? $(grep -E '^lora-switch' $X/bench$r.txt | tr -s ' ' | cut -d' ' -f2-6)"
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
