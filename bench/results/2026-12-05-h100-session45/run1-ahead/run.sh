#!/bin/bash
# session 45 run 1: 6ee6231, which adds a timing diagnostic, LSW_CUDA_BENCH_AHEAD=1: bench_decode runs its first step
# as usual, then launches the remaining greedy steps' graphs back to back (no host synchronisation between them, events
# between the launches) and synchronises once. Three interleaved rounds of 7B base (512-token prompt, 200 new tokens)
# ordinary / ahead, one with LSW_CUDA_BENCH_EVENTS=1 (host - device per step); then one pair each of the default
# adapter (pre-gated, 8 experts top-2 r16 on q,v: base, merge, fused) and all-linear r64 fused.
set -u
R=$(pwd)
mkdir -p "$OUT/x"; X=$OUT/x
cp "$0" $X/run.sh
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv > $X/gpu.txt; date -u >> $X/gpu.txt
T0=$(date +%s)
pack() { (cd "$OUT" && tar -czf x.tgz x); }
tar -xJf .gpu/pack/bin.tar.xz && cp build/prebuilt.txt $X/
mkdir -p .gpu/bin; [ -x .gpu/bin/node ] || { xz -dc .gpu/node.xz > .gpu/bin/node && chmod +x .gpu/bin/node; }
export PATH=$R/.gpu/bin:$PATH
CLI=$R/.gpu/bundle/lora-switch.mjs
b() { local n=$1 lg=$2; shift 2
  env LSW_NATIVE_LIB=$R/build/native/liblsw.so $lg timeout 170 node "$CLI" bench --backend cuda --preset llama2-7b --repetitions 3 "$@" --out "$X/$n.json" > "$X/$n.txt" 2>&1
  echo "$n rc=$? $(( $(date +%s) - T0 ))s $(grep -E '^lora-switch' $X/$n.txt | tr -s ' ' | cut -d' ' -f2-9 | tr '\n' ';')"
}
for r in 1 2 3; do
  case $r in
    1) order="def ahead" ;;
    2) order="ahead def" ;;
    3) order="def ahead" ;;
  esac
  for v in $order; do
    case $v in
      def) if [ $r = 2 ]; then b r$r-def LSW_CUDA_BENCH_EVENTS=1 --modes base; else b r$r-def LSW_X=1 --modes base; fi ;;
      ahead) b r$r-ahead LSW_CUDA_BENCH_AHEAD=1 --modes base ;;
    esac
  done
  pack
done
b qv-def LSW_X=1 --modes base,merge,fused
b qv-ahead LSW_CUDA_BENCH_AHEAD=1 --modes base,merge,fused
pack
b r64-ahead LSW_CUDA_BENCH_AHEAD=1 --experts 8 --top-k 2 --rank 64 --targets all --router pregated --modes base,fused
b r64-def LSW_X=1 --experts 8 --top-k 2 --rank 64 --targets all --router pregated --modes base,fused
echo "done $(( $(date +%s) - T0 ))s"
pack; rm -rf "$OUT/x"
