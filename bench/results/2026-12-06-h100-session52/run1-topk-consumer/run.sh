#!/bin/bash
# session 52, run 1: the SGMM's top-k consumer (both 16-row halves per expert; modes 0 off / 1 loop / 2 unrolled):
#   the harness's SGMM tests (every plan shape in each mode, bit-identical to the one-shot kernel), then bench_sgmm
#   (the modes A-B interleaved, r16 top-2 and r64 top-2)
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack-topk/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
LSW_HARNESS_ONLY=sgmm_tests timeout 170 build/dev/bench_kernels $X/sgmm-tests.txt > /dev/null 2>&1
echo "sgmm tests rc=$? $(( $(date +%s) - T0 ))s"; grep -h "validation\|FAIL" $X/sgmm-tests.txt | head -5
pack
LSW_HARNESS_ONLY=bench_sgmm timeout 240 build/dev/bench_kernels $X/sgmm-bench.txt > /dev/null 2>&1
echo "bench rc=$? $(( $(date +%s) - T0 ))s"
grep -hE "FAIL|stream q,v x32 layers r(16|64) top-|top-k consumer|lockstep rounds|contiguous" $X/sgmm-bench.txt | grep -v "^  ok" | cut -c1-160
pack
if command -v cuobjdump > /dev/null; then
  cuobjdump -sass -fun '_ZN4lswc21sgmm_tc_stream_kernelI6__halfLi1EEEvPKNS_8SgmmDescEiiiPKiPKfS6_iiiii' build/dev/bench_kernels > $X/tk1.sass 2>&1
  cuobjdump -sass -fun '_ZN4lswc21sgmm_tc_stream_kernelI6__halfLi0EEEvPKNS_8SgmmDescEiiiPKiPKfS6_iiiii' build/dev/bench_kernels > $X/tk0.sass 2>&1
  xz -T4 $X/tk1.sass $X/tk0.sass
fi
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
