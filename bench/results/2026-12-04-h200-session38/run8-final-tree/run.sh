#!/bin/bash
# session 38 run 8: the final tree on a GPU: every GPU test (the engine, test_cuda, test_forward and the harness of
# bin.tar.xz, built from this tree by scripts/gpu/pack-prebuilt.sh), then the README's lora-switch rows in one process
# each (same order as session 37's runs 1-2)
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
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 150 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -c1-110 | tr '\n' ';')"
}
b qv-r16 --rank 16 --targets q,v --router pregated
pack
b all-r64 --rank 64 --targets all --router pregated --modes base,fused
pack
b qv-r16-lw --rank 16 --targets q,v --router layerwise --repetitions 3
pack
b all-r64-unfused --rank 64 --targets all --router pregated --modes base,unfused --repetitions 3
b qv-r16-batched --rank 16 --targets q,v --router pregated --modes base,merge --merge-prompt batched --repetitions 3
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
