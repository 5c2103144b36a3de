#!/bin/bash
# session 42 run 4: the final tree's library (CPU prompts of MixLoRA and LoRA-Switch-style adapters grouped by expert;
# the decode attention's register kernel at every context) through the GPU tests that compare the GPU with the CPU
# backend and with transformers / peft: test_cuda (+ memcheck), test_forward, the attention harness, end to end,
# transformers / peft.
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=300 timeout 315 bash scripts/gpu/session.sh $X/s unpack cudatests forward attn-tests sanitizer e2e compare > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
grep -hE "^  FAIL|FAILED|MISMATCH" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
pack
cp build/prebuilt.txt $X/
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 pre=$2 p=$3 nt=$4 lg=$5; shift 5
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $lg timeout 150 node "$CLI" bench --backend cuda --preset $pre --modes base --repetitions 3 --prompt-tokens $p --new-tokens $nt "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-5,8-9 | tr '\n' ';')"
}
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
