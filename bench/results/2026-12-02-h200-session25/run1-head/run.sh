#!/bin/bash
# session 25 run 1: HEAD (06a6d85; 565eb1b's env_flag / prefetch_l2 mend and 07b62e2's opt-in router PDL, never run
# on a GPU): session.sh unpack cudatests forward sanitizer fold-tests e2e; harness test_sampling (router PDL case),
# test_lora, test_lora_pdl_chain; router PDL A-B (LSW_CUDA_PDL_ROUTER=1 vs default off) for layer-wise q,v r16
# base,fused,merge, interleaved x2; harness sgmm (fresh baseline of the rank-64 cases)
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 220 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer fold-tests e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
LSW_HARNESS_ONLY=test_sampling,test_lora,test_lora_pdl_chain timeout 90 ./build/dev/bench_kernels $X/harness-tests.txt > /dev/null 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-tests.txt | tail -1)"
grep -E "FAIL" $X/harness-tests.txt | head -5
pack
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
LW="--modes base,fused,merge --router layerwise --rank 16 --targets q,v"
for r in a b; do b lwpdl$r "$LW" LSW_CUDA_PDL_ROUTER=1; pack; b lwoff$r "$LW"; pack; [ $(( $(date +%s) - T0 )) -gt 420 ] && break; done
if [ $(( $(date +%s) - T0 )) -lt 470 ]; then
  LSW_HARNESS_ONLY=sgmm timeout 100 ./build/dev/bench_kernels $X/harness-sgmm.txt > /dev/null 2>&1; echo "sgmm rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-sgmm.txt | tail -1)"
  grep -E "sgmm tc stream q,v|copy probe" $X/harness-sgmm.txt
fi
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
