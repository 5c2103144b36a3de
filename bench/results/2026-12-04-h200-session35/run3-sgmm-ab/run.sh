#!/bin/bash
# session 35 run 3: the SGMM kernels' speed after the lora_scale change (the gate times the descriptor's scale where it
# is read): the harness's bench_sgmm of the old build (c68de97) and the new one (cd75ad9), interleaved, two rounds
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack/bin.tar.xz && cp build/prebuilt.txt $X/
xz -dc .gpu/pack/bench_kernels-old.xz > /tmp/bench_kernels-old; chmod +x /tmp/bench_kernels-old
for r in 1 2; do
  for v in old new; do
    B=build/dev/bench_kernels; [ $v = old ] && B=/tmp/bench_kernels-old
    LSW_HARNESS_ONLY=bench_sgmm timeout 120 $B $X/sgmm-$v-$r.txt > $X/sgmm-$v-$r.log 2>&1
    echo "$v $r rc=$? $(( $(date +%s) - T0 ))s"
    grep -hE "sgmm tc stream q,v x32 layers r(16|64) top-(1|2) \(|FAIL" $X/sgmm-$v-$r.txt | cut -c1-130
  done
  pack
done 2>&1 | tee $X/ab.txt
pack; rm -rf "$OUT/x"
