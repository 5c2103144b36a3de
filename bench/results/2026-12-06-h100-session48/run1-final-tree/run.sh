#!/bin/bash
# session 48 run 1: the final tree of session 47 (5944010: ABI 6's bench_decode_tokens, the CPU SGMM batching that
# test_cuda compares against) through every GPU test that compares the GPU with the CPU backend or transformers, then
# the 7B benches the README reports, with the bench's default (random) decode tokens.
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz -C "$R")
xz -dc .gpu/bundle/lora-switch.mjs.xz > .gpu/bundle/lora-switch.mjs
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
cp build/prebuilt.txt $X/
GPU=$R/.gpu SESSION_BUDGET_S=270 timeout 285 bash scripts/gpu/session.sh $X/s cudatests forward sanitizer fold-tests e2e compare safetensors > $X/session.txt 2>&1
echo "session rc=$? $(( $(date +%s) - T0 ))s"
sed -n '/^stage /,$p' $X/session.txt | head -12; grep -h "passed, " $X/s/work/*.log | tail -6
rm -f $X/s/session.tgz; pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() {  # name, time limit, flags
  local n=$1 t=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout $t node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s"; grep -E "^lora-switch|^merge:" $X/$n.txt | cut -c1-120; pack
}
b qv-r16 110 --rank 16 --targets q,v --router pregated --modes base,merge,fused --repetitions 2
b all-r64 90 --rank 64 --targets all --router pregated --modes base,fused --repetitions 2
b lw-qv-r16 110 --rank 16 --targets q,v --router layerwise --modes base,merge,fused --repetitions 2
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
