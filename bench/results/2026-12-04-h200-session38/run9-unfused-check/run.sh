#!/bin/bash
# session 38 run 9: run 8 measured q,v r16 `unfused` at 5.78 ms (session 37: 5.64, and run 4 of this session 5.64 with
# the greedy tail, before the tuner's v11 preference).  Is it the preference?  q,v r16 in every mode, preference on
# and off (LSW_CUDA_GEMV_PREFER=0), two interleaved pairs, each process printing its choices.  Engine of run 8.
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 75 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1
cp build/prebuilt.txt $X/
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_VERBOSE=1 "$@" timeout 100 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --repetitions 3 --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4,6 | tr '\n' ';') $(grep -E '^lswc: gemv f16' $X/$n.txt | sed 's/lswc: gemv f16 \([0-9x]*\) -> \(v[0-9]*\).*/\1:\2/' | tr '\n' ' ')"
}
for r in 1 2; do
  b qv16-prefer-$r
  b qv16-fastest-$r LSW_CUDA_GEMV_PREFER=0
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
