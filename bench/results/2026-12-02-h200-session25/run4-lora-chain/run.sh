#!/bin/bash
# session 25 run 4: the LoRA GEMVs' post-loop chain: where the in-kernel-shrink LoRA GEMVs look for t
# (gemv_set_lora_looks / LSW_CUDA_LORA_LOOKS), thread 0's post-loop poll skipped when its own look saw t, and the store
# operands staged right after the wait (gemv_set_lora_early_preload): session.sh unpack cudatests forward e2e; harness
# test_lora (six look masks and both preloads, bit for bit), test_norm_fold, test_swiglu_fold; whole 7B all-linear
# r64 top-2 base,fused, interleaved x2: the library before (0e2c609), the new one by default (looks 0x10, early
# preload), with LSW_CUDA_LORA_EARLY_PRELOAD=0, with looks 0x11 (the old post-loop poll), 0x40 (3/4), 0x50 (1/2 + 3/4)
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=120 timeout 140 bash scripts/gpu/session.sh $X/s unpack cudatests forward e2e > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
mkdir -p /tmp/old && xz -dc .gpu/pack/liblsw-0e2c609.so.xz > /tmp/old/liblsw.so
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
LSW_HARNESS_ONLY=test_lora,test_norm_fold,test_swiglu_fold timeout 120 ./build/dev/bench_kernels $X/harness-tests.txt > /dev/null 2>&1; echo "harness rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^validation' $X/harness-tests.txt | tail -1)"
grep -E "FAIL" $X/harness-tests.txt | head -5
grep -c "looks 0x" $X/harness-tests.txt
pack
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 lib=$2; shift 2
  env LSW_NATIVE_LIB=$lib "$@" timeout 60 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 --modes base,fused --router pregated --rank 64 --targets all --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
NEW=$R/build/native/liblsw.so
for r in a b; do
  b old$r /tmp/old/liblsw.so; b new$r $NEW; b late$r $NEW LSW_CUDA_LORA_EARLY_PRELOAD=0; b m11$r $NEW LSW_CUDA_LORA_LOOKS=0x11
  b m40$r $NEW LSW_CUDA_LORA_LOOKS=0x40; b m50$r $NEW LSW_CUDA_LORA_LOOKS=0x50
  pack; [ $(( $(date +%s) - T0 )) -gt 400 ] && break
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
