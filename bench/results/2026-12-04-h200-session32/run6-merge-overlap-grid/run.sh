#!/bin/bash
# session 32 run 6 (TIMING ONLY): run 5 again with the SGMM on fewer blocks (LSW_CUDA_MERGE_OVERLAP_GRID), so that it leaves SMs to the decode.
# LSW_CUDA_MERGE_OVERLAP_TIMING=1 launches the per-token SGMM on a second stream and joins it only before the lm_head,
# so the decode reads weights while they are being merged (wrong tokens; times only).  Pre-gated q,v r16 base,merge
# interleaved with the default x2
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 75 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cp build/prebuilt.txt $X/
export PATH=$R/.gpu/bin:$PATH
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 cfg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $cfg timeout 90 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$cfg] rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4 | tr '\n' ';')"
}
q="--top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge"
b qv-default-a "" $q
for g in 16 33 66; do b qv-overlap-g$g "LSW_CUDA_MERGE_OVERLAP_TIMING=1 LSW_CUDA_MERGE_OVERLAP_GRID=$g" $q; done
b qv-default-b "" $q
pack
for g in 8 24; do b qv-overlap-g$g "LSW_CUDA_MERGE_OVERLAP_TIMING=1 LSW_CUDA_MERGE_OVERLAP_GRID=$g" $q; done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
