#!/bin/bash
# session 26 run 4: the session's final cuda/ tree (prebuilt.txt: 20709a7): the SGMM top-1 consumer,
# LSW_CUDA_GEMV_SHAPES and the PDL tuner.  session.sh unpack cudatests forward sanitizer fold-tests e2e sgmm-bench
# bench-final; harness test_sampling; base interleaved x3 against LSW_CUDA_GEMV_TUNE_PDL=0; per-shape overrides of the
# tuner's choices and --kv-cache f16 (base, once each); layer-wise q,v r16 every mode
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=330 timeout 350 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer fold-tests e2e sgmm-bench bench-final > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
pack
grep -E "sgmm tc stream.*q,v x32|copy probe" $X/s/work/cuda-kernels-sgmm.txt $X/s/cuda-kernels-sgmm.txt 2>/dev/null | grep -v " g[12] s" | head -8
LSW_HARNESS_ONLY=test_sampling timeout 60 ./build/dev/bench_kernels $X/harness-tests.txt > /dev/null 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-tests.txt | tail -1)"
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
B="--modes base --router pregated --rank 16 --targets q,v"
for r in a b c; do b new$r "$B" LSW_CUDA_VERBOSE=1; b old$r "$B" LSW_CUDA_GEMV_TUNE_PDL=0; pack; done
grep -h "lswc: gemv f16" $X/newa.txt
if [ $(( $(date +%s) - T0 )) -lt 470 ]; then
  for o in 22016x4096=11 22016x4096=5 4096x4096=10 4096x4096=9 4096x11008=10 4096x11008=9; do b sw-$o "$B" LSW_CUDA_GEMV_SHAPES=$o; done
  b sw0 "$B"; b kvf16 "$B --kv-cache f16"; pack
fi
[ $(( $(date +%s) - T0 )) -lt 520 ] && { b lw "--router layerwise --rank 16 --targets q,v"; pack; }
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
