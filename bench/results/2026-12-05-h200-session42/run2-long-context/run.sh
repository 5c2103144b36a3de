#!/bin/bash
# session 42 run 2: the rest of session 40's long-context questions (base, 100 new tokens): llama2-7b at 2,048 without
# the tile kernel's PDL launch; llama3-8b at 2,048 (variant 0 throughout, the default for GQA) against the tile kernel
# from 1,024 positions, with and without its PDL launch; llama3-8b at 8,000 and qwen2.5-7b at 16,000 against the tile
# kernel from 1,024 positions.  Binaries: f5deddd (CUDA code as 053861e).
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; echo "unpack rc=$?"
cp build/prebuilt.txt $X/
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 pre=$2 p=$3 nt=$4 lg=$5; shift 5
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $lg timeout 150 node "$CLI" bench --backend cuda --preset $pre --modes base --repetitions 3 --prompt-tokens $p --new-tokens $nt "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-5,8-9 | tr '\n' ';')"
}
b 7b-p2048-nopdlattn llama2-7b 2048 100 LSW_CUDA_PDL_ATTN=0
# run 1 found the tile kernel 9-10 % slower for llama2-7b at 2,048 / 3,968: repeated here in the other order, plus the
# switch point (1,024) itself
for rr in 1 2; do
b 7b-p1024-v0-r$rr llama2-7b 1024 100 LSW_CUDA_ATTN_LONG=0
b 7b-p1024-default-r$rr llama2-7b 1024 100 LSW_X=1
b 7b-p2048-v0-r$rr llama2-7b 2048 100 LSW_CUDA_ATTN_LONG=0
b 7b-p2048-default-r$rr llama2-7b 2048 100 LSW_X=1
b 7b-p3968-v0-r$rr llama2-7b 3968 100 LSW_CUDA_ATTN_LONG=0
b 7b-p3968-default-r$rr llama2-7b 3968 100 LSW_X=1
done
pack
b 8b-p2048-default llama3-8b 2048 100 LSW_X=1
b 8b-p2048-long1024 llama3-8b 2048 100 LSW_CUDA_ATTN_LONG=1024
b 8b-p2048-long1024-nopdlattn llama3-8b 2048 100 "LSW_CUDA_ATTN_LONG=1024 LSW_CUDA_PDL_ATTN=0"
pack
b 8b-p8000-default llama3-8b 8000 100 LSW_X=1
b 8b-p8000-long1024 llama3-8b 8000 100 LSW_CUDA_ATTN_LONG=1024
pack
b qwen-p16000-default qwen2.5-7b 16000 100 LSW_X=1
b qwen-p16000-long1024 qwen2.5-7b 16000 100 LSW_CUDA_ATTN_LONG=1024
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
