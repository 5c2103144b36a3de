#!/bin/bash
# session 38 run 5: llama3-8b base with and without the greedy tail, four more interleaved pairs, each process
# printing its GEMV tuner's choices (LSW_CUDA_VERBOSE=1): run 4's 8B pairs split by process (4.18 or 4.25 without
# the tail, 4.22 with it), 7B pairs did not
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
[ -f build/native/liblsw.so ] && strings build/native/liblsw.so | grep -q greedy_advance || { (cd .gpu && tar -xJf pack/bf.tar.xz); GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 75 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; }
cp build/prebuilt.txt $X/
export PATH=$R/.gpu/bin:$PATH
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 tail=$2 pre=$3; shift 3
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_VERBOSE=1 LSW_CUDA_BENCH_EVENTS=1 LSW_CUDA_GREEDY_TAIL=$tail timeout 100 node "$CLI" bench --backend cuda --preset $pre "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-5,8-9 | tr '\n' ';') $(grep -E '^lswc: gemv' $X/$n.txt | sed 's/lswc: gemv f16 \([0-9x]*\) -> \(v[0-9]*\).*/\1:\2/' | tr '\n' ' ')"
}
for r in 1 2 3 4; do
  b 8b-notail-$r 0 llama3-8b --modes base --repetitions 3
  b 8b-tail-$r 1 llama3-8b --modes base --repetitions 3
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
