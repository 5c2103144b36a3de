#!/bin/bash
# session 40 run 1 (run 2 has the long-context benches): the tree after session 39 plus multi-query attention (more
# than 8 query heads per KV head) in the fused decode attention's block per query head.  Every GPU test (test_cuda +
# memcheck, test_forward in its settings and with the group blocks, the attention harness incl. the new 32/1, 96/8,
# 16/1 cases + memcheck and its timing rows, the harness's sampler checks for the GreedyState mend, end to end incl.
# the MQA fixtures, transformers / peft), the read-only bandwidth probe (LDG and TMA bulk rings against the copy) and a
# GEMV through a TMA ring, per launch and as one persistent stream over every matrix, against the production GEMV
# (checks, memcheck, timing), then base at the default 512-token prompt for llama3-8b and llama2-7b.
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
cp build/prebuilt.txt $X/
LSW_CUDA_ATTN_HEAD_SPLIT=0 timeout 60 ./build/dev/test_forward > $X/forward-headsplit0.txt 2>&1; echo "forward head split 0 rc=$? $(tail -n 1 $X/forward-headsplit0.txt)"
LSW_HARNESS_ONLY=test_sampling timeout 60 ./build/dev/bench_kernels $X/sampling.txt > /dev/null 2>&1; echo "harness test_sampling rc=$? $(grep -h 'validation:' $X/sampling.txt | tail -n 1)"
LSW_HARNESS_ONLY=test_read,bench_read,test_gemv_tma,test_gemv_stream,bench_gemv_tma timeout 120 ./build/dev/bench_kernels $X/read.txt > /dev/null 2>&1; echo "read probe rc=$? $(grep -h 'validation:' $X/read.txt | tail -n 1)"
grep -E "^  \| (read|gemv f16|7B linears)|copy bandwidth" $X/read.txt | head -80
LSW_HARNESS_ONLY=test_read,test_gemv_tma,test_gemv_stream timeout 90 compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > $X/read-memcheck.txt 2>&1; echo "read memcheck rc=$? $(grep -h 'ERROR SUMMARY' $X/read-memcheck.txt)"
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -30
grep -hE "^  FAIL|FAILED|MISMATCH" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
grep -hE "heads 32/1|heads 96/8|heads 16/1" $X/s/work/attn*.txt 2>/dev/null | grep -vE "^  ok|PASS" | head -12
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 pre=$2 p=$3 nt=$4 lg=$5; shift 5
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $lg timeout 150 node "$CLI" bench --backend cuda --preset $pre --modes base --repetitions 3 --prompt-tokens $p --new-tokens $nt "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-5,8-9 | tr '\n' ';')"
}
b 8b-p512 llama3-8b 512 200 LSW_X=1
b 7b-p512 llama2-7b 512 200 LSW_X=1
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
