#!/bin/bash
# session 38 run 6: the lm_head GEMV's variant in the decode.  Run 5 saw the 8B tuner pick v11, v4, v5 or v6 for
# 128256x4096 from process to process (all within ~2 % alone) and base move with it (4.17-4.19 ms on v11 / v4,
# 4.23-4.26 on v5 / v6).  Here each forced (LSW_CUDA_GEMV_SHAPES), twice, interleaved, on both presets, plus the
# 7B tuner's own choices in three processes.  Engine of run 4.
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
[ -f build/native/liblsw.so ] && strings build/native/liblsw.so | grep -q greedy_advance || { (cd .gpu && tar -xJf pack/bf.tar.xz); GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 75 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; }
cp build/prebuilt.txt $X/
export PATH=$R/.gpu/bin:$PATH
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 pre=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_VERBOSE=1 "$@" timeout 100 node "$CLI" bench --backend cuda --preset $pre --modes base --repetitions 3 --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-5,8-9 | tr '\n' ';') $(grep -E '^lswc: gemv f16' $X/$n.txt | sed 's/lswc: gemv f16 \([0-9x]*\) -> \(v[0-9]*\).*/\1:\2/' | tr '\n' ' ')"
}
for r in 1 2; do
  for v in 4 5 6 11; do b 8b-lm-v$v-$r llama3-8b LSW_CUDA_GEMV_SHAPES=128256x4096=$v; done
  pack
done
for r in 1 2; do
  for v in 4 5 6 11; do b 7b-lm-v$v-$r llama2-7b LSW_CUDA_GEMV_SHAPES=32000x4096=$v; done
  b 7b-auto-$r llama2-7b
  pack
done
b 7b-auto-3 llama2-7b
grep -h "32000x4096 ->" $X/7b-auto-*.txt
grep -h "128256x4096 ->" $X/8b-lm-v4-1.txt
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
