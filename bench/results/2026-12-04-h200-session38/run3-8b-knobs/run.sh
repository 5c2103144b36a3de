#!/bin/bash
# session 38 run 3: llama3-8b `base` (87 % of its floor; llama2-7b 93-94 %): which of the decode's knobs moves it.
# Same engine as run 1.  Each knob once against the default, interleaved, on both presets (512-token prompt)
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
[ -f build/native/liblsw.so ] || { (cd .gpu && tar -xJf pack/bf.tar.xz); GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 75 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; }
cp build/prebuilt.txt $X/
export PATH=$R/.gpu/bin:$PATH
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 pre=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 100 node $CLI bench --backend cuda --modes base --repetitions 2 --preset $pre --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f3-5,8-9)"
}
for pre in llama3-8b llama2-7b; do
  s=${pre%%-*}
  b $s-default-1 $pre
  b $s-maxv10 $pre LSW_CUDA_GEMV_MAX_VARIANT=10
  b $s-noswiglufold $pre LSW_CUDA_SWIGLU_FOLD=0
  b $s-nonormfold $pre LSW_CUDA_NORM_FOLD=0
  b $s-default-2 $pre
  b $s-nopdlattn $pre LSW_CUDA_PDL_ATTN=0
  b $s-attnminb1 $pre LSW_CUDA_ATTN_MINB=1
  b $s-trigger-late $pre LSW_CUDA_GEMV_TRIGGER=late
  b $s-notunepdl $pre LSW_CUDA_GEMV_TUNE_PDL=0
  b $s-default-3 $pre
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
