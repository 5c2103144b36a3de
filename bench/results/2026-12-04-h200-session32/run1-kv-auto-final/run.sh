#!/bin/bash
# session 32 run 1: the tree with the KV cache default `auto` (the weights' type: f16 for the F16 presets).  The GPU
# tests (test_cuda, test_forward, end to end CPU == CUDA with --kv-cache f32 and f16 given explicitly), then the
# README's benches with the new default, and `base` with --kv-cache f32 against the default, interleaved x2
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=250 timeout 265 bash scripts/gpu/session.sh $X/s unpack cudatests forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -20
grep -hE "^  FAIL|not bit-identical|FAILED|MISMATCH" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 100 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -c1-120 | tr '\n' ';')"
}
b qv-r16 --rank 16 --targets q,v --router pregated
pack
b all-r64 --rank 64 --targets all --router pregated --modes base,fused
pack
for r in a b; do
  b base-kvf32-$r --modes base --repetitions 3 --kv-cache f32
  b base-auto-$r --modes base --repetitions 3
done
pack
[ $(( $(date +%s) - T0 )) -lt 470 ] && b qv-r16-lw --rank 16 --targets q,v --router layerwise --modes base,fused,merge --repetitions 3
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
