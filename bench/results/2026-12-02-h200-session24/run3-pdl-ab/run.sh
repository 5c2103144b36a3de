#!/bin/bash
# session 24 run 3: GEMV -> GEMV launches with PDL in the whole 7B decode, again (run 2's harness: the 7B linears graph
# with PDL triggered at the start 3.256 ms = 95.0 % of copy, against 3.328 without PDL and 3.354 with the late
# trigger).  Binaries of run 2 with the persistent path off (LSW_CUDA_GEMV_PERSIST unset: the committed kernels).
# base A-B, interleaved: default (fold-in GEMVs without PDL, late trigger), FOLD_IN=1 + start, FOLD_IN=1 + late,
# start alone; then all-linear r64 fused and q,v r16 fused, default vs FOLD_IN=1 + start
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
GPU=$R/.gpu SESSION_BUDGET_S=30 timeout 40 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; echo "unpack rc=$?"
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 70 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-5 | tr '\n' ';')"
}
BASE="--modes base"
for r in a b c; do
  b def$r "$BASE"
  b fs$r "$BASE" LSW_CUDA_PDL_FOLD_IN=1 LSW_CUDA_GEMV_TRIGGER=start
  b fl$r "$BASE" LSW_CUDA_PDL_FOLD_IN=1
  b st$r "$BASE" LSW_CUDA_GEMV_TRIGGER=start
done
echo "base done $(( $(date +%s) - T0 ))s"
R64="--modes base,fused --router pregated --rank 64 --targets all"
QV="--modes base,fused,merge --router pregated --rank 16 --targets q,v"
for r in a b; do
  b r64def$r "$R64"
  b r64fs$r "$R64" LSW_CUDA_PDL_FOLD_IN=1 LSW_CUDA_GEMV_TRIGGER=start
  [ $(( $(date +%s) - T0 )) -gt 420 ] && break
  b qvdef$r "$QV"
  b qvfs$r "$QV" LSW_CUDA_PDL_FOLD_IN=1 LSW_CUDA_GEMV_TRIGGER=start
  [ $(( $(date +%s) - T0 )) -gt 460 ] && break
done
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
