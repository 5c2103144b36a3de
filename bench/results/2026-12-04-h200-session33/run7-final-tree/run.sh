#!/bin/bash
# session 33 run 7: the final tree (c68de97: launch_decode_kern's host code simplified after run 5): test_cuda, the
# attention harness tests with memcheck, test_forward, end to end CPU == CUDA, and base / q,v r16 once
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 215 bash scripts/gpu/session.sh $X/s unpack cudatests attn-tests attn-memcheck forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -20
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 100 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,fused,merge --repetitions 3 --out "$X/qv-r16.json" > "$X/qv-r16.txt" 2>&1
echo "qv-r16 rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/qv-r16.txt | tr -s ' ' | cut -d' ' -f2-6 | tr '\n' ';')"
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
