#!/bin/bash
# session 27 run 2: the final tree (prebuilt.txt: 9fd79ba, cuda/ as f7f9590).  session.sh unpack cudatests forward
# sanitizer fold-tests e2e sgmm-bench bench-final; then base interleaved x2 with the GEMVs that precede a multi-wave
# GEMV on fewer, larger blocks (so that the next launch's blocks are resident and loading before it ends):
# o / down on v3 (16 rows per block, 256 blocks) or v4 (32 rows, 128 blocks); gate,up on v3 / v4; --kv-cache f16; the decode attention with 8 positions in flight per warp (LSW_CUDA_ATTN_P8=1)
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=300 timeout 320 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer fold-tests e2e sgmm-bench bench-final > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -E "sgmm tc stream.*q,v x32|copy probe" $X/s/work/cuda-kernels-sgmm.txt 2>/dev/null | grep -v " g[12] s" | head -6
grep -E "^lora-switch" $X/s/work/bench-final.log 2>/dev/null
pack
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
B="--modes base --router pregated --rank 16 --targets q,v"
for r in a b; do
  [ $(( $(date +%s) - T0 )) -gt 480 ] && break
  b def$r "$B" LSW_CUDA_VERBOSE=1
  b o3$r "$B" LSW_CUDA_GEMV_SHAPES=4096x4096=3
  b o4$r "$B" LSW_CUDA_GEMV_SHAPES=4096x4096=4
  b dn3$r "$B" LSW_CUDA_GEMV_SHAPES=4096x11008=3
  b dn4$r "$B" LSW_CUDA_GEMV_SHAPES=4096x11008=4
  b od3$r "$B" LSW_CUDA_GEMV_SHAPES=4096x4096=3,4096x11008=3
  b gu3$r "$B" LSW_CUDA_GEMV_SHAPES=22016x4096=3
  b gu4$r "$B" LSW_CUDA_GEMV_SHAPES=22016x4096=4
  b kv16$r "$B --kv-cache f16"
  b p8$r "$B" LSW_CUDA_ATTN_P8=1
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
