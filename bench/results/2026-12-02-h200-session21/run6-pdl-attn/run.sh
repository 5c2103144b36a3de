#!/bin/bash
# session 21 run 6: whole 7B base / all-linear r64 fused with the decode attention launched with PDL
# (LSW_CUDA_PDL_ATTN=1) against the default, on HEAD's prebuilt binaries (scripts/gpu/pack-prebuilt.sh)
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz) && tar -xJf .gpu/pack/bin.tar.xz
export LD_LIBRARY_PATH=$R/build/native LSW_NATIVE_LIB=$R/build/native/liblsw.so
mkdir -p .gpu/bin $OUT/x && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
X=$OUT/x; cat build/prebuilt.txt > $X/prebuilt.txt
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
for r in 1 2; do
  for pa in 0 1; do
    LSW_CUDA_PDL_ATTN=$pa timeout 120 node .gpu/bundle/lora-switch.mjs bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 64 --targets all --router pregated --modes base,fused --repetitions 3 --out $X/r64-pdlattn$pa-$r.json > $X/r64-pdlattn$pa-$r.txt 2>&1
    echo "round $r PDL_ATTN=$pa rc=$?"; grep -E "^lora-switch" $X/r64-pdlattn$pa-$r.txt
  done
done
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
