#!/bin/bash
# session 42 run 3: the tree with the decode attention's register kernel at every context (model.cu kAttnLong = 0):
# test_cuda, test_forward (and with LSW_CUDA_ATTN_LONG=24, the tile kernel), the attention harness, end to end; then
# base with the new default at 512 / 2,048 / 3,968 prompt tokens (llama2-7b) and 2,048 (llama3-8b), and llama2-7b's
# adapter modes (q,v r16, pre-gated, 8 experts top-2) after a 3,968-token prompt.
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 215 bash scripts/gpu/session.sh $X/s unpack cudatests forward attn-tests e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
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
b 7b-p512 llama2-7b 512 200 LSW_X=1
b 7b-p2048 llama2-7b 2048 100 LSW_X=1
b 7b-p3968 llama2-7b 3968 100 LSW_X=1
b 8b-p2048 llama3-8b 2048 100 LSW_X=1
pack
env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 200 node "$CLI" bench --backend cuda --preset llama2-7b --modes base,fused,merge --repetitions 3 --prompt-tokens 3968 --new-tokens 100 --out "$X/7b-p3968-modes.json" > "$X/7b-p3968-modes.txt" 2>&1; echo "7b-p3968-modes rc=$? $(( $(date +%s) - T0 ))s"
grep -E "^lora-switch" $X/7b-p3968-modes.txt | tr -s ' ' | cut -d' ' -f2-9
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
