#!/bin/bash
# session 54, run 1: the committed tree (pack-53 = f436885's build; 60b2a21 has the same PTX) on whatever GPU comes.
# H200: the SGMM harness (r64 top-2, r16 top-2, r64 top-1; three processes each, alternating) and the 7B
# targets (base / merge / fused q,v r16 top-2; base / fused all-linear r64 top-2; base / merge q,v r64 top-2).
# H100: one r64 top-2 harness process only (these are measured on H100s already).
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
cat $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack-53/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
H200=0; grep -q H200 $X/gpu.txt && H200=1
rounds=3; cases="64,2 16,2 64,1"; [ $H200 = 0 ] && { rounds=1; cases="64,2"; }
for round in $(seq 1 $rounds); do
  for cs in $cases; do
    f=$X/bench-$round-${cs/,/-top}.txt
    LSW_BENCH_SGMM_CASE=$cs LSW_HARNESS_ONLY=bench_sgmm timeout 60 build/dev/bench_kernels $f > /dev/null 2>&1
    echo "round $round r$cs rc=$? $(( $(date +%s) - T0 ))s $(grep -E 'sgmm tc stream' $f | grep -v 'contiguous' | head -4 | grep -oE '[0-9.]+ % of copy' | sed 's/ % of copy//' | tr '\n' ' ')"
  done
  pack
done
[ $H200 = 0 ] && { echo "not an H200: stop"; pack; rm -rf "$OUT/x"; exit 0; }
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
mkdir -p .gpu/g/bundle && cp .gpu/bundle-52/koffi-linux-x64.node .gpu/bundle-52/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-52/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
CLI=$R/.gpu/g/bundle/lora-switch.mjs
b() { local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 110 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 2 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s"; grep -hE "^lora-switch" $X/$n.txt | cut -c1-110
  pack
}
b qv16-1 --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge,fused --merge-prompt batched
b all64-1 --experts 8 --top-k 2 --rank 64 --targets all --router pregated --modes base,fused
b qv64-merge --experts 8 --top-k 2 --rank 64 --targets q,v --router pregated --modes base,merge --merge-prompt batched
b qv16-2 --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge,fused --merge-prompt batched
b all64-2 --experts 8 --top-k 2 --rank 64 --targets all --router pregated --modes base,fused
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
