#!/bin/bash
# session 21 run 7: the register decode-attention kernel compiled for 8 blocks per SM (<= 64 registers) against HEAD:
# attention tests, test_forward, harness timing and whole 7B base, interleaved
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz) && tar -xJf .gpu/pack/bin.tar.xz
mkdir -p old && tar -xJf .gpu/pack/old.tar.xz -C old
export LD_LIBRARY_PATH=$R/build/native
mkdir -p .gpu/bin $OUT/x && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
X=$OUT/x; cat build/prebuilt.txt > $X/prebuilt.txt; cat old/build/prebuilt.txt > $X/prebuilt-old.txt
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
LSW_HARNESS_ONLY=test_attention ./build/dev/bench_kernels $X/attn-tests.txt > /dev/null 2>&1; echo "attn tests rc=$? $(tail -n 1 $X/attn-tests.txt)"
./build/dev/test_forward > $X/forward.txt 2>&1; echo "forward rc=$? $(tail -n 1 $X/forward.txt)"
for r in 1 2; do
  LD_LIBRARY_PATH=$R/old/build/native LSW_HARNESS_ONLY=bench_attention ./old/build/dev/bench_kernels $X/attn-old-$r.txt > /dev/null 2>&1
  LSW_HARNESS_ONLY=bench_attention ./build/dev/bench_kernels $X/attn-new-$r.txt > /dev/null 2>&1
  grep -h "ctx=712, 4 positions\|f16 KV ctx=712, 8 positions" $X/attn-old-$r.txt $X/attn-new-$r.txt | sort -u | head -4
done
CLI=$R/.gpu/bundle/lora-switch.mjs
for r in 1 2; do
  for v in old new; do
    lib=$R/build/native/liblsw.so; [ $v = old ] && lib=$R/old/build/native/liblsw.so
    LSW_NATIVE_LIB=$lib timeout 100 node $CLI bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 64 --targets all --router pregated --modes base,fused --repetitions 3 --out $X/r64-$v-$r.json > $X/r64-$v-$r.txt 2>&1
    echo "$v-$r rc=$?"; grep -E "^lora-switch" $X/r64-$v-$r.txt
  done
done
(cd "$OUT" && tar -czf x.tgz x && rm -rf x)
