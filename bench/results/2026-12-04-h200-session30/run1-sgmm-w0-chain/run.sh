#!/bin/bash
# session 30 run 1: the tensor-core SGMM's chain from W0 (W = round(fmaf(g_k, tmp_k, ... W0)), one FFMA per element in
# the top-1 epilogue; pairwise 16-bit packing) against the tree before it (ffe886e): the new tree's GPU tests, then the
# SGMM harness old / new interleaved x3, then the 7B q,v r16 top-2 merge bench old / new interleaved x2
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p old && (cd old && tar -xJf ../.gpu/pack/bin-old.tar.xz) && cp old/build/prebuilt.txt $X/prebuilt-old.txt
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 215 bash scripts/gpu/session.sh $X/s unpack cudatests sgmm-bench forward lora-tests e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/prebuilt-new.txt
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -20
pack
for r in 1 2 3; do
  for v in old new; do
    if [ $v = old ]; then B=$R/old/build; else B=$R/build; fi
    LSW_HARNESS_ONLY=bench_sgmm timeout 100 $B/dev/bench_kernels $X/sgmm-$v-$r.txt > $X/sgmm-$v-$r.log 2>&1
    echo "sgmm $v $r rc=$? $(( $(date +%s) - T0 ))s"
    grep -E "sgmm tc stream q,v|sgmm tc stream, top-1|copy probe|FAIL|fail" $X/sgmm-$v-$r.txt | head -8
  done
done
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 lib=$2; shift 2
  env LSW_NATIVE_LIB=$lib timeout 100 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 --router pregated "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6,14 | tr '\n' ';')"
}
for r in a b; do
  b qv-old-$r $R/old/build/native/liblsw.so --rank 16 --targets q,v --modes base,merge
  b qv-new-$r $R/build/native/liblsw.so --rank 16 --targets q,v --modes base,merge
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
