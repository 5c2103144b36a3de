#!/bin/bash
# session 37 run 2: the rest of the README's rows from the code of this tree: layer-wise q,v r16 in every mode,
# all-linear r64 unfused, q,v r16 merge with --merge-prompt batched
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 80 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; echo "unpack rc=$? $(( $(date +%s) - T0 ))s"
cp build/prebuilt.txt $X/
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 150 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -c1-110 | tr '\n' ';')"
}
b qv-r16-lw --rank 16 --targets q,v --router layerwise --repetitions 3
pack
b all-r64-unfused --rank 64 --targets all --router pregated --modes base,unfused --repetitions 3
pack
b qv-r16-batched --rank 16 --targets q,v --router pregated --modes base,merge --merge-prompt batched --repetitions 3
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
