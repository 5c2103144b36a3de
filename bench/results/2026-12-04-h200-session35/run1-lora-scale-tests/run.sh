#!/bin/bash
# session 35 run 1: the LoRA scaling kept out of the 16-bit weights (lora_scale, applied in fp32 as fl(g_k * s)).
# Correctness: test_cuda (CPU == CUDA, every adapted module with a file-backed lora_scale in [0.5, 1.5)) + memcheck,
# test_forward, the harness's LoRA / SGMM / fold / attention tests (per-segment and per-descriptor scales), e2e CPU == CUDA
# on the regenerated fixtures (converter writes lora_scale), the transformers / peft comparison.
# Speed: the old library (c68de97) against the new one, interleaved, on the same machine.
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz)
xz -dc .gpu/pack/liblsw-old.so.xz > /tmp/liblsw-old.so
GPU=$R/.gpu SESSION_BUDGET_S=330 timeout 350 bash scripts/gpu/session.sh $X/s unpack cudatests forward sanitizer lora-tests sgmm fold-tests attn-tests e2e compare > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
pack
CLI=$R/.gpu/bundle/lora-switch.mjs
B="--backend cuda --preset llama2-7b --experts 8 --top-k 2 --repetitions 3"
for round in 1 2; do
  for lib in old new; do
    L=$R/build/native/liblsw.so; [ $lib = old ] && L=/tmp/liblsw-old.so
    LSW_NATIVE_LIB=$L timeout 60 node $CLI bench $B --rank 64 --targets all --router pregated --modes base,fused --out $X/r64-$lib-$round.json 2>&1 | grep -E "^lora-switch" | sed "s/^/r64 $lib $round: /"
    LSW_NATIVE_LIB=$L timeout 60 node $CLI bench $B --rank 16 --targets q,v --router pregated --modes base,merge,fused --out $X/qv16-$lib-$round.json 2>&1 | grep -E "^lora-switch" | sed "s/^/qv16 $lib $round: /"
  done
  pack
done 2>&1 | tee $X/ab.txt
echo "total $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
