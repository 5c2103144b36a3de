#!/usr/bin/env bash
# Prepares, on the development machine (Node, nvcc; no GPU needed), everything a GPU-machine session needs that the
# source tree does not hold, compressed so that it travels next to the tree:
#   $GPU/node.xz                   this machine's node binary (the GPU machine has no Node.js)
#   $GPU/bundle/                   `npm run bundle` (lora-switch.mjs.xz, koffi-linux-x64.node, package.json)
#   $GPU/fx.tar.xz                 the fixtures (`npx tsx test/helpers/make-fixtures.ts --engine`): HF models, adapters,
#                                  our fp64 reference and the CPU engine's outputs (for the transformers comparison)
#   $GPU/pack/bin.tar.xz           the engine, test_cuda, the kernel harness and test_forward (pack-prebuilt.sh)
# Usage: bash scripts/gpu/prepare.sh [--skip-pack]        ($GPU defaults to .gpu, which .gitignore ignores)
# Then carry those four paths and run `bash scripts/gpu/remote.sh OUT ...` from the tree on the GPU machine.
# The pack is the slow part (4-7 minutes on 2 cores); --skip-pack keeps an existing one when cuda/ has not changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
GPU="${GPU:-$ROOT/.gpu}"
SKIP_PACK=0
for a in "$@"; do
  case "$a" in
    --skip-pack) SKIP_PACK=1 ;;
    *) echo "prepare.sh: unknown argument: $a (usage: bash scripts/gpu/prepare.sh [--skip-pack])" >&2; exit 2 ;;
  esac
done
[ -d node_modules ] || { echo "prepare.sh: node_modules is missing: run npm install first" >&2; exit 1; }
mkdir -p "$GPU"
step() { echo "prepare.sh: $*"; }

step "node binary -> $GPU/node.xz"
xz -T2 -c "$(command -v node)" > "$GPU/node.xz.tmp" && mv "$GPU/node.xz.tmp" "$GPU/node.xz"

step "CLI bundle -> $GPU/bundle/"
npm run --silent bundle > /dev/null
rm -rf "$GPU/bundle.tmp" && mkdir -p "$GPU/bundle.tmp"
cp dist/bundle/koffi-linux-x64.node dist/bundle/package.json "$GPU/bundle.tmp/"
xz -T2 -c dist/bundle/lora-switch.mjs > "$GPU/bundle.tmp/lora-switch.mjs.xz"
rm -rf "$GPU/bundle" && mv "$GPU/bundle.tmp" "$GPU/bundle"

step "fixtures -> $GPU/fx.tar.xz"
FX="$(mktemp -d)"
trap 'rm -rf "$FX"' EXIT
npx tsx test/helpers/make-fixtures.ts "$FX/fx" --engine > "$FX/make-fixtures.log" 2>&1 || { cat "$FX/make-fixtures.log" >&2; exit 1; }
tar -C "$FX/fx" -cJf "$GPU/fx.tar.xz.tmp" . && mv "$GPU/fx.tar.xz.tmp" "$GPU/fx.tar.xz"

if [ "$SKIP_PACK" = 1 ] && [ -f "$GPU/pack/bin.tar.xz" ]; then
  step "prebuilt pack kept: $(tar -xJOf "$GPU/pack/bin.tar.xz" build/prebuilt.txt | head -n 1)"
else
  step "prebuilt engine and test binaries -> $GPU/pack/bin.tar.xz"
  bash scripts/gpu/pack-prebuilt.sh "$GPU/pack/bin.tar.xz"
fi
du -sh "$GPU/node.xz" "$GPU/bundle" "$GPU/fx.tar.xz" "$GPU/pack"
step "done. Carry these four paths to the GPU machine: $GPU/node.xz $GPU/bundle $GPU/fx.tar.xz $GPU/pack"
