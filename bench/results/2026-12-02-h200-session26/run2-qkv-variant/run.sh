#!/bin/bash
# session 26 run 2: same binaries as run 1 (prebuilt.txt). The q,k,v GEMV's variant and the down GEMV's trigger,
# interleaved x3: base with LSW_CUDA_GEMV_TRIGGER_DOWN=start|late x qkv on the tuner's choice / v11 / v12 / v10;
# then the best-looking settings on pre-gated q,v r16 (base,fused,merge), all-linear r64 (base,fused) and layer-wise
# q,v r16 (base,fused,merge)
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
S=LSW_CUDA_GEMV_TRIGGER_DOWN=start
for r in a b c; do
  b st$r "$B" $S
  b st11$r "$B" $S LSW_CUDA_GEMV_SHAPES=12288x4096=11
  b la11$r "$B" LSW_CUDA_GEMV_SHAPES=12288x4096=11
  b st12$r "$B" $S LSW_CUDA_GEMV_SHAPES=12288x4096=12
  b st10$r "$B" $S LSW_CUDA_GEMV_SHAPES=12288x4096=10
  b st9$r "$B" $S LSW_CUDA_GEMV_SHAPES=12288x4096=9
  pack
done
QV="--modes base,fused,merge --router pregated --rank 16 --targets q,v"
R64="--modes base,fused --router pregated --rank 64 --targets all"
LW="--modes base,fused,merge --router layerwise --rank 16 --targets q,v"
for r in a b; do
  [ $(( $(date +%s) - T0 )) -gt 450 ] && break
  b qvst$r "$QV" $S; b qv11$r "$QV" $S LSW_CUDA_GEMV_SHAPES=12288x4096=11
  b r64st$r "$R64" $S; b r6411$r "$R64" $S LSW_CUDA_GEMV_SHAPES=12288x4096=11
  b lwst$r "$LW" $S; b lw11$r "$LW" $S LSW_CUDA_GEMV_SHAPES=12288x4096=11
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
