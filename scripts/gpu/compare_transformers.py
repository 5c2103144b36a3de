#!/usr/bin/env python3
"""Compare lora-switch (and this repo's fp64 TypeScript reference) with transformers/peft on tiny fixtures.

Runs on the GPU machine: python3 + torch + transformers 5 + peft + safetensors, no network, no Node.js.

  # on the dev machine (Node): fixtures, the TS fp64 reference, optionally the CPU engine's outputs
  npx tsx test/helpers/make-fixtures.ts fx --engine
  # carry fx/ to the GPU machine, then
  python3 scripts/gpu/compare_transformers.py fx [--device cuda] [--dtype float64] [--out fx/compare.json]

fx/manifest.json lists cases: a model folder (HF layout) plus adapters (PEFT LoRA, LORA_SWITCH, MIXLORA) with
user scales.  fx/results/<case>.<source>.json hold our outputs (interchange format, see make-fixtures.ts):
{"case", "source", "prompt_ids", "vocab_size", "logits": [[...] per prompt position], "greedy_tokens": [...]}.
Each is compared with transformers: relative error ||ours - hf|| / ||hf|| per position (the worst is reported)
and the greedy continuation.  transformers' own outputs are written as results/<case>.transformers.json.
An engine output passes when it is within --tol of the case's fp64 TS reference (ts-ref) and within --tol plus
that reference's own distance of transformers: transformers keeps some steps in float32 even in float64 mode, which
some cases (large rsLoRA scales) amplify to ~5e-6.  A case may raise --tol for engine outputs with a "tol" field in
the manifest (ill-conditioned cases, where the engine's own fp32 summation orders differ by more than --tol).

Adapters: PEFT LoRA folders are loaded with peft itself (several at once, user scale multiplied into each
layer's scaling).  LoRA-Switch and MixLoRA have no transformers/peft implementation, so they are written here in
PyTorch from their definitions (docs/FORMAT.md, issue 3): an independent second implementation of the maths.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

MLP = ("gate_proj", "up_proj", "down_proj")


def mod_path(m):
    return f"mlp.{m}" if m in MLP else f"self_attn.{m}"


def resolve(root, dotted):
    for part in dotted.split("."):
        root = getattr(root, part)
    return root


def load_model(path, dtype, device):
    from transformers import AutoModelForCausalLM

    kw = dict(local_files_only=True, attn_implementation="eager")
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kw)
    except TypeError:
        model = AutoModelForCausalLM.from_pretrained(path, torch_dtype=dtype, **kw)
    return model.to(device=device, dtype=dtype).eval()


class LoraSwitch:
    """Pre-gated routing: router on the input of `router_input` in layer 0, softmax over all experts, top-k,
    renormalised; every adapted linear of every layer adds sum_k g_k * (alpha/r) * B_k A_k x."""

    def __init__(self, model, folder, scale, dtype, device):
        cfg = json.load(open(os.path.join(folder, "adapter_config.json")))
        st = load_file(os.path.join(folder, "adapter_model.safetensors"))
        st = {k: v.to(device=device, dtype=dtype) for k, v in st.items()}
        self.E, self.k = cfg["num_experts"], cfg["top_k"]
        r = cfg["r"]
        self.scaling = scale * cfg["lora_alpha"] / (math.sqrt(r) if cfg.get("use_rslora") else r)
        self.router = st["router.weight"]
        self.gates = None
        layers = model.model.layers
        self.handles = [resolve(layers[0], cfg["router_input"]).register_forward_pre_hook(self._route)]
        for L, layer in enumerate(layers):
            for m in cfg["target_modules"]:
                p = f"layers.{L}.{mod_path(m)}.experts"
                A = torch.stack([st[f"{p}.{e}.lora_A.weight"] for e in range(self.E)])  # [E, r, in]
                B = torch.stack([st[f"{p}.{e}.lora_B.weight"] for e in range(self.E)])  # [E, out, r]
                self.handles.append(resolve(layer, mod_path(m)).register_forward_hook(self._delta(A, B)))

    def _route(self, module, args):
        x = args[0]
        p = F.softmax(x @ self.router.T, dim=-1)
        top_v, top_i = torch.topk(p, self.k, dim=-1)
        g = top_v / top_v.sum(-1, keepdim=True)
        self.gates = torch.zeros_like(p).scatter(-1, top_i, g)  # [B, T, E], zeros off the top-k
        self.routes = top_i

    def _delta(self, A, B):
        def hook(module, args, out):
            if self.gates is None:
                raise RuntimeError("adapted linear ran before the router input")
            x = args[0]
            ax = torch.einsum("bti,eri->bter", x, A)
            bax = torch.einsum("bter,eor->bteo", ax, B)
            return out + self.scaling * torch.einsum("bte,bteo->bto", self.gates, bax)

        return hook


class MixLora:
    """MixLoRA (TUDB-Labs): per-layer router on the MLP input, softmax, top-k renormalised; each expert is a whole
    FFN (shared base weights + its own LoRA on gate/up/down); plain LoRA on attention modules."""

    def __init__(self, model, folder, scale, dtype, device):
        cfg = json.load(open(os.path.join(folder, "adapter_config.json")))
        st = load_file(os.path.join(folder, "adapter_model.safetensors"))
        st = {k: v.to(device=device, dtype=dtype) for k, v in st.items()}
        upstream = "mixlora.layers.0.gate.weight" in st
        E, k, r = cfg["num_experts"], cfg["top_k"], cfg["r"]
        s = scale * cfg["lora_alpha"] / (math.sqrt(r) if cfg.get("use_rslora") else r)
        self.handles = []
        for L, layer in enumerate(model.model.layers):
            gate = st[f"mixlora.layers.{L}.gate.weight" if upstream else f"mixlora.layers.{L}.mlp.moe_gate.weight"]
            experts = {}
            for m in cfg["target_modules"]:
                if m in MLP:
                    for e in range(E):
                        p = f"mixlora.layers.{L}.experts.{e}.{m}" if upstream else f"mixlora.layers.{L}.mlp.{m}.experts.{e}"
                        experts[(m, e)] = (st[f"{p}.lora_A.weight"], st[f"{p}.lora_B.weight"])
                else:
                    p = f"mixlora.layers.{L}.self_attn.{m}"
                    A, B = st[f"{p}.lora_A.weight"], st[f"{p}.lora_B.weight"]
                    self.handles.append(
                        getattr(layer.self_attn, m).register_forward_hook(
                            lambda mod, args, out, A=A, B=B: out + s * (args[0] @ A.T @ B.T)
                        )
                    )
            layer.mlp.forward = self._moe(layer.mlp, gate, experts, E, k, s)

    @staticmethod
    def _moe(mlp, gate, experts, E, k, s):
        act = mlp.act_fn

        def lin(name, x, e):
            y = getattr(mlp, name)(x)
            if (name, e) in experts:
                A, B = experts[(name, e)]
                y = y + s * (x @ A.T @ B.T)
            return y

        def forward(x):
            p = F.softmax(x @ gate.T, dim=-1)
            top_v, top_i = torch.topk(p, k, dim=-1)
            w = top_v / top_v.sum(-1, keepdim=True)
            out = torch.zeros_like(x)
            for e in range(E):
                we = (w * (top_i == e)).sum(-1, keepdim=True)
                h = act(lin("gate_proj", x, e)) * lin("up_proj", x, e)
                out = out + we * lin("down_proj", h, e)
            return out

        return forward


def build(case, root, dtype, device):
    model = load_model(os.path.join(root, case["model"]), dtype, device)
    peft_ads = [a for a in case["adapters"] if a["type"] == "LORA"]
    others = [a for a in case["adapters"] if a["type"] != "LORA"]
    if peft_ads:
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        names = [f"a{i}" for i in range(len(peft_ads))]
        model = PeftModel.from_pretrained(model, os.path.join(root, peft_ads[0]["path"]), adapter_name=names[0], is_trainable=False)
        for n, a in zip(names[1:], peft_ads[1:]):
            model.load_adapter(os.path.join(root, a["path"]), adapter_name=n, is_trainable=False)
        model.base_model.set_adapter(names if len(names) > 1 else names[0])
        model = model.to(device=device, dtype=dtype).eval()
        for mod in model.modules():
            if isinstance(mod, LoraLayer):
                for n, a in zip(names, peft_ads):
                    if n in mod.scaling:
                        mod.scaling[n] *= a["scale"]
    keep = []
    inner = model.get_base_model() if peft_ads else model
    for a in others:
        cls = LoraSwitch if a["type"] == "LORA_SWITCH" else MixLora
        keep.append(cls(inner, os.path.join(root, a["path"]), a["scale"], dtype, device))
    return model, keep


@torch.no_grad()
def run_case(case, root, prompt, n_gen, dtype, device):
    model, keep = build(case, root, dtype, device)
    lora_dtypes = {str(p.dtype) for n, p in model.named_parameters() if "lora_" in n}
    if lora_dtypes and lora_dtypes != {str(dtype)}:
        print(f"  note: peft LoRA weights are {lora_dtypes}")
    ids = torch.tensor([prompt], device=device)
    logits = model(input_ids=ids, use_cache=False).logits[0].double().cpu()
    seq = list(prompt)
    greedy = []
    for _ in range(n_gen):
        out = model(input_ids=torch.tensor([seq], device=device), use_cache=False).logits[0, -1]
        t = int(torch.argmax(out))
        greedy.append(t)
        seq.append(t)
    del keep
    return logits, greedy


def rel_err(ours, ref):
    num = (ours - ref).pow(2).sum(-1).sqrt()
    den = ref.pow(2).sum(-1).sqrt()
    return (num / den).max().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fixtures", help="folder written by test/helpers/make-fixtures.ts")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--only", default=None, help="run cases whose name contains this")
    ap.add_argument("--out", default=None, help="results JSON (default <fixtures>/compare.json)")
    ap.add_argument("--tol", type=float, default=1e-5,
                    help="relative logits error allowed for engine outputs, on top of the case's ts-ref error (the TS fp64 "
                         "reference's distance from transformers, when the case has one)")
    ap.add_argument("--tol-ref", type=float, default=None,
                    help="relative error allowed for the TS fp64 reference (default --tol). Even in float64, transformers "
                         "computes RMSNorm, the attention softmax and the RoPE tables in float32, which bounds the "
                         "agreement at ~1e-7..1e-6 (measured 2e-7..5e-6 on the fixture set, H200, transformers 5.17)")
    args = ap.parse_args()

    root = args.fixtures
    manifest = json.load(open(os.path.join(root, "manifest.json")))
    prompt, n_gen = manifest["prompt_ids"], manifest["gen_tokens"]
    dtype = getattr(torch, args.dtype)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    res_dir = os.path.join(root, "results")
    os.makedirs(res_dir, exist_ok=True)
    import transformers

    print(f"torch {torch.__version__}  transformers {transformers.__version__}  device {args.device}  dtype {args.dtype}")
    rows, failures = [], 0
    header = f"{'case':<42} {'source':<12} {'rel.err':>10} {'greedy':>8}  status"
    print(header)
    print("-" * len(header))
    for case in manifest["cases"]:
        if args.only and args.only not in case["name"]:
            continue
        t0 = time.time()
        try:
            hf_logits, hf_greedy = run_case(case, root, prompt, n_gen, dtype, args.device)
        except Exception as e:  # report, keep going
            failures += 1
            msg = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            rows.append({"case": case["name"], "source": "transformers", "error": msg})
            print(f"{case['name']:<42} {'transformers':<12} {'-':>10} {'-':>8}  ERROR {msg}")
            continue
        json.dump(
            {"case": case["name"], "source": "transformers", "prompt_ids": prompt, "vocab_size": hf_logits.shape[1],
             "logits": hf_logits.tolist(), "greedy_tokens": hf_greedy, "dtype": args.dtype, "device": args.device},
            open(os.path.join(res_dir, f"{case['name']}.transformers.json"), "w"),
        )
        sources = sorted(f for f in os.listdir(res_dir) if f.startswith(case["name"] + ".") and not f.endswith(".transformers.json"))
        sources = [f for f in sources if f[len(case["name"]) + 1 :].count(".") == 1]
        if not sources:
            print(f"{case['name']:<42} {'(none)':<12} {'-':>10} {'-':>8}  transformers ran in {time.time() - t0:.1f}s; no outputs of ours")
        # Our fp64 reference's own distance from transformers bounds how close any output can come to transformers.
        # So an engine output must be within --tol plus that distance of transformers (triangle inequality), and within
        # --tol of the fp64 reference itself.  A case that transformers' float32 parts make ill-conditioned (the
        # reference 5e-6 away from them) is then judged by the engine's own error.
        ref_err, rl = None, None
        if "ts-ref.json" in [f[len(case["name"]) + 1 :] for f in sources]:
            ref = json.load(open(os.path.join(res_dir, f"{case['name']}.ts-ref.json")))
            if "logits" in ref:
                rl = torch.tensor(ref["logits"], dtype=torch.float64)
                if rl.shape == hf_logits.shape:
                    ref_err = rel_err(rl, hf_logits)
                else:
                    rl = None
        for f in sources:
            src = f[len(case["name"]) + 1 : -len(".json")]
            ours = json.load(open(os.path.join(res_dir, f)))
            row = {"case": case["name"], "source": src}
            if "error" in ours:
                row["error"] = ours["error"]
                failures += 1
                print(f"{case['name']:<42} {src:<12} {'-':>10} {'-':>8}  OURS FAILED: {ours['error'][:60]}")
                rows.append(row)
                continue
            ol = torch.tensor(ours["logits"], dtype=torch.float64)
            if ol.shape != hf_logits.shape:
                row["error"] = f"logits shape {list(ol.shape)} vs transformers {list(hf_logits.shape)}"
                failures += 1
                print(f"{case['name']:<42} {src:<12} {'-':>10} {'-':>8}  {row['error']}")
                rows.append(row)
                continue
            err = rel_err(ol, hf_logits)
            same = ours["greedy_tokens"] == hf_greedy
            first = next((i for i, (a, b) in enumerate(zip(ours["greedy_tokens"], hf_greedy)) if a != b), None)
            # an ill-conditioned case may allow engine outputs more (the manifest's per-case tol, make-fixtures.ts)
            etol = max(args.tol, float(case.get("tol", 0.0)))
            if src == "ts-ref":
                tol = args.tol_ref if args.tol_ref is not None else args.tol
            else:
                tol = etol + (ref_err or 0.0)
            err_ref = rel_err(ol, rl) if (src != "ts-ref" and rl is not None) else None
            ok = err <= tol and same and (err_ref is None or err_ref <= etol)
            failures += 0 if ok else 1
            row.update({"rel_err": err, "tol": tol, "rel_err_vs_ts_ref": err_ref, "greedy_same": same, "first_greedy_mismatch": first, "ok": ok,
                        "greedy_ours": ours["greedy_tokens"], "greedy_transformers": hf_greedy})
            rows.append(row)
            g = "same" if same else f"@{first}"
            note = f"  (tol {tol:.2e})" if abs(tol - args.tol) > 1e-6 * args.tol else ""
            if err_ref is not None:
                note += f"  vs ts-ref {err_ref:.2e}"
            print(f"{case['name']:<42} {src:<12} {err:>10.2e} {g:>8}  {'ok' if ok else 'FAIL'}{note}")
    out = args.out or os.path.join(root, "compare.json")
    json.dump({"torch": torch.__version__, "transformers": transformers.__version__, "device": args.device,
               "dtype": args.dtype, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "rows": rows}, open(out, "w"), indent=1)
    print(f"\n{sum(1 for r in rows if r.get('ok'))} passed, {failures} failed  (results: {out})")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
