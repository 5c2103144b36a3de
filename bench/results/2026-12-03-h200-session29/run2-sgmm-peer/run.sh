#!/bin/bash
# session 29 run 2: the final tree (prebuilt.txt).  session.sh unpack sgmm-bench (SGMM harness: validation, timing,
# memcheck), then `lora-switch bench --peer torch` (pre-gated q,v r16, every mode, beside the PyTorch peer) and the
# same with the layer-wise router if time is left
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 215 bash scripts/gpu/session.sh $X/s unpack sgmm-bench > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt 2>/dev/null | sort | uniq -c
grep -E "sgmm tc stream.*q,v x32|copy probe" $X/s/work/cuda-kernels-sgmm.txt 2>/dev/null | grep -v " g[12] s" | head -8
pack
python3 -c "import torch, transformers, sys; print('torch', torch.__version__, 'transformers', transformers.__version__, 'python', sys.version.split()[0])" > $X/python.txt 2>&1; cat $X/python.txt
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
p() { local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 280 node "$CLI" bench --backend cuda --preset llama2-7b "$@" --peer torch --out "$X/$n.json" > "$X/$n.txt" 2> "$X/$n.err"
  echo "$n rc=$? $(( $(date +%s) - T0 ))s"; cat "$X/$n.txt"; tail -3 "$X/$n.err"
}
p peer-pregated --repetitions 3
pack
[ $(( $(date +%s) - T0 )) -lt 300 ] && p peer-layerwise --router layerwise --modes base,merge,fused --repetitions 3
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
