#!/bin/bash
# session 23 run 1: the fused-LoRA cost of each role in the whole 7B decode (all-linear r64 top-2 pregated, one role at a time)
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
tar -xJf .gpu/pack/bin.tar.xz
export LD_LIBRARY_PATH=$R/build/native
mkdir -p "$OUT/x" .gpu/bin
xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
X=$OUT/x
cp build/prebuilt.txt $X/; cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { # name targets
  local n=$1 t=$2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so timeout 120 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 --router pregated --rank 64 --targets "$t" --modes base,fused --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$t] rc=$? $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6 | tr '\n' ';')"
}
b all1 all
b o o
b qkv q,k,v
b gu gate,up
b down down
b all2 all
b noo q,k,v,gate,up,down
echo "done $(( $(date +%s) - T0 ))s"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
