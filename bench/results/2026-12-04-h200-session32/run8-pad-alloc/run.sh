#!/bin/bash
# session 32 run 8: why `base` runs faster with LSW_CUDA_MERGE_OVERLAP_TIMING=1 (run 7), whose only effect in base
# mode is a second stream and two events created before the buffers.  A padding cudaMalloc of N bytes before the
# buffers (LSW_CUDA_PAD_ALLOC=N) moves every later buffer the same way a driver allocation would; interleaved x2
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz)
GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 75 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1
cp build/prebuilt.txt $X/
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 cfg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $cfg timeout 60 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$cfg] rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4 | tr '\n' ';')"
}
for r in a b; do
  b base-default-$r "" --modes base
  b base-env-$r "LSW_CUDA_MERGE_OVERLAP_TIMING=1" --modes base
  b base-pad512k-$r "LSW_CUDA_PAD_ALLOC=524288" --modes base
  b base-pad2m-$r "LSW_CUDA_PAD_ALLOC=2097152" --modes base
  b base-pad64m-$r "LSW_CUDA_PAD_ALLOC=67108864" --modes base
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
