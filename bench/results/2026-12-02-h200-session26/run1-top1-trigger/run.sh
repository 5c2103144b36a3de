#!/bin/bash
# session 26 run 1: tree of session 26's first changes (see prebuilt.txt): the SGMM top-1 consumer, the down GEMV's
# late trigger before q,k,v, LSW_CUDA_GEMV_SHAPES; plus fe47f96's router mend (first GPU run).
# session.sh unpack cudatests forward e2e; harness test_sampling, sgmm (tests + bench with the top-1 A-B);
# base A-B-C interleaved x2: LSW_CUDA_GEMV_TRIGGER_DOWN=start (before) / default (late) / late + qkv on v11
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
grep -E "sgmm tc stream.*q,v x32|sgmm tc stream q,v|copy probe|tc stream plan" $X/harness-sgmm.txt | head -40
pack
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 m=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 $m --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
B="--modes base --router pregated --rank 16 --targets q,v"
for r in a b c; do
  [ $(( $(date +%s) - T0 )) -gt 470 ] && break
  b start$r "$B" LSW_CUDA_GEMV_TRIGGER_DOWN=start; pack
  b late$r "$B"; pack
  b v11$r "$B" LSW_CUDA_GEMV_SHAPES=12288x4096=11; pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
