#!/bin/bash
# session 26 run 3: tree of run 1 minus the down trigger, plus the PDL tuner (LSW_CUDA_GEMV_TUNE_PDL, default on) and
# the SGMM LoRA-B rows once per row block (LSW_CUDA_SGMM_BREUSE, default on); see prebuilt.txt.
# session.sh unpack cudatests forward e2e; harness test_sampling + sgmm (tests, bench with the interleaved A-B rows);
# base interleaved x3: tuner with PDL (new default) / LSW_CUDA_GEMV_TUNE_PDL=0 (before) / before + q,k,v on v10;
# then pre-gated q,v r16, all-linear r64, layer-wise q,v r16: new default vs LSW_CUDA_GEMV_TUNE_PDL=0, x2
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=150 timeout 170 bash scripts/gpu/session.sh $X/s unpack cudatests forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
pack
LSW_HARNESS_ONLY=test_sampling,sgmm timeout 150 ./build/dev/bench_kernels $X/harness-sgmm.txt > /dev/null 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-sgmm.txt | tail -1)"
grep -E "FAIL" $X/harness-sgmm.txt | head -5
grep -E "sgmm tc stream.*q,v x32|copy probe|tc stream plan" $X/harness-sgmm.txt | grep -v " g[12] s" | head -30
pack
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
B="--modes base --router pregated --rank 16 --targets q,v"
O=LSW_CUDA_GEMV_TUNE_PDL=0
for r in a b c; do
  b new$r "$B" LSW_CUDA_VERBOSE=1
  b old$r "$B" $O
  b old10$r "$B" $O LSW_CUDA_GEMV_SHAPES=12288x4096=10
  pack
done
grep -h "lswc: gemv" $X/newa.txt $X/newb.txt | sort | uniq -c | head -20
QV="--modes base,fused,merge --router pregated --rank 16 --targets q,v"
R64="--modes base,fused --router pregated --rank 64 --targets all"
LW="--modes base,fused,merge --router layerwise --rank 16 --targets q,v"
for r in a b; do
  [ $(( $(date +%s) - T0 )) -gt 440 ] && break
  b qvnew$r "$QV"; b qvold$r "$QV" $O
  b r64new$r "$R64"; b r64old$r "$R64" $O
  b lwnew$r "$LW"; b lwold$r "$LW" $O
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
