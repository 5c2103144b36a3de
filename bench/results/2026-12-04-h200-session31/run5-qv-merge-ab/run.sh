#!/bin/bash
# session 31 run 5 (tree 098763e): the 7B pre-gated q,v r16 top-2 `merge` bench with LSW_CUDA_SGMM_SHARED=off / auto
# interleaved x2 (issue 4's merge target), then the harness's SGMM bench section alone
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack/bin.tar.xz && cp build/prebuilt.txt $X/
export PATH=$R/.gpu/bin:$PATH
[ -x .gpu/bin/node ] || { mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node; }
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 sh=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_SGMM_SHARED=$sh timeout 90 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6,14 | tr '\n' ';')"
}
for r in a b; do
  b qv-off-$r off --top-k 2 --rank 16 --targets q,v --modes base,merge --router pregated
  b qv-auto-$r auto --top-k 2 --rank 16 --targets q,v --modes base,merge --router pregated
done
pack
LSW_HARNESS_ONLY=bench_sgmm timeout 120 ./build/dev/bench_kernels $X/cuda-kernels-sgmm.txt > $X/harness.log 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s"
grep -E "^\| sgmm tc stream(,| q,v)" $X/cuda-kernels-sgmm.txt | grep -E "r64 top-1|r16 top-2 \(" | grep -v " g[12] s[0-9] w[0-9] q" | cut -c1-150 | head -24
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
