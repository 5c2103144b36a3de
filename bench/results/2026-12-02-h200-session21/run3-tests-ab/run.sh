#!/bin/bash
# session 21 run 3: the tree to commit (attention: q + new row in one round trip, merge partials requested early,
# acq_rel split counting; RoPE without FMA contraction; shrink blocks publish t with red.release) built on the dev
# machine (no cuBLAS): every harness test, memcheck, test_forward, test_cuda + sanitizer, e2e; whole 7B A-B vs HEAD
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
tar -xJf .gpu/pack/bin.tar.xz
mkdir -p old && tar -xJf .gpu/pack/old.tar.xz -C old
export LD_LIBRARY_PATH=$R/build/native
X=$OUT/x; mkdir -p $X .gpu/bin
xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T=test_gemv,test_gemv_pdl,test_norm_fold,test_swiglu_fold,test_lora,test_lora_shrink,test_prologue_shrink,test_lora_pdl_chain,test_gemm,test_sgmm,test_sgmm_stream_mixed,test_small,test_attention,test_sampling
LSW_HARNESS_ONLY=$T ./build/dev/bench_kernels $X/harness-tests.txt > /dev/null 2>&1; echo "harness tests rc=$? $(tail -n 1 $X/harness-tests.txt)"
LSW_CUDA_ATTN_SYNC=fence LSW_CUDA_SHRINK_PUB=fence LSW_HARNESS_ONLY=test_attention,test_lora_shrink,test_lora_pdl_chain ./build/dev/bench_kernels $X/harness-tests-fence.txt > /dev/null 2>&1; echo "harness tests (fence) rc=$? $(tail -n 1 $X/harness-tests-fence.txt)"
LSW_HARNESS_ONLY=test_attention,test_lora_shrink,test_lora_pdl_chain compute-sanitizer --tool memcheck --error-exitcode 3 ./build/dev/bench_kernels > $X/harness-memcheck.txt 2>&1; echo "harness memcheck rc=$? $(tail -n 1 $X/harness-memcheck.txt)"
./build/dev/test_forward > $X/forward.txt 2>&1; echo "forward rc=$? $(tail -n 1 $X/forward.txt)"
LSW_CUDA_PDL=1 ./build/dev/test_forward > $X/forward-pdl.txt 2>&1; echo "forward pdl rc=$? $(tail -n 1 $X/forward-pdl.txt)"
LSW_CUDA_ATTN_LONG=24 LSW_CUDA_VERBOSE=1 ./build/dev/test_forward > $X/forward-attn-long.txt 2>&1; echo "forward long rc=$? $(tail -n 1 $X/forward-attn-long.txt)"
LSW_REQUIRE_GPU=1 ./build/native-cmake/test_cuda > $X/test_cuda.txt 2>&1; echo "test_cuda rc=$? $(tail -n 1 $X/test_cuda.txt)"
LSW_REQUIRE_GPU=1 LSW_SANITIZER_SMALL=1 compute-sanitizer --tool memcheck --error-exitcode 1 ./build/native-cmake/test_cuda > $X/sanitizer.txt 2>&1; echo "sanitizer rc=$? $(grep -E 'ERROR SUMMARY|passed' $X/sanitizer.txt | tail -n 2 | tr '\n' ' ')"
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { # name lib env...
  local n=$1 lib=$2; shift 2
  env LSW_NATIVE_LIB=$lib "$@" timeout 150 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 64 --targets all --router pregated --modes base,fused --repetitions 3 --out "$X/r64-$n.json" > "$X/r64-$n.txt" 2>&1
  echo "$n rc=$?"; grep -E '^lora-switch +(base|fused)' $X/r64-$n.txt
}
for r in 1 2; do
  b old-$r $R/old/liblsw.so
  b new-$r $R/build/native/liblsw.so
  b new-shrinkfence-$r $R/build/native/liblsw.so LSW_CUDA_SHRINK_PUB=fence
done
LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CLI=$CLI timeout 150 node scripts/gpu/e2e-cuda.mjs .gpu/fx $X/e2e-cuda.json > $X/e2e.log 2>&1; echo "e2e rc=$? $(tail -n 1 $X/e2e.log)"
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
