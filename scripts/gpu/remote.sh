#!/usr/bin/env bash
# On the GPU machine (no Node.js, no network), from the repository root, with what scripts/gpu/prepare.sh made here
# carried next to the tree: unpacks the bundle and the fixtures into the layout session.sh reads, then runs
# session.sh with the prebuilt binaries (`unpack` first) and the stages given.
#   bash scripts/gpu/remote.sh OUTDIR [stage ...]      (default: cudatests e2e sanitizer forward)
# e.g. `bash scripts/gpu/remote.sh "$OUT" cudatests e2e sanitizer readme-rows`. SESSION_BUDGET_S (default 540) bounds
# the stages, as in session.sh. Everything lands in OUTDIR/session.tgz (and OUTDIR/work/).
set -u
OUTDIR=${1:?usage: bash scripts/gpu/remote.sh OUTDIR [stage ...]}; shift
GPU=${GPU:-$(pwd)/.gpu}
for f in node.xz bundle/lora-switch.mjs.xz fx.tar.xz pack/bin.tar.xz; do
  [ -f "$GPU/$f" ] || { echo "remote.sh: $GPU/$f: missing (run scripts/gpu/prepare.sh on the development machine and carry it)" >&2; exit 1; }
done
# each unpacked into a temporary name first, so that a cut-off unpack is redone by the next call
if [ ! -f "$GPU/bundle/lora-switch.mjs" ]; then
  xz -dc "$GPU/bundle/lora-switch.mjs.xz" > "$GPU/bundle/lora-switch.mjs.tmp" && mv "$GPU/bundle/lora-switch.mjs.tmp" "$GPU/bundle/lora-switch.mjs" || exit 1
fi
if [ ! -d "$GPU/fx" ]; then
  rm -rf "$GPU/fx.tmp" && mkdir -p "$GPU/fx.tmp" && tar -xJf "$GPU/fx.tar.xz" -C "$GPU/fx.tmp" && mv "$GPU/fx.tmp" "$GPU/fx" || exit 1
fi
STAGES=("$@"); [ ${#STAGES[@]} -gt 0 ] || STAGES=(cudatests e2e sanitizer forward)
GPU="$GPU" exec bash scripts/gpu/session.sh "$OUTDIR" unpack "${STAGES[@]}"
