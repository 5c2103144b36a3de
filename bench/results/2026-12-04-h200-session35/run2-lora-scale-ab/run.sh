#!/bin/bash
# session 35 run 2: speed A-B of the lora_scale change (run 1's A-B loop found no node on PATH): the old library
# (c68de97) against the new one (cd75ad9), interleaved, three rounds, on the same machine; bench's synthetic adapters
# carry no lora_scale (s = 1), so the new code does the same work plus one fp32 multiply per gate read
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz)
tar -xJf .gpu/pack/bin.tar.xz && cp build/prebuilt.txt $X/
mkdir -p .gpu/bin; xz -dc .gpu/node.xz > .gpu/bin/node; chmod +x .gpu/bin/node; export PATH=$R/.gpu/bin:$PATH
xz -dc .gpu/pack/liblsw-old.so.xz > /tmp/liblsw-old.so
CLI=$R/.gpu/bundle/lora-switch.mjs
B="--backend cuda --preset llama2-7b --experts 8 --top-k 2 --repetitions 3"
for round in 1 2 3; do
  for lib in old new; do
    L=$R/build/native/liblsw.so; [ $lib = old ] && L=/tmp/liblsw-old.so
    LSW_NATIVE_LIB=$L timeout 90 node $CLI bench $B --rank 64 --targets all --router pregated --modes base,fused --out $X/r64-$lib-$round.json 2>&1 | grep -E "^lora-switch|rror" | sed "s/^/r64 $lib $round: /"
    LSW_NATIVE_LIB=$L timeout 90 node $CLI bench $B --rank 16 --targets q,v --router pregated --modes base,merge,fused --out $X/qv16-$lib-$round.json 2>&1 | grep -E "^lora-switch|rror" | sed "s/^/qv16 $lib $round: /"
  done
  pack
done 2>&1 | tee $X/ab.txt
echo "total $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
