#!/bin/bash
# session 33 run 1: the streaming SGMM's L2 requests ahead of its copies (W0 tiles ahead; LoRA-B rows evict_last).
# SGMM harness tests (+ memcheck) and benches with the interleaved prefetch rows, two more harness processes, then the
# 7B q,v r16 top-2 merge with LSW_CUDA_SGMM_PF / LSW_CUDA_SGMM_BPF against the default, interleaved x2
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
(cd .gpu && tar -xJf pack/bf.tar.xz)
GPU=$R/.gpu SESSION_BUDGET_S=200 timeout 215 bash scripts/gpu/session.sh $X/s unpack sgmm-bench > $X/session.txt 2>&1; echo "session rc=$? $(( $(date +%s) - T0 ))s"
cat $X/s/summary.txt 2>/dev/null
cp build/prebuilt.txt $X/
grep -hE "passed|ERROR SUMMARY" $X/s/work/*.txt $X/s/work/*.log 2>/dev/null | sort | uniq -c | head -20
grep -hE "FAIL" $X/s/work/*.txt 2>/dev/null | head -5
grep -hE "tc stream q,v|L2 ahead|copy probe" $X/s/work/cuda-kernels-sgmm.txt | cut -c1-150
pack
for r in 2 3; do
  LSW_HARNESS_ONLY=bench_sgmm timeout 100 build/dev/bench_kernels $X/sgmm-$r.txt > $X/sgmm-$r.log 2>&1
  echo "sgmm $r rc=$? $(( $(date +%s) - T0 ))s"
  grep -hE "tc stream q,v|L2 ahead|FAIL" $X/sgmm-$r.txt | cut -c1-150
done
pack
[ -x $R/.gpu/bin/node ] || { mkdir -p $R/.gpu/bin && xz -dc $R/.gpu/node.xz > $R/.gpu/bin/node && chmod +x $R/.gpu/bin/node; }
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 cfg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $cfg timeout 80 node "$CLI" bench --backend cuda --preset llama2-7b --experts 8 --top-k 2 --rank 16 --targets q,v --router pregated --modes base,merge --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n [$cfg] rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-6 | tr '\n' ';')"
}
for r in a b; do
  b qv-default-$r "LSW_X=0"
  b qv-pf4-$r "LSW_CUDA_SGMM_PF=4"
  b qv-bpf-$r "LSW_CUDA_SGMM_BPF=1"
  b qv-pf4bpf-$r "LSW_CUDA_SGMM_PF=4 LSW_CUDA_SGMM_BPF=1"
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
