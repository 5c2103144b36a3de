#!/bin/bash
# session 34 run 2: the extended-K LoRA consumer prototype (LSW_CUDA_LORA_EXT=1: with t an input, each row's gathered
# B chunks and t slices are extra columns of its dot product, on the plain variant, no epilogue).  First its
# path), then all-linear r64 fused interleaved x2: default / skip / skip+EXT / separate / separate+EXT, and q,v r16.
# skip (no shrinks, stale t) is timing only.
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz)
tar -xJf .gpu/pack/ext34.tar.xz && cp build/prebuilt.txt $X/ 2>/dev/null
for e in 0 1; do
  env LSW_CUDA_LORA_EXT=$e LSW_HARNESS_ONLY=test_lora timeout 120 build/dev/bench_kernels $X/lora-ext$e.txt > $X/lora-ext$e.log 2>&1
  echo "test_lora ext=$e rc=$? $(grep -E 'validation:' $X/lora-ext$e.txt | tail -1) $(( $(date +%s) - T0 ))s"
done
grep -E "FAIL" $X/lora-ext1.txt | head -5
pack
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 cfg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $cfg timeout 90 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$cfg] rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4 | tr '\n' ';')"
}
KN=("LSW_X=0" "LSW_CUDA_FUSED_SHRINK=skip" "LSW_CUDA_FUSED_SHRINK=skip LSW_CUDA_LORA_EXT=1" "LSW_CUDA_FUSED_SHRINK=separate" "LSW_CUDA_FUSED_SHRINK=separate LSW_CUDA_LORA_EXT=1")
for r in a b; do
  for i in 0 1 2 3 4; do b all-k$i-$r "${KN[$i]}" --rank 64 --targets all --router pregated --modes base,fused; done
  pack
done
b qv-k0 "LSW_X=0" --rank 16 --targets q,v --router pregated --modes base,fused
b qv-k4 "${KN[4]}" --rank 16 --targets q,v --router pregated --modes base,fused
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
