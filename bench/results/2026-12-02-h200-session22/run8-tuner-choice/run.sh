#!/bin/bash
# session 22 run 8: the tuner's choice at model load and the decode time, per bench process (LSW_CUDA_VERBOSE=1):
# four processes with v1..v11 (default), four with v1..v10, interleaved
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
tar -xJf .gpu/pack/bin.tar.xz
export LD_LIBRARY_PATH=$R/build/native
mkdir -p "$OUT/x" .gpu/bin
xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
X=$OUT/x
cp build/prebuilt.txt $X/
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { # name env...
  local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_VERBOSE=1 "$@" timeout 120 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --modes base --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n: $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4) | $(grep -oE 'gemv f16 [0-9x]+ -> v[0-9]+' $X/$n.txt | sed 's/gemv f16 //' | tr '\n' ' ')"
}
for r in 1 2 3 4; do
  b v11-$r
  b v10-$r LSW_CUDA_GEMV_MAX_VARIANT=10
done
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
