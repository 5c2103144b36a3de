#!/bin/bash
# session 31 run 2: the streaming SGMM's shared-A mode, auto where it gives more stages per group or a wider
# super-strip (its width: the widest with >= 3 stages per group, else 2).  The tree's GPU tests (test_cuda, the SGMM
# harness with forced-shared bit-identity checks and memcheck, test_forward, end to end), the harness's SGMM bench
# (shared off / auto / forced at widths 8, 4, 2, interleaved x3), then the 7B q,v r16 top-2 `merge` bench with
# LSW_CUDA_SGMM_SHARED=off / auto interleaved x2
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=260 timeout 275 bash scripts/gpu/session.sh $X/s unpack cudatests sgmm-bench forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -20
grep -hE "^  FAIL|not bit-identical|FAILED" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
grep -E "^\| sgmm tc stream(,| q,v)|^\| sgmm copy probe" $X/s/work/cuda-kernels-sgmm.txt | grep -v " g[12] s" | cut -c1-150 | head -60
grep -E "tc stream plan" $X/s/work/cuda-kernels-sgmm.txt | head -3
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 sh=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_SGMM_SHARED=$sh timeout 90 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --router pregated "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6,14 | tr '\n' ';')"
}
for r in a b; do
  b qv-off-$r off --top-k 2 --rank 16 --targets q,v --modes base,merge
  b qv-auto-$r auto --top-k 2 --rank 16 --targets q,v --modes base,merge
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
