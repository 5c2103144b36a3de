#!/bin/bash
# session 33 run 5: the tree with the one-wave decode attention (16-bit cache's P = 8 kernel at 6 blocks per SM; splits
# capped to one wave).  Every GPU test, then the old attention (LSW_CUDA_ATTN_MINB=1 LSW_CUDA_ATTN_WAVE=0) against the
# new default in `base`, interleaved x3, then the README's benches
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=330 timeout 345 bash scripts/gpu/session.sh $X/s unpack cudatests forward attn-tests attn-memcheck sanitizer fold-tests lora-tests sgmm e2e compare > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -30
grep -hE "^  FAIL|FAILED|MISMATCH" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 cfg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $cfg timeout 100 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$cfg] rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -c1-110 | tr '\n' ';')"
}
for r in a b c; do
  b base-old-$r "LSW_CUDA_ATTN_MINB=1 LSW_CUDA_ATTN_WAVE=0" --modes base --repetitions 3
  b base-new-$r "LSW_X=0" --modes base --repetitions 3
done
pack
b qv-r16 "LSW_X=0" --rank 16 --targets q,v --router pregated
pack
b all-r64 "LSW_X=0" --rank 64 --targets all --router pregated --modes base,fused
pack
[ $(( $(date +%s) - T0 )) -lt 560 ] && b qv-r16-lw "LSW_X=0" --rank 16 --targets q,v --router layerwise --modes base,fused,merge --repetitions 3
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
