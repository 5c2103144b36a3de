#!/bin/bash
# session 37 run 1: the final tree on a GPU: every GPU test (the engine of bin.tar.xz = the cuda/ of this tree, built
# here), then the README's benches from this code in one process each
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
b() { local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 110 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -c1-110 | tr '\n' ';')"
}
b qv-r16 --rank 16 --targets q,v --router pregated
pack
b all-r64 --rank 64 --targets all --router pregated --modes base,fused
pack
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
