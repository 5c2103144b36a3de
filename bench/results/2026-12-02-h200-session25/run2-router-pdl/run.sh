#!/bin/bash
# session 25 run 2: the routers on PDL by default (6207e5e-ish, see prebuilt.txt): session.sh unpack cudatests
# forward e2e; harness test_sampling; A-B against LSW_CUDA_PDL_ROUTER=0, interleaved: pre-gated q,v r16
# base,fused,merge, all-linear r64 base,fused, layer-wise q,v r16 base,fused,merge; harness bench_7b_parts (where the
# all-linear r64 fused cost goes, per matrix kind) last
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=120 timeout 140 bash scripts/gpu/session.sh $X/s unpack cudatests forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
LSW_HARNESS_ONLY=test_sampling timeout 60 ./build/dev/bench_kernels $X/harness-tests.txt > /dev/null 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-tests.txt | tail -1)"
grep -E "FAIL" $X/harness-tests.txt | head -5
pack
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
QV="--modes base,fused,merge --router pregated --rank 16 --targets q,v"
R64="--modes base,fused --router pregated --rank 64 --targets all"
LW="--modes base,fused,merge --router layerwise --rank 16 --targets q,v"
b qvon "$QV"; pack; b qvoff "$QV" LSW_CUDA_PDL_ROUTER=0; pack
b r64on "$R64"; pack; b r64off "$R64" LSW_CUDA_PDL_ROUTER=0; pack
b lwon "$LW"; pack; b lwoff "$LW" LSW_CUDA_PDL_ROUTER=0; pack
if [ $(( $(date +%s) - T0 )) -lt 400 ]; then
  LSW_HARNESS_ONLY=bench_7b_parts timeout 120 ./build/dev/bench_kernels $X/harness-7b-parts.txt > /dev/null 2>&1; echo "parts rc=$? $(( $(date +%s) - T0 ))s"
  grep -E "per launch|^  \| 7B" $X/harness-7b-parts.txt
fi
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
