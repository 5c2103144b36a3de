#!/bin/bash
# session 26 run 5: run 4's binaries (20709a7).  Env-only knobs in the new tuner configuration, interleaved x2:
# base with PDL for the attention launch, o / gate,up / lm_head on other variants, every GEMV triggering late,
# --kv-cache f16 (with and without attention PDL); all-linear r64 fused with the in-kernel-shrink LoRA launches on v11
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 80 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
B="--modes base --router pregated --rank 16 --targets q,v"
for r in a b; do
  b def$r "$B"
  b pdlattn$r "$B" LSW_CUDA_PDL_ATTN=1
  b o12$r "$B" LSW_CUDA_GEMV_SHAPES=4096x4096=12
  b o5$r "$B" LSW_CUDA_GEMV_SHAPES=4096x4096=5
  b lm10$r "$B" LSW_CUDA_GEMV_SHAPES=32000x4096=10
  b lm4$r "$B" LSW_CUDA_GEMV_SHAPES=32000x4096=4
  b late$r "$B" LSW_CUDA_GEMV_TRIGGER=late
  b kv16$r "$B --kv-cache f16"
  b kv16pdl$r "$B --kv-cache f16" LSW_CUDA_PDL_ATTN=1
  pack
done
R64="--modes base,fused --router pregated --rank 64 --targets all"
for r in a b; do
  [ $(( $(date +%s) - T0 )) -gt 200 ] && break
  b r64$r "$R64"; b r64v11$r "$R64" LSW_CUDA_GEMV_LORA_DEFAULT=11; b r64pdl$r "$R64" LSW_CUDA_PDL_ATTN=1; pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
