#!/bin/bash
# session 34 run 10: run 9 with every adapter of the 16-bit base saved in f16 (run 9 had f32 PEFT and MixLoRA adapters there,
# which the engine rounds to f16 while the references keep them), LoRA-Switch ones at rank 16; e2e CPU == CUDA and the
# transformers / peft comparison on the tree's kernels (bin.tar.xz: c68de97, cuda/ unchanged since but comments)
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz)
GPU=$R/.gpu SESSION_BUDGET_S=300 timeout 320 bash scripts/gpu/session.sh $X/s unpack e2e compare > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|failed|mismatch" $X/s/*.log 2>/dev/null | tail -8
pack; rm -rf "$OUT/x"
