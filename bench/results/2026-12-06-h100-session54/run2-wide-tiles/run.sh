#!/bin/bash
# session 54, run 2: variant 1's wide tiles (8 warps, 32-row tiles) for the decode attention, the tree of pack-54:
# (a) the harness's attention tests (every decode case, variant 1 wide among them); (b) its attention timings (MHA
# and the GQA shapes 32/8 and 28/4 to 16,384 positions, every kernel); (c) whole decodes, base, GQA models at long
# contexts: default (register kernel) against LSW_CUDA_ATTN_LONG=1024 LSW_CUDA_ATTN_WIDE=1 (the wide tiles from
# 1,024 positions), and with LSW_CUDA_ATTN_SPLITS=64, alternating processes, while time is left
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
cat $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack-54/bf.tar.xz -C "$R"
cp build/prebuilt.txt $X/
LSW_HARNESS_ONLY=test_attention timeout 150 build/dev/bench_kernels $X/attn-tests.txt > /dev/null 2>&1
echo "attention tests rc=$? $(( $(date +%s) - T0 ))s"; grep -h "validation\|FAIL" $X/attn-tests.txt | head -8
pack
LSW_HARNESS_ONLY=bench_attention timeout 150 build/dev/bench_kernels $X/attn-bench.txt > /dev/null 2>&1
echo "attention bench rc=$? $(( $(date +%s) - T0 ))s"
grep -E "heads (32/8|28/4)" $X/attn-bench.txt | grep -v again | grep -E "ctx=(4096|16384)" | cut -c1-130
pack
mkdir -p .gpu/bin && xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node
export PATH=$R/.gpu/bin:$PATH
mkdir -p .gpu/g/bundle && cp .gpu/bundle-52/koffi-linux-x64.node .gpu/bundle-52/package.json .gpu/g/bundle/
xz -dc .gpu/bundle-52/lora-switch.mjs.xz > .gpu/g/bundle/lora-switch.mjs
CLI=$R/.gpu/g/bundle/lora-switch.mjs
b() { local n=$1 pre=$2 p=$3; shift 3
  [ $(( $(date +%s) - T0 )) -gt 500 ] && { echo "$n skipped (time)"; return; }
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so "$@" timeout 90 node "$CLI" bench --backend cuda --preset $pre --modes base --repetitions 2 --prompt-tokens $p --new-tokens 100 --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-9)"
  pack
}
W="LSW_CUDA_ATTN_LONG=1024 LSW_CUDA_ATTN_WIDE=1"
b qwen-p16000-default qwen2.5-7b 16000 LSW_X=1
b qwen-p16000-wide qwen2.5-7b 16000 $W
b l3-p8000-default llama3-8b 8000 LSW_X=1
b l3-p8000-wide llama3-8b 8000 $W
b qwen-p16000-wide64 qwen2.5-7b 16000 $W LSW_CUDA_ATTN_SPLITS=64
b l3-p8000-wide64 llama3-8b 8000 $W LSW_CUDA_ATTN_SPLITS=64
b l3-p2048-default llama3-8b 2048 LSW_X=1
b l3-p2048-wide llama3-8b 2048 $W
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
