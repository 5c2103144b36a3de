#!/bin/bash
# session 37 run 3: `lora-switch bench --peer torch` on the code of this tree (f16 KV cache, as transformers keeps it):
# pre-gated q,v r16 every mode beside the PyTorch peer, then the layer-wise router if time is left
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
[ -f build/native/liblsw.so ] || GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 75 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1
cp build/prebuilt.txt $X/
python3 -c "import torch, transformers, sys; print('torch', torch.__version__, 'transformers', transformers.__version__, 'python', sys.version.split()[0])" > $X/python.txt 2>&1; cat $X/python.txt
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
CLI=$R/.gpu/bundle/lora-switch.mjs
p() { local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 280 node "$CLI" bench --backend cuda --preset llama2-7b "$@" --peer torch --out "$X/$n.json" > "$X/$n.txt" 2> "$X/$n.err"
  echo "$n rc=$? $(( $(date +%s) - T0 ))s"; cat "$X/$n.txt"; tail -3 "$X/$n.err"
}
p peer-pregated --repetitions 3
pack
[ $(( $(date +%s) - T0 )) -lt 290 ] && p peer-layerwise --router layerwise --modes base,merge,fused --repetitions 3
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
