#!/bin/bash
# session 30 run 2: how much of the 7B `base` decode step the decode attention costs in the chain.  A library built from
# ffe886e plus a timing-only knob (attn-dev.diff; not in the tree: it gives wrong results): LSW_DEV_ATTN=skip launches
# no decode attention, =nowait runs it without griddepcontrol.wait (an upper bound for starting it before the q,k,v
# GEMV ends).  `bench --modes base`, three interleaved rounds with the f32 KV cache, one with --kv-cache f16.
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh; cp .gpu/pack/attn-dev.diff $X/
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p attn && (cd attn && tar -xJf ../.gpu/pack/lib-attn.tar.xz) && cp attn/build/prebuilt.txt $X/prebuilt.txt
export PATH=$R/.gpu/bin:$PATH
mkdir -p .gpu/bin; [ -x .gpu/bin/node ] || { xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node; }
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/attn/build/native/liblsw.so LSW_DEV_ATTN=$m timeout 90 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --modes base "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6,14 | tr '\n' ';')"
}
for r in 1 2 3; do b def$r default; b skip$r skip; b nowait$r nowait; pack; done
b def-f16 default --kv-cache f16; b skip-f16 skip --kv-cache f16; b nowait-f16 nowait --kv-cache f16
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
