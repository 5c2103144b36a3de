#!/usr/bin/env bash
# Session 64 run 4 (2026-12-07 15:53 UTC), one NVIDIA H100 80GB HBM3 (the call asked for nvidia-h200): tree 29d6fd6
# plus two switches, both on by default in this run (pack: scripts/gpu/pack-prebuilt.sh, "29d6fd6 + uncommitted cuda/
# changes"):
#   LSW_CUDA_DEFER_RS_EARLY   defer_expand's fold_rs before its poll for the other shrink blocks' t (0: after the t loads)
#   LSW_CUDA_ROUTE_PREFETCH_B the routing shrink blocks request their deferred-expand LoRA-B rows into L2 once routed
# The next commit keeps the first unconditionally (no switch) and drops the second (no gain), so the final engine is
# this run's "LSW_CUDA_ROUTE_PREFETCH_B=0" rows. The stage below was a session.sh stage for this run only:
#   st_expand_ab() {
#     local c i
#     for c in "" "LSW_CUDA_DEFER_RS_EARLY=0" "LSW_CUDA_ROUTE_PREFETCH_B=0"; do
#       env $c LSW_HARNESS_ONLY=bench_7b_route ./build/dev/bench_kernels "$OUT/route-chain-$(echo "${c:-default}" | tr " =/" "_-_").txt" > /dev/null || return 1
#       grep -E "routed in the shrink blocks:|pre-gated:" "$OUT/route-chain-$(echo "${c:-default}" | tr " =/" "_-_").txt" | sed "s|^|${c:-default}: |"
#     done
#     for i in 1 2; do
#       ab_bench "qv-r16-lw-x$i" "--rank 16 --targets q,v --router layerwise --modes base,fused" "" "LSW_CUDA_DEFER_RS_EARLY=0" "LSW_CUDA_ROUTE_PREFETCH_B=0" || return 1
#     done; }
# Carried: .gpu/node.xz .gpu/bundle .gpu/pack .gpu/fx.tar.xz
nvidia-smi --query-gpu=name --format=csv,noheader
(while true; do nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader >> /tmp/clocks.csv; sleep 2; done) & CP=$!
ST="lora-tests expand-ab e2e"
SESSION_BUDGET_S=420 bash scripts/gpu/remote.sh /tmp/r4 $ST > /tmp/s.log 2>&1
kill $CP
find /tmp/r4/work -name '*.bin' -delete; tar -cJf $OUT/work.tar.xz -C /tmp/r4 work
