#!/bin/bash
# session 38 run 2: why llama3-8b `base` sits at 86-87 % of its floor where llama2-7b sits at 93 %.  A diagnostic on
# the engine of run 1 (no rebuild): a 16-token prompt (decode attention near free) against the 512-token default on
# both presets, the tuner's choices (LSW_CUDA_VERBOSE=1), and the 8B with the tile attention kernel
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
[ -f build/native/liblsw.so ] || { (cd .gpu && tar -xJf pack/bf.tar.xz); GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 75 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; }
cp build/prebuilt.txt $X/
export PATH=$R/.gpu/bin:$PATH
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1; shift
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_BENCH_EVENTS=1 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -c1-100 | tr '\n' ';')"
}
B="timeout 100 node $CLI bench --backend cuda --modes base --repetitions 2"
b 8b-p512-verbose LSW_CUDA_VERBOSE=1 $B --preset llama3-8b
b 8b-p16 $B --preset llama3-8b --prompt-tokens 16
b 7b-p16 $B --preset llama2-7b --prompt-tokens 16
b 7b-p512 $B --preset llama2-7b
pack
b 8b-attn1 LSW_CUDA_ATTN_VARIANT=1 $B --preset llama3-8b
b 8b-p16-b $B --preset llama3-8b --prompt-tokens 16
b 8b-p512-b $B --preset llama3-8b
grep -E "lswc: (gemv|autotune|tune)" $X/8b-p512-verbose.txt | head -40
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
