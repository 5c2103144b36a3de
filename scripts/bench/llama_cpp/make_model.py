#!/usr/bin/env python3
"""Write ONE random-weight Llama twice: as a Hugging Face folder (what lora-switch reads) and as a GGUF file
(what llama.cpp reads), with the same F16 weights, so that the two engines' decode speed can be compared on
identical bytes (scripts/bench/llama_cpp/README.md).

Needs numpy and the `gguf` package (llama.cpp's own GGUF writer, `pip install gguf`); no torch, no network.

The GGUF follows llama.cpp's convert_hf_to_gguf.py for LlamaForCausalLM: tensor names blk.N.*, q/k rows permuted
from the Hugging Face rotate-half order to llama.cpp's interleaved RoPE order, 1-D norm weights in f32 (the same
values as the F16 checkpoint holds), tied embeddings without an output tensor. The tokenizer is a synthetic
SentencePiece-style vocabulary of the model's size (byte tokens <0x00>..<0xFF> plus filler pieces): the benchmark
feeds token ids, never text.

  python3 make_model.py --preset smollm-135m --seed 1 --out DIR      # writes DIR/hf/ and DIR/model-f16.gguf
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

PRESETS = {
    # SmolLM-135M's shape (HuggingFaceTB/SmolLM-135M config.json): 134.5 M parameters, 269 MB in F16
    "smollm-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                        num_attention_heads=9, num_key_value_heads=3, head_dim=64, rope_theta=10000.0,
                        rms_norm_eps=1e-5, max_position_embeddings=2048, tie_word_embeddings=True),
    # a small shape for smoke runs
    "tiny": dict(vocab_size=4096, hidden_size=256, intermediate_size=688, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, head_dim=64, rope_theta=10000.0,
                 rms_norm_eps=1e-5, max_position_embeddings=2048, tie_word_embeddings=True),
}


def fail(msg):
    print(f"make_model.py: {msg}", file=sys.stderr)
    sys.exit(2)


def permute_rows(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: per head, rows (0..d/2, d/2..d) -> interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_safetensors(path, tensors):
    """tensors: list of (name, np.ndarray f16/f32), written in order (header padded to 8 bytes)."""
    header, off = {}, 0
    for name, a in tensors:
        dt = {np.dtype(np.float16): "F16", np.dtype(np.float32): "F32"}[a.dtype]
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, a in tensors:
            f.write(np.ascontiguousarray(a).tobytes())
    os.replace(tmp, path)


def vocab_pieces(n):
    if n < 3 + 256 + 1:
        fail(f"vocab {n} is too small for the synthetic vocabulary")
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    toks += [f"\u2581t{i}" for i in range(n - len(toks))]
    return toks


def write_tokenizer_json(path, toks):
    """A WordLevel tokenizer.json over the same pieces (lora-switch loads it with @huggingface/tokenizers)."""
    tj = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                          "normalized": False, "special": True} for i, t in enumerate(toks[:3])],
        "normalizer": None, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {t: i for i, t in enumerate(toks)}, "unk_token": "<unk>"},
    }
    with open(path + ".tmp", "w") as f:
        json.dump(tj, f)
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smollm-135m", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="output folder (gets hf/ and model-f16.gguf)")
    a = ap.parse_args()
    try:
        import gguf
    except ImportError:
        fail("the gguf package is missing (pip install gguf): it writes the llama.cpp copy of the weights")

    c = PRESETS[a.preset]
    V, D, I, L = c["vocab_size"], c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    H, KV, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    rng = np.random.default_rng(a.seed)

    def lin(out_f, in_f):  # weights scaled 1/sqrt(in): activations keep their size through 30 layers
        return (rng.standard_normal((out_f, in_f), dtype=np.float32) / np.sqrt(in_f)).astype(np.float16)

    def norm(n):
        return (1.0 + 0.1 * rng.standard_normal(n, dtype=np.float32)).astype(np.float16)

    hf, gg = [], []  # (name, array) in HF and GGUF naming
    emb = (rng.standard_normal((V, D), dtype=np.float32)).astype(np.float16)
    hf.append(("model.embed_tokens.weight", emb))
    gg.append(("token_embd.weight", emb))
    for i in range(L):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        an, q, k, v, o = norm(D), lin(H * hd, D), lin(KV * hd, D), lin(KV * hd, D), lin(D, H * hd)
        fn, g, u, d = norm(D), lin(I, D), lin(I, D), lin(D, I)
        hf += [(p + "input_layernorm.weight", an), (p + "self_attn.q_proj.weight", q),
               (p + "self_attn.k_proj.weight", k), (p + "self_attn.v_proj.weight", v),
               (p + "self_attn.o_proj.weight", o), (p + "post_attention_layernorm.weight", fn),
               (p + "mlp.gate_proj.weight", g), (p + "mlp.up_proj.weight", u), (p + "mlp.down_proj.weight", d)]
        gg += [(b + "attn_norm.weight", an.astype(np.float32)), (b + "attn_q.weight", permute_rows(q, H)),
               (b + "attn_k.weight", permute_rows(k, KV)), (b + "attn_v.weight", v),
               (b + "attn_output.weight", o), (b + "ffn_norm.weight", fn.astype(np.float32)),
               (b + "ffn_gate.weight", g), (b + "ffn_up.weight", u), (b + "ffn_down.weight", d)]
    on = norm(D)
    hf.append(("model.norm.weight", on))
    gg.append(("output_norm.weight", on.astype(np.float32)))

    os.makedirs(os.path.join(a.out, "hf"), exist_ok=True)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float16",
           "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2, "attention_bias": False, "mlp_bias": False,
           **c}
    with open(os.path.join(a.out, "hf", "config.json.tmp"), "w") as f:
        json.dump(cfg, f, indent=2)
    os.replace(os.path.join(a.out, "hf", "config.json.tmp"), os.path.join(a.out, "hf", "config.json"))
    toks = vocab_pieces(V)
    write_tokenizer_json(os.path.join(a.out, "hf", "tokenizer.json"), toks)
    write_safetensors(os.path.join(a.out, "hf", "model.safetensors"), hf)

    gpath = os.path.join(a.out, "model-f16.gguf")
    w = gguf.GGUFWriter(gpath + ".tmp", "llama")
    w.add_name(f"lora-switch random {a.preset} seed {a.seed}")
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(D)
    w.add_block_count(L)
    w.add_feed_forward_length(I)
    w.add_head_count(H)
    w.add_head_count_kv(KV)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(c["rope_theta"])
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    w.add_vocab_size(V)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * 3 + [0.0] * 256 + [-float(i) for i in range(V - 259)])
    w.add_token_types([gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL] +
                      [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.NORMAL] * (V - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    for name, arr in gg:
        w.add_tensor(name, np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(gpath + ".tmp", gpath)
    nparams = sum(x.size for _, x in hf)
    print(json.dumps({"preset": a.preset, "seed": a.seed, "params": int(nparams),
                      "weight_bytes": int(sum(x.nbytes for _, x in hf)), "hf": os.path.join(a.out, "hf"),
                      "gguf": gpath}))


if __name__ == "__main__":
    main()
