#!/usr/bin/env python3
"""Check that .lsw files open with the Python safetensors library and follow docs/FORMAT.md.

usage: python3 scripts/check_safetensors.py FILE.lsw [...]
Needs `safetensors` (and numpy or torch for the data check). Exit 0 when every file passes.
"""
import json
import struct
import sys

ALIGN = 256


def check(path):
    from safetensors import safe_open

    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    assert (8 + n) % ALIGN == 0, f"data section starts at {8 + n}, not a multiple of {ALIGN}"
    meta = header.get("__metadata__", {})
    assert meta.get("format") == "lora-switch", "metadata format != lora-switch"
    json.loads(meta["lsw.config"])
    for name, t in header.items():
        if name == "__metadata__" or name.startswith("__pad__."):
            continue
        assert t["data_offsets"][0] % ALIGN == 0, f"{name} not aligned"

    # torch reads BF16; numpy has no bfloat16
    framework = "pt"
    try:
        import torch  # noqa: F401
    except ImportError:
        framework = "np"
    count = 0
    with safe_open(path, framework=framework) as f:
        md = f.metadata()
        assert md["format"] == "lora-switch"
        for name in f.keys():
            t = f.get_tensor(name)
            assert list(t.shape) == header[name]["shape"], name
            count += 1
    print(f"{path}: OK ({count} tensors incl. padding, format_version {meta.get('format_version')})")


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip())
        return 2
    bad = 0
    for p in sys.argv[1:]:
        try:
            check(p)
        except Exception as e:  # one line per failing file
            print(f"{p}: FAILED: {e}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
