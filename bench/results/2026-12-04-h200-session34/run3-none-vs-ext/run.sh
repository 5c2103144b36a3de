#!/bin/bash
# session 34 run 3: where the LoRA consumers' extra time is.  LSW_CUDA_FUSED_SHRINK=none (timing only): fused mode
# with neither shrinks nor expands (its GEMVs are base's) against skip (t stale, the LoRA epilogue) and skip + EXT
# (the extended-K consumer), all-linear r64, interleaved x2; then one verbose run of each for the GEMV choices
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz)
tar -xJf .gpu/pack/ext34.tar.xz && cp build/prebuilt.txt $X/ 2>/dev/null
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 cfg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $cfg timeout 90 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$cfg] rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4 | tr '\n' ';')"
}
KN=("LSW_X=0" "LSW_CUDA_FUSED_SHRINK=none" "LSW_CUDA_FUSED_SHRINK=skip" "LSW_CUDA_FUSED_SHRINK=skip LSW_CUDA_LORA_EXT=1")
for r in a b; do
  for i in 0 1 2 3; do b all-k$i-$r "${KN[$i]}" --rank 64 --targets all --router pregated --modes base,fused; done
  pack
done
b all-none-v "LSW_CUDA_FUSED_SHRINK=none LSW_CUDA_VERBOSE=1" --rank 64 --targets all --router pregated --modes base,fused
b all-ext-v "LSW_CUDA_FUSED_SHRINK=skip LSW_CUDA_LORA_EXT=1 LSW_CUDA_VERBOSE=1" --rank 64 --targets all --router pregated --modes base,fused
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
