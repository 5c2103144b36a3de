#!/bin/bash
# session 27 run 6: tree 815f67b (the folding GEMVs compute rs right after their wait).  session.sh unpack cudatests
# forward sanitizer fold-tests e2e; then base interleaved x3 against LSW_CUDA_FOLD_RS=late, and all-linear r64
# base,fused and q,v r16 base,merge,fused once each way
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=140 timeout 160 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer fold-tests e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.log $X/s/work/*.txt 2>/dev/null | sort | uniq -c
cp build/prebuilt.txt $X/
pack
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
B="--modes base --router pregated --rank 16 --targets q,v"
for r in a b c; do b early$r "$B"; b late$r "$B" LSW_CUDA_FOLD_RS=late; done
pack
R64="--modes base,fused --router pregated --rank 64 --targets all"
[ $(( $(date +%s) - T0 )) -lt 300 ] && { b r64early "$R64"; b r64late "$R64" LSW_CUDA_FOLD_RS=late; pack; }
QV="--modes base,merge,fused --router pregated --rank 16 --targets q,v"
[ $(( $(date +%s) - T0 )) -lt 330 ] && { b qvearly "$QV"; b qvlate "$QV" LSW_CUDA_FOLD_RS=late; }
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
