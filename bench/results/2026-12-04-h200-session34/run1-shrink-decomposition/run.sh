#!/bin/bash
# session 34 run 1: where all-linear r64 fused's extra time goes.  Timing-only knobs (wrong tokens):
#   LSW_CUDA_FUSED_SHRINK=skip: no shrinks at all, the LoRA GEMVs read a stale t (the consumers' cost alone)
#   LSW_CUDA_FUSED_SHRINK=only: the separate path's shrink launches, then plain GEMVs (no expand)
#   LSW_CUDA_FUSED_SHRINK=separate: the separate path as it is (shrink launches + LoRA GEMVs with t given)
# interleaved x2, plus skip with every GEMV triggering at its start, and q,v r16 default / skip
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz)
tar -xJf .gpu/pack/lib34a.tar.xz
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 cfg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $cfg timeout 90 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$cfg] rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4 | tr '\n' ';')"
}
KN=("LSW_X=0" "LSW_CUDA_FUSED_SHRINK=skip" "LSW_CUDA_FUSED_SHRINK=only" "LSW_CUDA_FUSED_SHRINK=separate")
for r in a b; do
  for i in 0 1 2 3; do b all-k$i-$r "${KN[$i]}" --rank 64 --targets all --router pregated --modes base,fused; done
  pack
done
b all-skipstart "LSW_CUDA_FUSED_SHRINK=skip LSW_CUDA_GEMV_TRIGGER=start" --rank 64 --targets all --router pregated --modes base,fused
b qv-k0 "LSW_X=0" --rank 16 --targets q,v --router pregated --modes base,fused
b qv-k1 "LSW_CUDA_FUSED_SHRINK=skip" --rank 16 --targets q,v --router pregated --modes base,fused
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
