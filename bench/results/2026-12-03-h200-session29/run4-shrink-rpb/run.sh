#!/bin/bash
# session 29 run 4: tree 96f86d1 + LSW_CUDA_SHRINK_RPB (cap on the A rows per in-kernel shrink block; uncommitted
# when built, see prebuilt.txt).  The 4096-column launches (q,k,v, o, gate,up) run 2 A rows per shrink block by
# default; RPB=1 runs twice as many shrink blocks of 1 row.  A-B interleaved: all-linear r64 base,fused x3, q,v r16
# base,fused x2; then the LoRA harness and end to end with RPB=1 (correctness of the other layout)
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 80 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 rpb=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_SHRINK_RPB=$rpb timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 --modes base,fused "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
for r in a b c; do b r64def$r 0 --rank 64 --targets all --router pregated; b r64rpb1$r 1 --rank 64 --targets all --router pregated; done
for r in a b; do b qvdef$r 0 --rank 16 --targets q,v --router pregated; b qvrpb1$r 1 --rank 16 --targets q,v --router pregated; done
b lwdef 0 --rank 16 --targets q,v --router layerwise; b lwrpb1 1 --rank 16 --targets q,v --router layerwise
pack
LSW_CUDA_SHRINK_RPB=1 GPU=$R/.gpu SESSION_BUDGET_S=150 timeout 170 bash scripts/gpu/session.sh $X/t lora-tests e2e > $X/tests.txt 2>&1; echo "tests rc=$? $(( $(date +%s) - T0 ))s"
cat $X/t/summary.txt; grep -hE "passed|ERROR SUMMARY" $X/t/work/*.log $X/t/work/*.txt 2>/dev/null | sort | uniq -c
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
