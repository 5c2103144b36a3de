#!/bin/bash
# session 38 run 7: the GEMV tuner preferring v11 within 3 % of the fastest (LSW_CUDA_GEMV_PREFER=0: the fastest
# alone).  test_cuda and end to end on this build, then base A-B interleaved: llama2-7b four pairs, llama3-8b three,
# each process printing its choices
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=150 timeout 165 bash scripts/gpu/session.sh $X/s unpack cudatests forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -30
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 pre=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_VERBOSE=1 "$@" timeout 100 node "$CLI" bench --backend cuda --preset $pre --modes base --repetitions 3 --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-5,8-9 | tr '\n' ';') $(grep -E '^lswc: gemv f16' $X/$n.txt | sed 's/lswc: gemv f16 \([0-9x]*\) -> \(v[0-9]*\).*/\1:\2/' | tr '\n' ' ')"
}
for r in 1 2 3 4; do
  b 7b-prefer-$r llama2-7b
  b 7b-fastest-$r llama2-7b LSW_CUDA_GEMV_PREFER=0
  [ $r -le 3 ] && { b 8b-prefer-$r llama3-8b; b 8b-fastest-$r llama3-8b LSW_CUDA_GEMV_PREFER=0; }
  pack
done
grep -h "preferred" $X/*-prefer-*.txt | head -20
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
