#!/bin/bash
# session 32 run 3: `base` with the f16 cache (the new default) against existing decode knobs, tuned when the default
# cache was f32: the K/V tile attention kernel at every context (LSW_CUDA_ATTN_LONG=1, with its default and 16
# splits), GEMV trigger late, the attention launched without PDL, GEMV variants up to 12; interleaved x2
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
[ -f build/native/liblsw.so ] || { (cd .gpu && tar -xJf pack/bf.tar.xz); GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 75 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; }
[ -f .gpu/bundle/lora-switch.mjs ] || (cd .gpu && tar -xJf pack/bf.tar.xz)
cp build/prebuilt.txt $X/
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 cfg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $cfg timeout 60 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$cfg] rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4 | tr '\n' ';')"
}
for r in a b; do
  b default-$r "" --modes base
  b long1-$r "LSW_CUDA_ATTN_LONG=1" --modes base
  b long1-s16-$r "LSW_CUDA_ATTN_LONG=1 LSW_CUDA_ATTN_SPLITS=16" --modes base
  b triglate-$r "LSW_CUDA_GEMV_TRIGGER=late" --modes base
  b pdlattn0-$r "LSW_CUDA_PDL_ATTN=0" --modes base
  b maxv12-$r "LSW_CUDA_GEMV_MAX_VARIANT=12" --modes base
done
pack
b qv-default "" --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge,fused
b qv-long1 "LSW_CUDA_ATTN_LONG=1" --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge,fused
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
