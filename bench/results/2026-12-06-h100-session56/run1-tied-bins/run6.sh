#!/bin/bash
# session 56: session 55 run 6 on pack-56b: the README's lora-switch rows on this GPU with the final tree's engine (pack-56b; the same machine
# as run 1 when it stayed warm), one process each, as session 38's run 8; then the grouped-query presets' base
set -u
R=$(pwd)
mkdir -p "$OUT/y"; X=$OUT/y
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
cat $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf y.tgz y); }
[ -n "${SKIP_UNPACK:-}" ] || tar -xJf .gpu/pack-56b/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
if [ ! -x .gpu/g/bin/node ]; then
  mkdir -p .gpu/g/bin && xz -dc .gpu/node.xz > .gpu/g/bin/node && chmod +x .gpu/g/bin/node
  mkdir -p .gpu/g/bundle && cp .gpu/bundle-52/koffi-linux-x64.node .gpu/bundle-52/package.json .gpu/g/bundle/
  xz -dc .gpu/bundle-52/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
fi
export PATH=$R/.gpu/g/bin:$PATH
CLI=$R/.gpu/g/bundle/lora-switch.mjs
b() { local n=$1; shift
  [ $(date +%s) -gt $(( ${DEADLINE:-$((T0 + 560))} - 70 )) ] && { echo "$n skipped (time)"; return; }
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 100 node "$CLI" bench --backend cuda "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s"; grep -E '^lora-switch|^ *lora-switch' $X/$n.txt | tr -s ' ' | cut -c1-120
  pack
}
L="--preset llama2-7b --experts 8 --top-k 2"
b qv-r16 $L --rank 16 --targets q,v --router pregated
b all-r64 $L --rank 64 --targets all --router pregated --modes base,fused
b qv-r16-lw $L --rank 16 --targets q,v --router layerwise --repetitions 3
b qv-r16-batched $L --rank 16 --targets q,v --router pregated --modes base,merge --merge-prompt batched --repetitions 3
b all-r64-unfused $L --rank 64 --targets all --router pregated --modes base,unfused --repetitions 3
for pre in llama3-8b mistral-7b qwen2.5-7b; do b gqa-$pre --preset $pre --modes base --repetitions 3; done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/y"
