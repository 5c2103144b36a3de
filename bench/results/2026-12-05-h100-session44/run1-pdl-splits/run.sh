#!/bin/bash
# session 44 run 1: f633ba3 plus a timing knob, LSW_CUDA_ATTN_SPLITS0=N (at most N splits per head in the decode
# attention's register kernel). The kernel-boundary probe in its committed form (it includes common.cuh since f633ba3;
# not yet run that way); then 7B base (512-token prompt, 200 new tokens) in three interleaved rounds of: the default;
# the attention capped at 8 and at 12 splits (fewer blocks, so that the o GEMV's blocks find SM slots and load their
# first weights while the attention runs); every launch plain (LSW_CUDA_PDL=0 and the other PDL scopes off, the GEMV
# tuner timing plain launches).
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack/bin.tar.xz && cp build/prebuilt.txt $X/
timeout 60 ./build/dev/probe_handoff 5 20 > $X/probe.txt 2>&1; echo "probe rc=$? $(( $(date +%s) - T0 ))s"
grep -iE "valid|mode|^PDL|^plain" $X/probe.txt | head -12
pack
mkdir -p .gpu/bin; [ -x .gpu/bin/node ] || { xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node; }
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
PLAIN="LSW_CUDA_PDL=0 LSW_CUDA_PDL_ATTN=0 LSW_CUDA_PDL_FOLD_IN=0 LSW_CUDA_PDL_ROUTER=0 LSW_CUDA_GEMV_TUNE_PDL=0"
b() { local n=$1 lg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $lg timeout 170 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-9 | tr '\n' ';')"
}
for r in 1 2 3; do
  case $r in
    1) order="def s8 s12 plain" ;;
    2) order="plain s12 s8 def" ;;
    3) order="s8 def plain s12" ;;
  esac
  for v in $order; do
    case $v in
      def) b r$r-def LSW_X=1 --modes base ;;
      s8) b r$r-s8 LSW_CUDA_ATTN_SPLITS0=8 --modes base ;;
      s12) b r$r-s12 LSW_CUDA_ATTN_SPLITS0=12 --modes base ;;
      plain) b r$r-plain "$PLAIN" --modes base ;;
    esac
  done
  pack
done
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
