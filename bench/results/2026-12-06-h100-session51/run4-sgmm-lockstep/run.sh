#!/bin/bash
# session 51, run 4: the streaming SGMM's lockstep schedule (s3_segments, S3_F_LOCK; off by default): the SGMM harness
#   tests (the mixed-descriptor set with lockstep on and off, small grids) and their memcheck, test_cuda, then
#   bench_sgmm twice with the new harness (contiguous / lockstep interleaved at r16 top-2 and r64 top-2) and once with
#   session 50's harness (the SGMM before the schedule's restructuring: pack-samp2) for the contiguous path's
#   baseline, then the 7B q,v r64 top-2 merge decode with LSW_CUDA_SGMM_LOCK=0 / 1, interleaved twice
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
mkdir -p /tmp/old && tar -xJf .gpu/pack-samp2/bf.tar.xz -C /tmp/old
tar -xJf .gpu/pack-lock/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
LSW_HARNESS_ONLY=sgmm_tests timeout 60 build/dev/bench_kernels $X/sgmm-tests.txt > /dev/null 2>&1
echo "sgmm tests rc=$? $(( $(date +%s) - T0 ))s"; grep -h "validation\|FAIL" $X/sgmm-tests.txt | head -5
LSW_HARNESS_ONLY=sgmm_tests timeout 90 compute-sanitizer --tool memcheck --error-exitcode 3 build/dev/bench_kernels > $X/sgmm-memcheck.txt 2>&1
echo "sgmm memcheck rc=$? $(( $(date +%s) - T0 ))s"; grep -h "ERROR SUMMARY\|validation" $X/sgmm-memcheck.txt | head -3
LSW_REQUIRE_GPU=1 timeout 60 build/native-cmake/test_cuda > $X/test_cuda.txt 2>&1
echo "test_cuda rc=$? $(( $(date +%s) - T0 ))s"; tail -1 $X/test_cuda.txt
pack
for r in new1 old new2; do
  B=build/dev/bench_kernels; [ $r = old ] && B=/tmp/old/build/dev/bench_kernels
  LSW_HARNESS_ONLY=bench_sgmm timeout 100 $B $X/sgmm-bench-$r.txt > /dev/null 2>&1
  echo "bench $r rc=$? $(( $(date +%s) - T0 ))s"
  grep -hE "FAIL|stream q,v x32 layers r(16|64) top-|contiguous split|lockstep" $X/sgmm-bench-$r.txt | grep -v "^  ok" | cut -c1-150
  pack
done 2>&1 | tee $X/bench.txt
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
mkdir -p .gpu/g/bundle && cp .gpu/bundle-51/koffi-linux-x64.node .gpu/bundle-51/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-51/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
CLI=$R/.gpu/g/bundle/lora-switch.mjs
for round in 1 2; do
  for lk in 0 1; do
    env LSW_CUDA_VERBOSE=1 LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_SGMM_LOCK=$lk timeout 120 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 64 --targets q,v --router pregated --modes base,merge --merge-prompt batched --repetitions 3 --out "$X/merge-r64-top2-lock$lk-$round.json" > "$X/merge-r64-top2-lock$lk-$round.txt" 2>&1
    echo "lock $lk round $round rc=$? $(( $(date +%s) - T0 ))s"; grep -hE "^lora-switch|sgmm tensor-core" $X/merge-r64-top2-lock$lk-$round.txt | cut -c1-130
    pack
  done
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
