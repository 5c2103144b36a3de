#!/bin/bash
# session 32 run 10: run 9 put the 2 MiB shift's gain in the weights.  Every weight of >= 2 MiB started on a 2 MiB page
# of address bit 21 = 0 or = 1 (LSW_CUDA_WEIGHT_PARITY), against the default and the 2 MiB pad; the weights'
# page parities printed (LSW_CUDA_PRINT_WEIGHTS) for the default and the pad; interleaved x2
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz)
GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 75 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1
cp build/prebuilt.txt $X/
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 cfg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $cfg timeout 60 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$cfg] rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-4 | tr '\n' ';')"
}
par() { grep "lswc: upload" $X/$1.txt | awk '{print $11}' | tr -d ',' | sort | uniq -c | tr '\n' ' '; echo; }
b base-default-p "LSW_CUDA_PRINT_WEIGHTS=1" --modes base; echo "default parities: $(par base-default-p)"
b base-padall-p "LSW_CUDA_PRINT_WEIGHTS=1 LSW_CUDA_PAD_ALLOC=2097152" --modes base; echo "pad parities: $(par base-padall-p)"
for r in a b; do
  b base-default-$r "" --modes base
  b base-par0-$r "LSW_CUDA_WEIGHT_PARITY=0" --modes base
  b base-par1-$r "LSW_CUDA_WEIGHT_PARITY=1" --modes base
  b base-padall-$r "LSW_CUDA_PAD_ALLOC=2097152" --modes base
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
