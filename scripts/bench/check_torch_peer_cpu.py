#!/usr/bin/env python3
"""CPU check of torch_peer.py's model plumbing (needs torch + transformers, no GPU).

On the tiny preset in fp32 it checks that
  * the static-cache decode step (the body GraphRunner captures) gives the same greedy tokens as the plain
    transformers eager loop, that each step advances the static cache by one row, and that a reset query
    repeats itself;
  * the MoE-LoRA module (gather+bmm, dense prefill form, per-expert loop; layer-wise and pre-gated) equals an
    independent fp64 evaluation of  W x + sum_k g_k (alpha/r) B_k A_k x  and the full model gives the same tokens
    in every implementation, eager and static-cache;
  * the captured step issues no op that needs a host sync (.item(), nonzero, ...) — those would break
    CUDA-graph capture — while the loop variant does (one nonzero per expert per linear);
  * removing the adapter restores the base model.
Prints one line per check and exits 1 on the first failure.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch                                               # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import torch_peer as tp                                    # noqa: E402

tp.DEVICE = "cpu"
SYNC_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "repeat_interleave", "is_nonzero",
            "equal", "argwhere")


class OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        n = str(func.overloadpacket.__name__)
        self.ops[n] = self.ops.get(n, 0) + 1
        return func(*args, **(kwargs or {}))

    def syncs(self):
        return {k: v for k, v in self.ops.items() if any(s in k for s in SYNC_OPS)}


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        sys.exit(1)


def main():
    torch.manual_seed(0)
    P, N, L = 20, 12, 64
    for router, targets in (("layerwise", "q,v"), ("pregated", "all")):
        args, errs = tp.parse_args(["--quick", "--targets", targets, "--router", router])
        check(not errs, f"arguments {errs}")
        model, _ = tp.build_model(args, torch.float32)
        prompt = torch.randint(0, model.config.vocab_size, (1, P))

        def eager_tokens():
            r = tp.EagerRunner(model)
            toks = [int(r.prefill(prompt))]
            for _ in range(N):
                r.step()
                toks.append(int(r.tok))
            return toks

        def static_tokens():
            g = tp.GraphRunner(model, L)
            runs = []
            for _ in range(2):
                g.before_query()
                toks = [int(g.prefill(prompt))]
                for _ in range(N):
                    g._step_body()
                    toks.append(int(g.tok))
                check(g.kv_rows_written() == P + N and int(g.pos) == P + N,
                      f"static cache holds {g.kv_rows_written()} rows, position {int(g.pos)} (expected {P + N})")
                runs.append(toks)
            check(runs[0] == runs[1], "a reset query repeats itself")
            return g, runs[0]

        with torch.no_grad():
            base = eager_tokens()
            g, st = static_tokens()
            check(base == st, f"[{router}] static-cache step == eager loop: {st}")
            m = OpLog()
            with m:
                g._step_body()
            check(not m.syncs(), f"[{router}] base step has no host-sync op {m.syncs()}")

            ad = tp.MoELoRA(model, args, torch.float32, 7)
            all_tokens = []
            for impl in ("bmm", "loop"):
                ad.install(impl)
                _parent, _name, lin, w = ad.sites[0]
                for n in (1, 3, 40):
                    x = torch.randn(1, n, lin.in_features)
                    y = w(x).reshape(n, -1).double()
                    xf = x.reshape(n, -1).double()
                    ref = lin(x.reshape(n, -1)).double()
                    pr = torch.softmax(xf @ w.router_w.double().t(), -1)
                    tv, ti = torch.topk(pr, args.top_k, -1)
                    gg = tv / tv.sum(-1, keepdim=True)
                    delta = torch.zeros_like(ref)
                    for t in range(n):
                        for kk in range(args.top_k):
                            e = int(ti[t, kk])
                            delta[t] += gg[t, kk] * (args.alpha / args.rank) * (
                                w.Bt[e].double().t() @ (w.A[e].double() @ xf[t]))
                    err = (y - ref - delta).abs().max().item()
                    check(err < 1e-4 and delta.abs().max().item() > 1e-3,
                          f"[{router}/{impl}] MoE-LoRA linear, {n} tokens: max |err| {err:.2e} "
                          f"(LoRA term up to {delta.abs().max().item():.3f})")
                et = eager_tokens()
                g, st = static_tokens()
                check(et == st, f"[{router}/{impl}] with adapter: static-cache step == eager loop")
                all_tokens.append(et)
                m = OpLog()
                with m:
                    g._step_body()
                if impl == "bmm":
                    check(not m.syncs(), f"[{router}/bmm] adapter step has no host-sync op {m.syncs()}")
                else:
                    expect = len(ad.sites) * args.experts
                    check(m.syncs().get("nonzero") == expect,
                          f"[{router}/loop] one nonzero per expert per linear ({m.syncs()}, expected {expect})")
                ad.remove()
            check(all_tokens[0] == all_tokens[1], f"[{router}] gather+bmm and per-expert loop give the same tokens")
            check(all_tokens[0] != base, f"[{router}] the adapter changes the tokens")
            check(eager_tokens() == base, f"[{router}] removing the adapter restores the base model")
    print("all checks passed")


if __name__ == "__main__":
    main()
