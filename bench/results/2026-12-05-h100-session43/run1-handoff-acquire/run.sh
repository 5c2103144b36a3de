#!/bin/bash
# session 43 run 1: the counter hand-off (LSW_CUDA_HANDOFF=1; off by default in this tree). The boundary probe first; then
# test_cuda, test_forward, end to end with the hand-off on; then 7B q,v r16 (pre-gated, 8 experts top-2) base / merge /
# fused with the hand-off on and off, interleaved.
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack/bin.tar.xz && cp build/prebuilt.txt $X/
timeout 90 ./build/dev/probe_handoff 5 20 > $X/probe.txt 2>&1; echo "probe rc=$? $(( $(date +%s) - T0 ))s"
tail -n 8 $X/probe.txt; cuobjdump -sass build/dev/probe_handoff 2>/dev/null | grep -E "Function|CCTL|STRONG|MEMBAR|RED|ERRBAR|FENCE" | head -40 > $X/probe-sass.txt
pack
LSW_CUDA_HANDOFF=1 GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 215 bash scripts/gpu/session.sh $X/s unpack cudatests forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
grep -E "^=== .*rc=" $X/session.txt
grep -hE "^  FAIL|FAILED|MISMATCH|mismatch" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | head -5
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 h=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_HANDOFF=$h timeout 120 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s"; grep -E "^lora-switch" $X/$n.txt | tr -s ' ' | cut -d' ' -f2-7
}
b ab1-on 1 --modes base,merge,fused
b ab1-off 0 --modes base,merge,fused
pack
b ab2-off 0 --modes base,merge,fused
b ab2-on 1 --modes base,merge,fused
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
