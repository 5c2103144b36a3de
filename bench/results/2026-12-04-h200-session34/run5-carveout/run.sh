#!/bin/bash
# session 34 run 5: does the shared memory configuration cost?  LSW_CUDA_CARVEOUT=N sets every launch_pdl_smem kernel's
# preferred carveout to N % (the same configuration for all of them), against the driver's choice; base, default fused,
# and the extended-K consumer with no work (skip + EXT=3, timing only) and with B requested before the wait (EXT=4),
# all-linear r64, interleaved x2
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
  echo "$n [$cfg] rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4 | tr '\n' ';') $(grep -c refused $X/$n.txt)"
}
KN=("LSW_X=0" "LSW_CUDA_CARVEOUT=25" "LSW_CUDA_CARVEOUT=50" "LSW_CUDA_FUSED_SHRINK=skip LSW_CUDA_LORA_EXT=3" "LSW_CUDA_FUSED_SHRINK=skip LSW_CUDA_LORA_EXT=3 LSW_CUDA_CARVEOUT=25" "LSW_CUDA_FUSED_SHRINK=skip LSW_CUDA_LORA_EXT=4 LSW_CUDA_CARVEOUT=25" "LSW_CUDA_CARVEOUT=100")
for r in a b; do
  for i in 0 1 2 3 4 5 6; do b all-k$i-$r "${KN[$i]}" --rank 64 --targets all --router pregated --modes base,fused; done
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
