#!/bin/bash
# session 24 run 4: the model's new PDL defaults (folding GEMVs with PDL too; plain GEMVs trigger their dependents at
# their start, LoRA GEMVs after their main loop): tests (test_cuda, test_forward, fold harness, e2e CPU == CUDA,
# harness GEMV / PDL / fold / LoRA tests), then A-B against the old defaults (LSW_CUDA_PDL_FOLD_IN=0
# LSW_CUDA_GEMV_TRIGGER=late), interleaved: base, q,v r16 (fused, merge), all-linear r64 fused, layer-wise q,v r16 fused
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
GPU=$R/.gpu SESSION_BUDGET_S=150 timeout 170 bash scripts/gpu/session.sh $X/s unpack cudatests forward fold-tests e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
LSW_HARNESS_ONLY=test_gemv_pdl,test_norm_fold,test_swiglu_fold,test_lora,test_lora_pdl_chain timeout 90 ./build/dev/bench_kernels $X/harness-tests.txt > /dev/null 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-tests.txt | tail -1)"
grep -E "FAIL" $X/harness-tests.txt | head -5
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 70 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
OLD="LSW_CUDA_PDL_FOLD_IN=0 LSW_CUDA_GEMV_TRIGGER=late"
for r in a b c; do b new$r "--modes base"; b old$r "--modes base" $OLD; done
QV="--modes base,fused,merge --router pregated --rank 16 --targets q,v"
R64="--modes base,fused --router pregated --rank 64 --targets all"
LW="--modes base,fused --router layerwise --rank 16 --targets q,v"
for r in a b; do
  b qvnew$r "$QV"; b qvold$r "$QV" $OLD
  b r64new$r "$R64"; b r64old$r "$R64" $OLD
  [ $(( $(date +%s) - T0 )) -gt 470 ] && break
  b lwnew$r "$LW"; b lwold$r "$LW" $OLD
  [ $(( $(date +%s) - T0 )) -gt 480 ] && break
done
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
