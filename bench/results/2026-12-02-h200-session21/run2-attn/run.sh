#!/bin/bash
# session 21 run 2: decode attention (q + new row in one round trip, merge partials requested before the (max, sum)
# reduction; LSW_CUDA_ATTN_SYNC=release) against HEAD's kernel: harness + whole 7B base A-B; tests of the new tree
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
tar -xJf .gpu/pack/bin.tar.xz
mkdir -p old && tar -xJf .gpu/pack/old.tar.xz -C old
export LD_LIBRARY_PATH=$R/build/native
mkdir -p "$OUT/x" .gpu/bin
xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
X=$OUT/x
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
# correctness first (new tree): attention harness tests in both sync modes, test_forward in both, test_cuda
LSW_HARNESS_ONLY=test_attention ./build/dev/bench_kernels $X/attn-tests-fence.txt > /dev/null 2>&1; echo "attn tests fence rc=$?"
LSW_CUDA_ATTN_SYNC=release LSW_HARNESS_ONLY=test_attention ./build/dev/bench_kernels $X/attn-tests-release.txt > /dev/null 2>&1; echo "attn tests release rc=$?"
tail -1 $X/attn-tests-fence.txt $X/attn-tests-release.txt
./build/dev/test_forward > $X/forward-fence.txt 2>&1; echo "forward fence rc=$?"
LSW_CUDA_ATTN_SYNC=release ./build/dev/test_forward > $X/forward-release.txt 2>&1; echo "forward release rc=$?"
LSW_CUDA_ATTN_SYNC=release LSW_CUDA_ATTN_LONG=24 ./build/dev/test_forward > $X/forward-release-long.txt 2>&1; echo "forward release long rc=$?"
LSW_REQUIRE_GPU=1 ./build/native-cmake/test_cuda > $X/test_cuda.txt 2>&1; echo "test_cuda rc=$?"; tail -1 $X/test_cuda.txt
# harness timing, interleaved: old / new fence / new release, twice
for r in 1 2; do
  LD_LIBRARY_PATH=$R/old LSW_HARNESS_ONLY=bench_attention ./old/bench_kernels $X/attn-old-$r.txt > /dev/null 2>&1
  LSW_HARNESS_ONLY=bench_attention ./build/dev/bench_kernels $X/attn-fence-$r.txt > /dev/null 2>&1
  LSW_CUDA_ATTN_SYNC=release LSW_HARNESS_ONLY=bench_attention ./build/dev/bench_kernels $X/attn-release-$r.txt > /dev/null 2>&1
done
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { # name lib env...
  local n=$1 lib=$2; shift 2
  env LSW_NATIVE_LIB=$lib "$@" timeout 120 node "$CLI" bench --backend cuda --preset llama2-7b --modes base --repetitions 3 --out "$X/base-$n.json" > "$X/base-$n.txt" 2>&1
  echo "$n rc=$? $(grep -E '^lora-switch +base' $X/base-$n.txt)"
}
for r in 1 2; do
  b old-$r $R/old/liblsw.so
  b fence-$r $R/build/native/liblsw.so
  b release-$r $R/build/native/liblsw.so LSW_CUDA_ATTN_SYNC=release
done
LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CLI=$CLI timeout 150 node scripts/gpu/e2e-cuda.mjs .gpu/fx $X/e2e-cuda.json > $X/e2e.log 2>&1; echo "e2e rc=$?"; tail -1 $X/e2e.log
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
