#!/bin/bash
# session 33 run 6: the transformers / peft comparison with the engine judged against both references (run 5 had one
# case 1.2e-5 from transformers against 1e-5), then the old and new decode attention in `base`, 8 more interleaved pairs
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=100 timeout 115 bash scripts/gpu/session.sh $X/s unpack compare > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -E "FAIL|tol|passed" $X/s/work/compare.log | head -12
pack
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 cfg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $cfg timeout 60 node "$CLI" bench --backend cuda --preset llama2-7b --modes base --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$cfg] rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4 | tr '\n' ';')"
}
for r in 1 2 3 4 5 6 7 8; do
  if [ $((r % 2)) = 1 ]; then
    b base-old-$r "LSW_CUDA_ATTN_MINB=1 LSW_CUDA_ATTN_WAVE=0"; b base-new-$r "LSW_X=0"
  else
    b base-new-$r "LSW_X=0"; b base-old-$r "LSW_CUDA_ATTN_MINB=1 LSW_CUDA_ATTN_WAVE=0"
  fi
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
