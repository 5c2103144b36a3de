#!/bin/bash
# session 42 run 1: f5deddd (CPU fused prompts grouped by expert; CUDA code unchanged since 053861e) through every GPU
# test (the end-to-end and transformers stages compare the GPU with the CPU backend, whose prompt path changed), then
# session 40's long-context questions for llama2-7b (base, 100 new tokens): 2,048 / 3,968 prompt tokens with the tile
# kernel from 1,024 positions (default) and without it (LSW_CUDA_ATTN_LONG=0), and the harness's 7B graphs.
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=330 timeout 345 bash scripts/gpu/session.sh $X/s unpack cudatests forward attn-tests attn-memcheck sanitizer e2e compare > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
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
LSW_HARNESS_ONLY=bench_7b timeout 150 ./build/dev/bench_kernels $X/bench7b.txt > /dev/null 2>&1; echo "bench_7b rc=$? $(( $(date +%s) - T0 ))s"
grep -E "^  \| 7B" $X/bench7b.txt | head -20
pack
b 7b-p2048-default llama2-7b 2048 100 LSW_X=1
b 7b-p2048-v0 llama2-7b 2048 100 LSW_CUDA_ATTN_LONG=0
pack
b 7b-p3968-default llama2-7b 3968 100 LSW_X=1
b 7b-p3968-v0 llama2-7b 3968 100 LSW_CUDA_ATTN_LONG=0
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
