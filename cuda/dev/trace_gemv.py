#!/usr/bin/env python3
"""Reads the GEMV timeline traces of bench_kernels_trace (trace-<name>.bin, LSW_HARNESS_ONLY=trace_7b) and prints,
per matrix shape, where a decode step's GEMV time goes: the span each kernel adds to the chain (previous kernel's end
to its own end), the launch gap (its first block's start minus the previous kernel's end; negative: launched early,
PDL), the release (its first block past griddepcontrol.wait minus the previous end), its tail (last block end minus
the 90th percentile of its block ends), its blocks' mean main loop and time after it (post: reductions, epilogue,
stores, waiting for the block's slowest warp), and for fused-LoRA launches the shrink blocks' publish time and the GEMV
blocks' epilogue.

    python3 cuda/dev/trace_gemv.py [--copy GBPS] [--phases] [--placement] trace-a.bin [trace-b.bin ...]

Record layout (gemv.cu kGtWords, LSW_GEMV_TRACE): 16 little-endian uint64 per block: [0] rows<<32|cols,
[1] grid<<40|block<<20|smid<<8|flags (1 LoRA, 2 shrink block, 4 half-way look found t, 8 plain), [2] start,
[3] after griddepcontrol.wait, [7] end (ns); GEMV blocks: [4] half-way look, [5] main loop done, [8] t seen,
[9] t and B staged, [6] epilogue done; shrink blocks: [4] experts re-read, [9] thread 0's first A chunk in, [10] its
first X value in, [5] dots, [8] block sums, [6] published, [7] end (a deferring launch's: after its deferred expand);
routing shrink blocks also [11] the router's dots, [12] its logits known, [13] its experts chosen; [14..15] unused.
With --phases, the fused-LoRA launches' phases are printed too (means over blocks and layers, from the previous
kernel's end).
"""
WORDS = 16  # gemv.cu / kernels.cuh kGtWords
import argparse
import os
import sys

import numpy as np

NAMES = {(12288, 4096): "qkv", (4096, 4096): "o", (22016, 4096): "gate,up", (4096, 11008): "down",
         (32000, 4096): "lm_head"}


def kernels(rec):
    """Records sorted by start, cut into kernel instances: a new one when the shape or grid changes or the grid is full."""
    order = np.argsort(rec[:, 2], kind="stable")
    rec = rec[order]
    out, cur, key = [], [], None
    for r in rec:
        k = (int(r[0]), int(r[1]) >> 40)
        if cur and (k != key or len(cur) == key[1]):
            out.append(np.array(cur))
            cur = []
        key = k
        cur.append(r)
    if cur:
        out.append(np.array(cur))
    return out


def phases(ks):
    """Fused-LoRA launches: mean time of each phase mark from the previous kernel's end, per shape (us)."""
    acc = {}
    for i in range(1, len(ks)):
        kr, prev_end = ks[i], ks[i - 1][:, 7].max()
        flags = kr[:, 1] & 0xFF
        if not (flags & 1).any():
            continue
        shape = (int(kr[0, 0]) >> 32, int(kr[0, 0]) & 0xFFFFFFFF)
        shr, g = kr[(flags & 2) != 0], kr[(flags & 2) == 0]
        d = acc.setdefault(NAMES.get(shape, f"{shape[0]}x{shape[1]}"), {})
        for lab, part, col in (("S start", shr, 2), ("S wait", shr, 3), ("S R dots", shr, 11), ("S logits", shr, 12),
                               ("S chosen", shr, 13), ("S experts", shr, 4), ("S A in", shr, 9),
                               ("S X in", shr, 10), ("S dots", shr, 5), ("S sums", shr, 8), ("S published", shr, 6),
                               ("S end", shr, 7), ("G start", g, 2), ("G wait", g, 3), ("G loop", g, 5),
                               ("G t seen", g, 8), ("G staged", g, 9), ("G epi", g, 6), ("G end", g, 7)):
            v = part[part[:, col] > 0][:, col] - prev_end if len(part) else np.array([])
            if len(v):
                d.setdefault(lab, []).append((v.mean(), v.max()))
    for name, d in acc.items():
        print(f"  {name}: " + ", ".join(f"{lab} {np.mean([a for a, _ in v]) / 1e3:.2f}/{np.mean([b for _, b in v]) / 1e3:.2f}"
                                        for lab, v in d.items()))


def placement(ks, first=1, n=5):
    """Blocks per SM of kernels first..first+n-1 and how long their blocks ran by that count (SM-level balance)."""
    for kr in ks[first:first + n]:
        shape = (int(kr[0, 0]) >> 32, int(kr[0, 0]) & 0xFFFFFFFF)
        sm = (kr[:, 1] >> 8) & 0xFFF
        cnt = np.bincount(sm, minlength=int(sm.max()) + 1)
        t0 = kr[:, 2].min()
        en, wt = (kr[:, 7] - t0) / 1e3, (kr[:, 3] - t0) / 1e3
        print(f"  {NAMES.get(shape, shape)}: blocks per SM {cnt.min()}..{cnt.max()} (SMs with 0,1,2,...: "
              f"{np.bincount(cnt).tolist()}); block ends p10/50/90/100 {np.percentile(en, [10, 50, 90, 100]).round(2).tolist()} us")
        for c in sorted(set(cnt[sm].tolist())):
            m = cnt[sm] == c
            print(f"    on SMs holding {c}: mean block time after its wait {(en - wt)[m].mean():.2f} us, mean end {en[m].mean():.2f} us")


def analyse(path, copy_gbps, dtb, show_phases, show_placement):
    raw = np.fromfile(path, dtype="<u8")
    if raw.size == 0 or raw.size % WORDS:
        sys.exit(f"{path}: not a trace (size {raw.size * 8} bytes)")
    rec = raw.reshape(-1, WORDS).astype(np.int64)
    ks = kernels(rec)
    rows = []
    prev_end = None
    for kr in ks:
        shape = (int(kr[0, 0]) >> 32, int(kr[0, 0]) & 0xFFFFFFFF)
        flags = kr[:, 1] & 0xFF
        shr = (flags & 2) != 0
        g = kr[~shr] if (~shr).any() else kr
        t0, t_end = kr[:, 2].min(), kr[:, 7].max()
        d = dict(name=NAMES.get(shape, f"{shape[0]}x{shape[1]}"), bytes=shape[0] * shape[1] * dtb, blocks=len(kr),
                 lora=bool((flags & 1).any()), t0=t0, end=t_end, dur=t_end - t0,
                 tail=t_end - np.percentile(g[:, 7], 90), first_wait=g[:, 3].min(),
                 loop=np.mean(g[:, 5] - g[:, 3]), post=np.mean(g[:, 7] - g[:, 5]))
        if prev_end is not None:
            d["span"] = t_end - prev_end
            d["gap"] = t0 - prev_end
            d["release"] = g[:, 3].min() - prev_end
        if d["lora"]:
            d["half_hit"] = float(((g[:, 1] & 4) != 0).mean())
            e = g[g[:, 6] > 0]
            d["epi"] = float(np.mean(e[:, 6] - e[:, 5])) if len(e) else float("nan")
            if shr.any():
                s = kr[shr]
                d["shrink_pub"] = float(np.mean(s[:, 6] - s[:, 3]))
                d["shrink_last"] = float(s[:, 6].max() - prev_end) if prev_end is not None else float("nan")
        rows.append(d)
        prev_end = t_end
    total = ks[-1][:, 7].max() - ks[0][:, 2].min()
    nbytes = sum(d["bytes"] for d in rows)
    print(f"\n{os.path.basename(path)}: {len(rows)} kernels, {len(rec)} blocks, first start to last end "
          f"{total / 1e3:.1f} us, {nbytes / total:.0f} GB/s"
          + (f" ({100 * nbytes / total / copy_gbps:.1f} % of copy {copy_gbps:.0f})" if copy_gbps else ""))
    by = {}
    for d in rows[1:]:
        by.setdefault(d["name"], []).append(d)
    hdr = f"  {'kernel':8} {'n':>3} {'blocks':>6} {'span us':>8} {'GB/s':>6} {'ideal us':>8} {'lost us':>7} " \
          f"{'gap us':>7} {'release':>7} {'tail90':>6} {'loop us':>7} {'post us':>7}"
    lora = any(d["lora"] for d in rows)
    if lora:
        hdr += f" {'half hit':>8} {'epi us':>6} {'shr pub':>7} {'shr last':>8}"
    print(hdr)
    lost_total = 0.0
    for name, ds in by.items():
        m = lambda k: float(np.mean([d[k] for d in ds if k in d])) if any(k in d for d in ds) else float("nan")
        span = m("span")
        ideal = ds[0]["bytes"] / copy_gbps if copy_gbps else float("nan")  # bytes / (GB/s) = ns
        lost = span - ideal
        lost_total += lost * len(ds)
        line = (f"  {name:8} {len(ds):3d} {ds[0]['blocks']:6d} {span / 1e3:8.2f} {ds[0]['bytes'] / span:6.0f} "
                f"{ideal / 1e3:8.2f} {lost / 1e3:7.2f} {m('gap') / 1e3:7.2f} {m('release') / 1e3:7.2f} "
                f"{m('tail') / 1e3:6.2f} {m('loop') / 1e3:7.2f} {m('post') / 1e3:7.2f}")
        if lora:
            line += (f" {m('half_hit'):8.2f} {m('epi') / 1e3:6.2f} {m('shrink_pub') / 1e3:7.2f} "
                     f"{m('shrink_last') / 1e3:8.2f}")
        print(line)
    if copy_gbps:
        print(f"  time lost against copy bandwidth (kernels after the first): {lost_total / 1e3:.1f} us")
    if show_placement:
        print("  placement (kernels 2-6):")
        placement(ks)
    if show_phases and lora:
        print("  phases (us from the previous kernel's end, mean/max over blocks; S shrink blocks, G GEMV blocks):")
        phases(ks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copy", type=float, default=0.0, help="copy bandwidth in GB/s (the harness log's line)")
    ap.add_argument("--dtype-bytes", type=int, default=2)
    ap.add_argument("--phases", action="store_true", help="the fused-LoRA launches' phases too")
    ap.add_argument("--placement", action="store_true", help="blocks per SM of kernels 2-6 and their block times")
    ap.add_argument("traces", nargs="+")
    a = ap.parse_args()
    for p in a.traces:
        analyse(p, a.copy, a.dtype_bytes, a.phases, a.placement)


if __name__ == "__main__":
    main()
