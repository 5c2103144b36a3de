#!/bin/bash
# session 33 run 4: does the f16 cache's decode attention (P = 8 rows per warp, 92-94 registers: 5 blocks per SM, 660
# per wave) need a second wave of blocks past ~640 positions?  Timing knobs: LSW_CUDA_ATTN_MINB=6|8 (the kernel compiled
# for 6 / 8 blocks per SM), LSW_CUDA_ATTN_W16_P4=1 (4 rows per warp), LSW_CUDA_ATTN_WAVE=5 (splits capped to one wave).
# Harness attention rows (612 / 712 / 4096 positions) per knob, then the 7B base decode per knob, interleaved x2
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz)
tar -xJf .gpu/pack/bin.tar.xz && cp build/prebuilt.txt $X/
KN=("LSW_X=0" "LSW_CUDA_ATTN_MINB=6" "LSW_CUDA_ATTN_MINB=8" "LSW_CUDA_ATTN_W16_P4=1" "LSW_CUDA_ATTN_WAVE=5")
for r in 1 2; do
  for i in 0 1 2 3 4; do
    env ${KN[$i]} LSW_HARNESS_ONLY=test_attention,bench_attention timeout 60 build/dev/bench_kernels $X/attn-k$i-$r.txt > $X/attn-k$i-$r.log 2>&1
    echo "attn ${KN[$i]} rc=$? $(grep -E 'validation:' $X/attn-k$i-$r.txt) $(grep -E 'f16 KV ctx=(612|712), 8 positions|f16 KV ctx=(612|712), 4 positions' $X/attn-k$i-$r.txt | awk -F'|' '{printf "%s%s;", substr($2,40,22), $3}')"
  done
done
pack
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 cfg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $cfg timeout 60 node "$CLI" bench --backend cuda --preset llama2-7b --modes base --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$cfg] rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4 | tr '\n' ';')"
}
for r in a b; do
  for i in 0 1 2 3 4; do b base-k$i-$r "${KN[$i]}"; done
  pack
done
b base-f32 "LSW_X=0" --kv-cache f32
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
