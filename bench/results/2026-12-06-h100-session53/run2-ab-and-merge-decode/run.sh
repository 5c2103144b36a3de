#!/bin/bash
# session 53, run 2: (a) harness A-B in alternating processes: 1567151 (old), f436885 (v1: the pack's bench_kernels) and
#   v3 (v1 plus the raw W0 words requested before expert 0's product): r64 top-2, r64 top-1, r16 top-2;
#   (b) v3's SGMM tests; (c) the 7B q,v r64 top-2, all-linear r64 top-2 and q,v r16 top-2 merges with f436885's
#   library (new) and 634f253's (old, pack-52d), alternating, two rounds
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
mkdir -p .gpu/old/build/native && xz -dc .gpu/old53/liblsw.so.xz > .gpu/old/build/native/liblsw.so
mkdir -p .gpu/h && xz -dc .gpu/s53/bench_kernels_old.xz > .gpu/h/old && xz -dc .gpu/s53/bench_kernels_v3.xz > .gpu/h/v3 && chmod +x .gpu/h/*
tar -xJf .gpu/pack-53/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/; cp build/dev/bench_kernels .gpu/h/v1
mkdir -p .gpu/g/bundle && cp .gpu/bundle-52/koffi-linux-x64.node .gpu/bundle-52/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-52/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
for round in 1 2 3; do
  for b in old v1 v3; do
    for cs in 64,2 64,1 16,2; do
      LSW_BENCH_SGMM_CASE=$cs LSW_HARNESS_ONLY=bench_sgmm timeout 60 .gpu/h/$b $X/bench-$b-$round-${cs/,/-top}.txt > /dev/null 2>&1
      echo "$b round $round r$cs rc=$? $(grep -E 'sgmm tc stream' $X/bench-$b-$round-${cs/,/-top}.txt | grep -v 'contiguous' | head -4 | grep -oE '[0-9.]+ % of copy' | sed 's/ % of copy//' | tr '\n' ' ')"
    done
  done
  pack
done
echo "harness benches $(( $(date +%s) - T0 ))s"
LSW_HARNESS_ONLY=sgmm_tests timeout 120 .gpu/h/v3 $X/sgmm-tests-v3.txt > /dev/null 2>&1
echo "sgmm tests v3 rc=$? $(( $(date +%s) - T0 ))s"; grep -h "validation\|FAIL" $X/sgmm-tests-v3.txt | head -5
pack
CLI=$R/.gpu/g/bundle/lora-switch.mjs
for round in 1 2; do
for lib in old new; do
  L=$R/build/native/liblsw.so; [ $lib = old ] && L=$R/.gpu/old/build/native/liblsw.so
  for c in "q,v 64" "all 64" "q,v 16"; do
    set -- $c; tg=$1; rk=$2
    f=$X/merge-r$rk-top2-${tg/,/}-$lib-$round
    env LSW_NATIVE_LIB=$L timeout 70 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank $rk --targets $tg --router pregated --modes base,merge --merge-prompt batched --repetitions 2 --out "$f.json" > "$f.txt" 2>&1
    echo "r$rk top-2 $tg $lib round $round rc=$? $(( $(date +%s) - T0 ))s"; grep -hE "^lora-switch" $f.txt | cut -c1-100
    pack
  done
done
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
