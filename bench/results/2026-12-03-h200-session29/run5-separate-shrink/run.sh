#!/bin/bash
# session 29 run 5: tree a43aa0b (prebuilt.txt).  The separate-shrink path of the fused decode
# (LSW_CUDA_FUSED_SHRINK=separate: one lora_shrink launch per LoRA GEMV instead of shrink blocks inside it; last
# measured in session 14, before PDL between GEMVs, the norm / SwiGLU folds and the qkv deferral) against the default,
# interleaved: all-linear r64 base,fused x2, q,v r16 base,fused x1; then end to end CPU == CUDA with it
set -u
R=$(pwd)
(cd .gpu && tar -xJf pack/bf.tar.xz)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
GPU=$R/.gpu SESSION_BUDGET_S=60 timeout 80 bash scripts/gpu/session.sh $X/s unpack > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cp build/prebuilt.txt $X/
export LD_LIBRARY_PATH=$R/build/native PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 fs=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so LSW_CUDA_FUSED_SHRINK=$fs timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 --experts 8 --top-k 2 --modes base,fused --router pregated "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-3,6,14 | tr '\n' ';')"
}
for r in a b; do b r64def$r inkernel --rank 64 --targets all; b r64sep$r separate --rank 64 --targets all; done
b qvdef inkernel --rank 16 --targets q,v; b qvsep separate --rank 16 --targets q,v
pack
LSW_CUDA_FUSED_SHRINK=separate GPU=$R/.gpu SESSION_BUDGET_S=100 timeout 120 bash scripts/gpu/session.sh $X/t e2e > $X/tests.txt 2>&1; echo "tests rc=$? $(( $(date +%s) - T0 ))s"
cat $X/t/summary.txt; grep -hE "passed" $X/t/work/*.log 2>/dev/null | sort | uniq -c
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
