#!/bin/bash
# session 43 run 2: the hand-off polling with relaxed reads and one acquire fence (run 1's ld.acquire loop invalidated
# the SM's L1 at every read). The probe with mode 4; test_forward with the hand-off on; 7B q,v r16 (pre-gated, 8
# experts top-2) base / merge / fused with the hand-off on and off, interleaved; then end to end with it on.
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack/bin2.tar.xz && cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native
timeout 60 ./build/dev/probe_handoff 5 20 > $X/probe.txt 2>&1; echo "probe rc=$? $(( $(date +%s) - T0 ))s"
grep -E "validate|^PDL|^plain" $X/probe.txt
cuobjdump -sass build/dev/probe_handoff 2>/dev/null | grep -E "Function|CCTL|STRONG.GPU R|MEMBAR|REDG|FENCE" | head -30 > $X/probe-sass.txt
LSW_CUDA_HANDOFF=1 timeout 60 ./build/dev/test_forward > $X/forward-handoff.txt 2>&1; echo "forward rc=$?"; tail -n 2 $X/forward-handoff.txt
pack
export PATH=$R/.gpu/bin:$PATH
mkdir -p .gpu/bin; [ -x .gpu/bin/node ] || xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 h=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_HANDOFF=$h timeout 100 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s"; grep -E "^lora-switch" $X/$n.txt | tr -s ' ' | cut -d' ' -f2-7
}
b ab1-on 1 --modes base,merge,fused
b ab1-off 0 --modes base,merge,fused
pack
b ab2-off 0 --modes base,merge,fused
b ab2-on 1 --modes base,merge,fused
pack
LSW_CUDA_HANDOFF=1 GPU=$R/.gpu SESSION_BUDGET_S=90 timeout 100 bash scripts/gpu/session.sh $X/s e2e > $X/session.txt 2>&1; echo "e2e rc=$? $(( $(date +%s) - T0 ))s"
grep -E "^=== .*rc=" $X/session.txt
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
