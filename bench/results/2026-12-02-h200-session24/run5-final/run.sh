#!/bin/bash
# session 24 run 5 (final tree b7344fe: the new PDL defaults): compute-sanitizer memcheck of test_cuda, attention
# harness, bench-final (the main README's rows), layer-wise q,v r16 base/fused/merge, base A-B new / old defaults
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 220 bash scripts/gpu/session.sh $X/s unpack sanitizer attn-tests bench-final > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
grep -E "^lora-switch" $X/s/work/bench-final.log 2>/dev/null | tr -s ' ' | cut -d' ' -f2-3,6
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 70 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
b lw "--modes base,fused,merge --router layerwise --rank 16 --targets q,v"
OLD="LSW_CUDA_PDL_FOLD_IN=0 LSW_CUDA_GEMV_TRIGGER=late"
for r in a b; do b new$r "--modes base"; b old$r "--modes base" $OLD; [ $(( $(date +%s) - T0 )) -gt 400 ] && break; done
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
