// Launchers of the CUDA backend.  Each launches on `stream`, takes device pointers, returns the launch
// error (cudaGetLastError) and never synchronises.  The lswc_op_* entries (ops.cu), the model forward and
// the dev harness (cuda/dev/bench_kernels.cu) all call these, so the harness validates production code.
#pragma once
#include "common.cuh"
#include <math_constants.h>

namespace lswc {

// ---- fused-LoRA epilogue of the decode GEMV (fused mode) ----------------------------------------
// Rows [row0, row0+rows) of the output (a module inside a fused matrix) get
//   + Σ_k Σ_j B[experts[k]][row - row0][j] * t[k*rank + j]
// where t (from lora_shrink) already holds c_k * (A_{e_k} x)_j, c_k = fl(g_k * scale) (the module's LoRA scaling).
// B: [E][rows][rank] in the weight dtype.
struct LoraSeg {
  int row0, rows, rank;
  const void *B;
  const float *t;        // [top_k][rank]
  const int *experts;    // [top_k], device
  // In-kernel shrink (set A on every segment and LoraEpilogue::sync): the GEMV launch itself computes
  // t[k*rank + j] = (gates[k] * scale) * dot(A[experts[k]][j][0:cols], X) in extra leading blocks (no separate shrink
  // launch); A: [E][rank][cols] in the weight dtype.  nullptr: t is an input, computed before the launch (lora_shrink).
  const void *A = nullptr;
  const float *gates = nullptr;  // [top_k], device
  float scale = 1.f;             // the module's LoRA scaling (lsw_adapter_mod::scale)
};
// the segment of seg[0 .. nseg) (nseg <= 3) that holds output row `row`, -1 for none (the expand's row lookup: the GEMV
// epilogue and the deferred expand)
__device__ __forceinline__ int lora_seg_of(const LoraSeg *seg, int nseg, int row) {
  int s = -1;
#pragma unroll
  for (int i = 0; i < 3; i++)
    if (i < nseg && row >= seg[i].row0 && row < seg[i].row0 + seg[i].rows) s = i;
  return s;
}
// fold (n == 1): the RMSNorm folded as for the GEMVs (NormFold's in side): x = h ⊙ w, and the logits are scaled by
// rs = 1 / sqrt(Σ in_part[0..in_n) / dim + eps), the producer GEMV's partial sums of h², so no RMSNorm launch is needed
// lg_part (with in_part; LSW_CUDA_ROUTE_PARTS): the producer GEMV's partial logits of the router lg_R (NormFold::out_R),
// [in_n][kRoutePartE] floats, 16-byte aligned; route_block<T, true> sums them instead of computing R · x (a deferring
// launch takes them only for its own router, lg_R == LoraRoute::R, with n_experts <= kRoutePartE: gemv_defer_ok;
// route_n ignores them)
struct RouteFold {
  const float *in_part = nullptr;
  int in_n = 0;
  float eps = 0.f;
  const float *lg_part = nullptr;
  const void *lg_R = nullptr;
};
// A layer-wise router computed by the shrink blocks of a deferring launch (LoraEpilogue::route, session 62) instead of
// a route_n launch before it: every shrink block routes the token itself (route_block: the same bits as route_kernel)
// and takes its experts and gates from that; block 0 also writes them to experts / gates (the routing history, and
// defer_expand's expert ids).  The GEMV blocks of a deferring launch read no routes, so they no longer wait for a
// router launch.  R: [n_experts][dim = the GEMV's cols] in the weights' dtype; n_experts <= kRouteShrinkMaxE, top_k
// <= kDeferMaxK (gemv_defer_ok checks).
constexpr int kRouteShrinkMaxE = 64;
constexpr int kDeferMaxK = 8;  // a deferring launch's top_k at most (its shrink blocks keep the experts in shared memory)
struct LoraRoute {
  const void *R = nullptr;  // nullptr: the routes come from before the launch
  int n_experts = 0;
  int vec = 0;              // R 16-byte aligned and cols a multiple of the 16-byte vector (route_n's test)
  int *experts = nullptr;   // [top_k], written by shrink block 0
  float *gates = nullptr;   // [top_k]
  RouteFold fold;
  int wide = 1;             // route_block's layout: set by gemv() from LSW_CUDA_ROUTE_WIDE (default 1), as route_n's
};
struct LoraEpilogue {
  int nseg = 0;  // 0: no LoRA
  int top_k = 0;
  LoraSeg seg[3];
  // in-kernel shrink: 2 device ints, zero before the first launch; every launch leaves them zero again.  One pair per
  // graph node (launches that may overlap must not share a pair).
  int *sync = nullptr;
  // in-kernel shrink, > 0: E of every segment's experts; the shrink blocks then read their A rows before
  // griddepcontrol.wait (the index clamped to [0, n_experts), checked again after the wait)
  int n_experts = 0;
  int nsb = 0, srpb = 0;  // set by gemv(): shrink blocks, A rows per shrink block
  // set by gemv() (LSW_CUDA_LORA_TRUST_LOOK, default 1): a GEMV block whose thread 0 saw every t published at its
  // half-way look does not read the counter again after its main loop (one L2 round trip less in each block's tail)
  int look_trusted = 0;
  // Deferred expand (in-kernel shrink only, n == 1, 16-bit weights; gemv_defer_ok): the launch's GEMV blocks run the
  // plain kernel (no LoRA epilogue) and Y gets the base rows only; the shrink blocks, once every t is published,
  // write defer[row] = rs * Σ_k Σ_j B[e_k][row - row0][j] * t[k*rank + j] for EVERY row of the matrix (0 outside the
  // segments; rs = the NormFold in side's scale, else 1), so the consumer adds defer[row] to Y[row] itself (the fused
  // decode attention does, for q, k and v).  erpb: rows per shrink block in that phase (set by gemv()).
  float *defer = nullptr;
  int erpb = 0;
  LoraRoute route;  // deferring launches only (see LoraRoute)
};
// can gemv() take this launch with a deferred expand (lora->defer)?  gemv() returns cudaErrorInvalidValue otherwise
bool gemv_defer_ok(int dtype, const void *W, int rows, int cols, const float *X, int ldx, int n,
                   const LoraEpilogue *lora);

// R's rows into L2 (a weight: before griddepcontrol.wait), a warp per expert row, as the block that routes will read them
template <typename T>
__device__ __forceinline__ void route_prefetch_l2(const T *R, int n_experts, int dim) {
  const size_t rb = (size_t)dim * sizeof(T);
  for (int e = threadIdx.x >> 5; e < n_experts; e += blockDim.x >> 5)
    for (size_t o = (size_t)(threadIdx.x & 31) * 128; o < rb; o += 32 * 128)
      prefetch_l2(reinterpret_cast<const char *>(R) + (size_t)e * rb + o);
}
// One token's routing by one block of 256 threads (route_kernel, and the shrink blocks of a deferring GEMV launch:
// LoraRoute), so both compute the same bits: the logits, scaled by rs (fold.in_part: the folded norm's; else 1), then
// the CPU's steps: fp64 softmax, stable selection (ties: the lower index), renormalised gates.  Thread 0 writes
// experts / gates [top_k] (any address space); the caller synchronises before others read them.
//  - wide (LoraRoute::wide / route_n; LSW_CUDA_ROUTE_WIDE, default 1 since session 64; 16-byte rows): thread i takes
//    the 16-byte chunks i, i + 256, ... of x and of every expert's row (kRouteWideEG experts per pass, one address
//    stepped by a row), so each round of loads brings the chunks of all experts at once, and the fold's partials
//    are requested before the first round (their Σ h² is summed with the logits, in the same fixed order); then
//    one fixed-order block reduction (per warp, then warp by warp).  A 4,096-column router takes 2 rounds.
//    With n_experts <= kRouteWideEG thread 0 then ends the routing in registers (route_tail_regs); else the
//    shared-memory tail below, one pass of experts at a time.
//  - else (session 23's layout): a warp per expert (4 chunks per lane in flight, x read as each chunk arrives), rs
//    first by warp 0 as the GEMVs compute it (fold_rs), then the shared-memory tail: logits into lg, max, exp into ex
//    (a thread per expert), sum and selection by thread 0.
// Under the full weight stream of the q,k,v launch, every step of a routing shrink block is slow (session 64's trace,
// H100: ~9 us for the 2 load rounds, ~9.5 us for the shared-memory tail); the register tail cut the layer-wise q,v r16
// fused decode by 0.055 ms and merge (route_n) by 0.14 ms per token (bench/results/2026-12-07-h100-session64/).
// Shared memory: lg [n_experts] floats, ex [n_experts] doubles, s_rs, s_mx (the shared-memory tail).
// mark(k): a trace hook (the shrink blocks' timeline marks, dev trace builds): 11 after thread 0's dot loads are
// consumed, 12 once the logits are known (in thread 0), 13 the experts chosen (route_tail_regs only).
constexpr int kRouteWideEG = 8;
constexpr int kRoutePartE = kRouteWideEG;  // a router's experts at most for the producer's partial logits (NormFold)
struct RouteNoMark {
  __device__ __forceinline__ void operator()(int) const {}
};
// route_block's wide layout with n_experts <= kRouteWideEG: thread 0 ends the routing from the warps' sums (w_red:
// [nw][EG + 4], the EG dot sums and the fold's Σ h² of each warp) in registers.  Session 64's trace (run 2, H100)
// measured ~9.5 us from the logits to the experts for the shared-memory tail (max, exp, sum and a selection that
// reads back its picks, each step behind a barrier) in a routing shrink block under the q,k,v launch's weight stream.
// Here: one round of 16-byte shared loads, then registers only; it takes ~3.3 us there (run 3).  Why a few hundred
// dependent instructions take that long beside the streaming GEMV blocks is not known.
//  - logits: Σ over the warps in order (the same bits as the shared-memory tail of the wide layout), × rs;
//  - selection on the logits: exp is increasing, so the same order as the probabilities; ties: the lower index
//    (two logits closer than a double ulp of the largest, both ~1e-9 of it or less, give equal exps, where the
//    shared-memory tail took the lower index and this one takes the larger logit);
//  - gates: exp(l_j - l_max) / Σ_topk exp(l_i - l_max) in fp64 (the full softmax sum cancels in the renormalised
//    gates).
template <int EG, typename Mark>
__device__ __forceinline__ void route_tail_regs(const float (*w_red)[EG + 4], int nw, int n_experts, int top_k, int dim,
                                                const RouteFold &fold, int *experts, float *gates, Mark &mark) {
  static_assert(EG % 4 == 0, "16-byte rows");
  float l[EG], fs = 0.f;
#pragma unroll
  for (int u = 0; u < EG; u++) l[u] = 0.f;
#pragma unroll 8
  for (int v = 0; v < nw; v++) {
    const float4 *row = reinterpret_cast<const float4 *>(w_red[v]);
#pragma unroll
    for (int q = 0; q < EG / 4; q++) {
      const float4 a = row[q];
      l[4 * q] += a.x; l[4 * q + 1] += a.y; l[4 * q + 2] += a.z; l[4 * q + 3] += a.w;
    }
    fs += row[EG / 4].x;
  }
  const float rs = fold.in_part ? 1.f / sqrtf(fs / (float)dim + fold.eps) : 1.f;
#pragma unroll
  for (int u = 0; u < EG; u++) l[u] *= rs;
  mark(12);
  // one selection pass: the picks' experts written as chosen and their exps kept (a thread-local array) for the gates
  // after the sum; the first pick's exp(0) is 1 exactly, so it is not computed (one fp64 exp for top-2 where the
  // former two passes took four; the same bits)
  float top0 = 0.f;
  double ks = 0.0, exs[EG];
  unsigned used = 0;
#pragma unroll 1
  for (int j = 0; j < top_k; j++) {  // (a runtime loop: one inlined fp64 exp)
    int best = -1;
    float bl = 0.f;
#pragma unroll
    for (int u = 0; u < EG; u++)
      if (u < n_experts && !((used >> u) & 1u) && (best < 0 || l[u] > bl)) { best = u; bl = l[u]; }
    used |= 1u << best;
    if (j == 0) top0 = bl;
    const double ex = j == 0 ? 1.0 : exp((double)bl - (double)top0);
    exs[j] = ex;
    experts[j] = best;
    ks += ex;
  }
#pragma unroll 1
  for (int j = 0; j < top_k; j++) gates[j] = (float)(exs[j] / ks);
}
// route_block with the producer's partial logits (RouteFold::lg_part, n_experts <= kRoutePartE): thread i sums blocks
// i, i + 256, ... in order (two 16-byte loads each) and the fold's Σ h² partials, then the wide layout's reduction and
// register tail (route_block<T, true>).
__device__ __forceinline__ void route_block_parts(int n_experts, int dim, int top_k, const RouteFold &fold, int *experts,
                                                  float *gates) {
  constexpr int EG = kRoutePartE;
  static_assert(EG == 8, "a block's partial logits are read as two float4");
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5, nt = blockDim.x;
  __shared__ __align__(16) float p_red[32][EG + 4];
  float acc[EG], fp = 0.f;
#pragma unroll
  for (int u = 0; u < EG; u++) acc[u] = 0.f;
  for (int b = threadIdx.x; b < fold.in_n; b += nt) {
    const float4 *pb = reinterpret_cast<const float4 *>(fold.lg_part + (size_t)b * EG);
    const float4 a0 = __ldcg(pb), a1 = __ldcg(pb + 1);
    fp += __ldcg(fold.in_part + b);
    acc[0] += a0.x; acc[1] += a0.y; acc[2] += a0.z; acc[3] += a0.w;
    acc[4] += a1.x; acc[5] += a1.y; acc[6] += a1.z; acc[7] += a1.w;
  }
#pragma unroll
  for (int u = 0; u < EG; u++) acc[u] = warp_sum(acc[u]);
  fp = warp_sum(fp);
  if (lane == 0) {
#pragma unroll
    for (int u = 0; u < EG; u++) p_red[warp][u] = acc[u];
    p_red[warp][EG] = fp;
  }
  __syncthreads();
  RouteNoMark mark;
  if (threadIdx.x == 0) route_tail_regs<EG>(p_red, nw, n_experts, top_k, dim, fold, experts, gates, mark);
}
template <typename T, bool PARTS = false, typename Mark = RouteNoMark>
__device__ __forceinline__ void route_block(int n_experts, int dim, int top_k, const T *__restrict__ R,
                                            const float *__restrict__ x, int vec, const RouteFold &fold, float *lg,
                                            double *ex, float *s_rs, double *s_mx, int *experts, float *gates,
                                            int wide = 1, Mark mark = Mark{}) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5, nt = blockDim.x;
  constexpr int VEC = Tr<T>::VEC, UN = 4, EG = kRouteWideEG;
  // (the token's own row decides: a chunk of tokens routes each exactly as a launch of that one token would)
  const bool vrow = vec && (reinterpret_cast<uintptr_t>(x) & 15) == 0;
  if constexpr (PARTS) {  // (the routing deferring launch's ROUTE 2 instances; gemv_defer_ok checked fold.lg_part)
    route_block_parts(n_experts, dim, top_k, fold, experts, gates);
    return;
  }
  if (wide && vrow) {
    __shared__ __align__(16) float w_red[32][EG + 4];  // per warp: the group's EG dot sums, then the fold's Σ h²
    const int nv = dim / VEC;
    const uint4 *rv = reinterpret_cast<const uint4 *>(R);
    for (int g = 0; g < n_experts; g += EG) {
      float acc[EG];
#pragma unroll
      for (int u = 0; u < EG; u++) acc[u] = 0.f;
      // the fold's partials (the first two per thread) requested ahead of the chunks, summed after them
      float f0 = 0.f, f1 = 0.f;
      if (g == 0 && fold.in_part) {
        if ((int)threadIdx.x < fold.in_n) f0 = __ldcg(fold.in_part + threadIdx.x);
        if ((int)threadIdx.x + nt < fold.in_n) f1 = __ldcg(fold.in_part + threadIdx.x + nt);
      }
      for (int c = threadIdx.x; c < nv; c += nt) {
        uint4 w[EG];  // every expert's chunk c requested before any is used (one address stepped by a row)
        const uint4 *p = rv + (size_t)g * nv + c;
#pragma unroll
        for (int u = 0; u < EG; u++, p += nv)
          if (g + u < n_experts) w[u] = __ldg(p);
#pragma unroll
        for (int u = 0; u < EG; u++) {
          if (g + u >= n_experts) break;
          acc[u] = dot16<T>(w[u], x + (size_t)c * VEC, acc[u]);
        }
      }
      float fp = f0 + f1;
      if (g == 0 && fold.in_part)
        for (int i = threadIdx.x + 2 * nt; i < fold.in_n; i += nt) fp += __ldcg(fold.in_part + i);
      if (g == 0) mark(11);
#pragma unroll
      for (int u = 0; u < EG; u++) acc[u] = warp_sum(acc[u]);
      if (g == 0) fp = warp_sum(fp);
      if (lane == 0) {
#pragma unroll
        for (int u = 0; u < EG; u++) w_red[warp][u] = acc[u];
        w_red[warp][EG] = fp;
      }
      __syncthreads();
      if (n_experts <= EG) {  // one pass: thread 0 ends the routing in registers
        if (threadIdx.x == 0) route_tail_regs<EG>(w_red, nw, n_experts, top_k, dim, fold, experts, gates, mark);
        mark(13);
        return;
      }
      const int u = threadIdx.x;
      if (u < EG && g + u < n_experts) {
        float s = 0.f;
        for (int v = 0; v < nw; v++) s += w_red[v][u];
        lg[g + u] = s;
      } else if (u == EG && g == 0) {
        float s = 0.f;
        for (int v = 0; v < nw; v++) s += w_red[v][EG];
        *s_rs = fold.in_part ? 1.f / sqrtf(s / (float)dim + fold.eps) : 1.f;
      }
      __syncthreads();  // w_red free again; lg and s_rs visible
    }
    mark(12);
  } else {
    if (warp == 0) {
      const float rs = fold.in_part ? fold_rs(fold.in_part, fold.in_n, dim, fold.eps) : 1.f;
      if (lane == 0) *s_rs = rs;
    }
    for (int e = warp; e < n_experts; e += nw) {
      const T *r = R + (size_t)e * dim;
      float s = 0.f;
      if (vrow) {
        const int nv = dim / VEC;
        const uint4 *rv = reinterpret_cast<const uint4 *>(r);
        for (int c0 = lane; c0 < nv; c0 += 32 * UN) {
          uint4 w[UN];
#pragma unroll
          for (int u = 0; u < UN; u++)
            if (c0 + 32 * u < nv) w[u] = __ldg(rv + c0 + 32 * u);
#pragma unroll
          for (int u = 0; u < UN; u++) {
            const int c = c0 + 32 * u;
            if (c >= nv) break;
            s = dot16<T>(w[u], x + (size_t)c * VEC, s);
          }
        }
      } else {
        for (int c = lane; c < dim; c += 32) s = fmaf(Tr<T>::to_f(r[c]), x[c], s);
      }
      s = warp_sum(s);
      if (lane == 0) lg[e] = s;
    }
    mark(11);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double mx = -CUDART_INF;
    for (int e = 0; e < n_experts; e++) {
      lg[e] *= *s_rs;
      mx = fmax(mx, (double)lg[e]);
    }
    *s_mx = mx;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < n_experts; e += blockDim.x) ex[e] = exp((double)lg[e] - *s_mx);
  __syncthreads();
  if (threadIdx.x == 0) {  // tiny: same steps as the CPU (fp64 softmax, stable selection, renormalise)
    double sum = 0;
    for (int e = 0; e < n_experts; e++) sum += ex[e];
    double ksum = 0;
    for (int j = 0; j < top_k; j++) {
      int best = -1;
      double bp = 0;
      for (int e = 0; e < n_experts; e++) {
        bool used = false;
        for (int q = 0; q < j; q++) used |= experts[q] == e;
        if (used) continue;
        const double p = ex[e];
        if (best < 0 || p > bp) { best = e; bp = p; }
      }
      experts[j] = best;
      ksum += bp / sum;
    }
    for (int j = 0; j < top_k; j++) gates[j] = (float)(ex[experts[j]] / sum / ksum);
  }
}

// ---- RMSNorm folded into the decode GEMVs around it (n == 1) ---------------------------------------
// rmsnorm(h) ⊙ w = rs · (h ⊙ w) with rs = 1 / sqrt(Σ h² / dim + eps), and rs is one scalar, so the norm needs no
// launch of its own:
//  - out side, on the GEMV that produces h (o_proj / down: x += W a): after its store it also writes
//    out_xw[row] = h[row] · out_w[row] and, per block, Σ h[row]² over the block's rows -> out_part[block] (fixed
//    order: deterministic).  gemv() reports the number of partial sums in out_n.
//  - in side, on the GEMV that reads the norm's output (q,k,v / gate,up / lm_head): X = h ⊙ w, and every row sum,
//    LoRA epilogue included, is scaled by rs = 1 / sqrt(Σ in_part[0..in_n) / in_dim + eps) before the bias.  With an
//    in-kernel shrink its t is computed from the same X, so rs scales W x and B t alike; a LoRA whose t was computed
//    elsewhere (from the normalised vector) must not be combined with the in side.
// gemv_fold_ok says whether the vector kernel (the only one that folds) takes a launch; gemv() with a NormFold it
// cannot take returns cudaErrorInvalidValue.
struct NormFold {
  const float *in_part = nullptr;  // in side (nullptr: off); accumulate must be false
  int in_n = 0, in_dim = 0;
  float in_eps = 0.f;
  float *out_xw = nullptr;        // out side (nullptr: off)
  const float *out_w = nullptr;   // [rows]
  float *out_part = nullptr;      // [out_n]; allocate gemv_fold_parts(rows) floats (the in side reads 16-byte chunks)
  int out_n = 0;                  // set by gemv()
  // router partial logits (out side, one token; LSW_CUDA_ROUTE_PARTS): out_R, the next router's R [out_E][rows] in
  // the weights' dtype (16-byte aligned rows: rows * element size a multiple of 16), out_E <= kRoutePartE.  Each block
  // also writes out_lpart[block * kRoutePartE + e] = Σ over its stored rows of R[e][row] · out_xw[row] (each row
  // group's rows in order, then the warps in order), e < out_E; R's rows for the block are staged into shared memory
  // by cp.async before griddepcontrol.wait.  out_lp, set by gemv(): 1 if the launch wrote them (variants whose block
  // rows are not a whole number of 16-byte chunks of R do not), then RouteFold::lg_part may point at out_lpart.
  const void *out_R = nullptr;
  int out_E = 0;
  float *out_lpart = nullptr;     // [gemv_fold_parts(rows)][kRoutePartE]
  int out_lp = 0;
  int rp_off = 0;                 // set by gemv(): where R's stage starts in the dynamic shared memory (floats)
  // SwiGLU fold (the gate,up GEMV, rows = 2 * act_half: gate rows then up rows): each block takes act_half / blocks
  // gate rows and the matching up rows, stores Y as usual and act_out[i] = silu(Y[i]) * Y[act_half + i] (the swiglu
  // kernel's formula: the same bits); not with out_xw or accumulate
  float *act_out = nullptr;
  int act_half = 0;
  // this GEMV's X comes from the GEMV launched right before it (the in side implies it): launched without PDL
  // unless it carries in-kernel shrinks (GEMV -> GEMV with PDL measured slower); alone it is only that hint
  bool follows_gemv = false;
  // set by gemv() (gemv_set_fold_rs_early): the in side's rs computed right after griddepcontrol.wait, while the
  // first weights are in flight, instead of after the main loop (the same sum in the same order: the same bits)
  bool rs_early = false;
};
bool gemv_fold_ok(int dtype, const void *W, int cols, const float *X, int ldx, int n, const LoraEpilogue *lora);
int gemv_fold_parts(int rows);  // out_n of any variant, rounded up to a multiple of 4: the partials buffer's size

// ---- GEMV / GEMM ---------------------------------------------------------------------------------
// Y[t*ldy + r] = dot(W[r][0:cols], X[t*ldx + 0:cols]) (+ bias[r]) (+ Y[t*ldy + r] if accumulate)
//                (+ LoRA epilogue, n == 1 only),    r < rows, t < n.
// nf (n == 1, vector path only): the RMSNorm fold above.
// n <= 8: bandwidth-bound GEMV (warp per `rpw` rows, 16-byte loads, several in flight).
// n > 8 : tensor-core GEMM (see gemm.cu).
// variant: 0 = production choice; 1..: alternatives timed by the harness (rows per warp / unroll).
cudaError_t gemv(int dtype, const void *W, int rows, int cols, const float *X, int ldx, int n, float *Y, int ldy,
                 const float *bias, bool accumulate, const LoraEpilogue *lora, cudaStream_t s, int variant = 0,
                 NormFold *nf = nullptr);
// Plain warp-per-row scalar GEMV: the always-correct fallback (any alignment) and a harness baseline.
cudaError_t gemv_simple(int dtype, const void *W, int rows, int cols, const float *X, int ldx, int n, float *Y,
                        int ldy, const float *bias, bool accumulate, cudaStream_t s);
int gemv_variants();
// Programmatic dependent launch for the vector GEMV (Hopper): when on, gemv() launches with the
// programmatic-stream-serialization attribute; the kernel loads its first batch of weights into registers before
// griddepcontrol.wait.  Only the GEMV kernel waits, so only it gets the attribute.  Default off.
void gemv_set_pdl(bool on);
// the autotuner times its chains with PDL as the decode launches them (default; false: plain launches, the tuner
// before session 26; the model: LSW_CUDA_GEMV_TUNE_PDL=0)
void gemv_set_tune_pdl(bool on);
// the tuner prefers v11 for a plain shape within 3 % of its fastest variant (gemv.cu kTunePreferred); default on
void gemv_set_tune_prefer(bool on);
// where a GEMV folding a RMSNorm in (NormFold in side) computes rs from the producer's partial sums: right after its
// wait, while its first weights are in flight (true, the default since session 27; F16 and F32 weights), or after its
// main loop (false; BF16 weights always: see gemv.cu)
void gemv_set_fold_rs_early(bool on);
#if defined(LSW_GEMV_TRACE)
// dev builds only: arm (buf of cap records of kGtWords words, seq a zeroed device counter) or disarm (nullptr) the
// GEMV timeline trace (gemv.cu, cuda/dev/trace_gemv.py)
constexpr int kGtWords = 16;
cudaError_t gemv_trace_set(unsigned long long *buf, int cap, int *seq);
#endif
bool gemv_pdl();
// Which other decode kernels launch with PDL while gemv_pdl() is on (neither by default: measured slower): RMSNorm /
// SwiGLU (norm weight loaded before their wait) and the fused decode attention (old KV rows loaded before its wait).
void pdl_set_scope(bool norms, bool attention);
// GEMVs with a NormFold in side or follows_gemv launch with PDL too (library default off; the model turns it on)
void pdl_set_fold_in(bool on);
// GEMVs trigger their PDL dependents after their main loop (default) or, off, at their start: every GEMV launch
void gemv_set_trigger_late(bool on);
// the same for plain launches and launches with a LoRA epilogue / in-kernel shrinks apart (the model: start / late)
void gemv_set_trigger(bool plain_late, bool lora_late);
// the variant of an in-kernel-shrink LoRA launch (no LoRA-tuned entry) whose plain choice + shrink blocks would need
// more than one wave (kGemvLoraWaveVariant by default; 0: the plain choice always); returns the previous setting
constexpr int kGemvLoraWaveVariant = 10;
int gemv_set_lora_default(int v);
bool pdl_norms();
bool pdl_attention();
const char *gemv_variant_name(int v);

// Prefill GEMM Y[n][rows] = X[n][cols] · W^T (+bias)(+Y).  precise: X is split into hi + lo halves of
// the weight dtype (two tensor-core passes, ~fp32-accurate activations); otherwise X is rounded once to
// the weight dtype (what cuBLAS-based engines do).  xbuf: scratch of 2*n*cols elements of the weight
// dtype (gemm_xbuf_bytes).  F32 weights (or odd shapes) use a tiled SIMT fp32 kernel.
size_t gemm_xbuf_bytes(int n, int cols);
cudaError_t gemm(int dtype, const void *W, int rows, int cols, const float *X, int ldx, int n, float *Y, int ldy,
                 const float *bias, bool accumulate, bool precise, void *xbuf, cudaStream_t s);
cudaError_t gemm_simt(int dtype, const void *W, int rows, int cols, const float *X, int ldx, int n, float *Y, int ldy,
                      const float *bias, bool accumulate, cudaStream_t s);

// ---- LoRA shrink / expand ------------------------------------------------------------------------
// t_j[k*rank_j + i] = (gates[k] * scale_j) * dot(A_j[experts[k]][i][0:cols_j], x_j), for every job j, one launch.
struct ShrinkJob {
  const void *A;  // [E][rank][cols]
  int rank, cols;
  const float *x;
  float *t;       // [top_k][rank]
  float scale = 1.f;  // the module's LoRA scaling
};
struct ShrinkBatch {
  int njobs = 0, top_k = 0;
  // > 0: experts are < n_experts; lets a PDL-launched shrink read its A rows before griddepcontrol.wait (the expert
  // index is read relaxed, clamped, and re-checked after the wait); 0: A is read after the wait
  int n_experts = 0;
  const int *experts = nullptr;  // [top_k] device
  const float *gates = nullptr;  // [top_k] device
  ShrinkJob job[8];
};
cudaError_t lora_shrink(int dtype, const ShrinkBatch &b, cudaStream_t s);
// Unfused baseline: Y[r] += gate * Σ_j B[e][r][j] t[j]  for one expert (B: [E][rows][rank]).
cudaError_t lora_expand(int dtype, const void *B, int rows, int rank, const int *experts, int k, const float *gates,
                        const float *t, float *Y, cudaStream_t s);

// ---- SGMM (merge mode) ---------------------------------------------------------------------------
// One descriptor per adapted matrix (a module's rows inside a fused backbone matrix):
//   W[i][c] = round( W0[i][c] + Σ_k g_k * Σ_j B[e_k][i][j] * A[e_k][j][c] ),  e_k = experts[slot][k],
//   g_k = fl(gates[slot][k] * scale)
// computed in fp32 from the pristine W0, rounded once (drift-free: the state after any switch sequence
// depends only on the current experts).
struct SgmmDesc {
  const void *W0;  // pristine rows [rows][cols]
  void *W;         // working rows  [rows][cols]
  const void *A;   // [E][rank][cols]
  const void *B;   // [E][rows][rank]
  int rows, cols, rank, slot;  // slot: which routing (layer-wise: the layer; pre-gated: 0)
  int tile0;       // first tile index of this matrix in the flattened grid (filled by sgmm_prepare)
  float scale = 1.f;  // the module's LoRA scaling: every gate is multiplied by it (fp32) where it is read
};
// Fills tile0 for the chosen kernel and returns the total number of tiles (grid size).
int sgmm_prepare(SgmmDesc *descs_host, int n, bool tensor_cores, int *max_rank = nullptr);
// experts/gates: [n_slots][top_k] device.  skip (nullable, device): when *skip != 0 the launch is a no-op
// (experts unchanged; graph-replayable).  tensor_cores requires F16/BF16, rank % 16 == 0, cols % 8 == 0
// and 16-byte aligned rows (sgmm_tc_ok).
bool sgmm_tc_ok(int dtype, const SgmmDesc &d);
// max_rank: the descriptors' largest rank (sgmm_prepare's), which picks variant 3's wgmma consumer (0: unknown, never)
cudaError_t sgmm(int dtype, const SgmmDesc *descs_dev, int n_descs, int total_tiles, bool tensor_cores, int top_k,
                 const int *experts, const float *gates, const int *skip, cudaStream_t s, int max_rank = 0);

// ---- elementwise / norms -------------------------------------------------------------------------
cudaError_t rmsnorm(int n, int dim, const float *X, int ldx, const float *w, float eps, float *Y, int ldy,
                    cudaStream_t s);
// RoPE (HF rotate-half) in place on X[t][h][hd] (token stride ld floats), angle = pos[t] * inv_freq[i]
// evaluated in fp64, cos/sin rounded to fp32 (matches the CPU tables).  inv_freq: [hd/2] double, device.
cudaError_t rope(int n, int n_heads, int head_dim, int ld, const int *positions, const double *inv_freq, float *X,
                 cudaStream_t s);
cudaError_t swiglu(int n, int inter, const float *GU, int ldgu, float *Out, int ldo, cudaStream_t s);
cudaError_t add_inplace(long long n, float *Y, const float *X, cudaStream_t s);
// Out[t][0:dim] = float(E[tokens[t]][0:dim])
cudaError_t embed(int dtype, const void *E, int dim, int n, const int *tokens, float *Out, cudaStream_t s);
cudaError_t to_f32(int dtype, const void *src, float *dst, long long n, cudaStream_t s);
cudaError_t from_f32(int dtype, const float *src, void *dst, long long n, cudaStream_t s);

// ---- attention -----------------------------------------------------------------------------------
// Causal GQA attention, fp32 arithmetic.  Q row t at stride ldq, O at ldo; K,V [n_ctx][nkv*hd] at stride ldkv,
// elements of kv_dtype (LSW_DTYPE_F32 / F16 / BF16; anything else: cudaErrorInvalidValue).
// Query t sits at position n_ctx - n + t.  head_dim <= 256.
// n_ctx_dev (nullable): when set, n_ctx is read from device memory (graph replay), n_ctx is then an upper bound.
// Decode (n == 1): flash-decoding, split over the sequence, two-phase reduce (scratch: attn_scratch_floats).
// The scratch holds split partials and per-KV-head counters that must be zero before the first decode launch
// (attn_scratch_clear once after allocation; every launch leaves them zero again).
size_t attn_scratch_floats(int n_heads, int head_dim);
cudaError_t attn_scratch_clear(float *scratch, int n_heads, int head_dim, cudaStream_t s);
// Decode in one launch (see attention.cu): q [n_heads][hd]; knew/vnew (nullable): the new token's k/v rows,
// written to K/V at row *pos and attended from there; inv_freq (nullable): RoPE applied to q and knew at *pos
// first (the rope() arithmetic).  Requires attention_decode_ok (more than 8 query heads per KV head only with the
// head split, attn_decode_head_split, and then always variant 0).
// PDL: with knew given and gemv_pdl() on, it launches with programmatic stream serialization and reads *pos,
// *n_ctx_dev and the cache rows other than *pos BEFORE griddepcontrol.wait: the kernel right before it may write
// q / knew / vnew (the qkv GEMV), never pos, n_ctx_dev or old cache rows.
// The new row is rounded to kv_dtype once and attended with the rounded values (as every later step reads it).
bool attention_decode_ok(int n_heads, int n_kv_heads, int head_dim, int ldkv, int kv_dtype, const void *q,
                         const void *K, const void *V);
cudaError_t attention_decode(int n_ctx, const int *n_ctx_dev, const int *pos, int n_heads, int n_kv_heads,
                             int head_dim, const float *q, const float *knew, const float *vnew,
                             const double *inv_freq, int kv_dtype, void *K, void *V, int ldkv, float *O,
                             float *scratch, cudaStream_t s, const float2 *rope_cs = nullptr, int variant = -1,
                             const float *dq = nullptr, const float *dk = nullptr, const float *dv = nullptr);
// dq/dk/dv (nullable, with knew; all or none): corrections added to q / knew / vnew as they are read, before RoPE, with
// the same layouts (the qkv GEMV's deferred LoRA expand, LoraEpilogue::defer).
// rope_cs (nullable): a table from rope_table (positions < n_pos) used instead of fp64 sincos: same values.
cudaError_t rope_table(int n_pos, int head_dim, const double *inv_freq, float2 *out, cudaStream_t s);
// Decode kernel (attention.cu): 0 (default) the register kernel, 1 K/V tiles staged through shared memory by
// cp.async; -1 back to LSW_CUDA_ATTN_VARIANT=0|1 (read once).  Variant 1 needs a 16-byte aligned scratch (else 0).
// attention_decode's `variant` argument (0 / 1) overrides both for one call; -1 leaves the choice to them.
void attn_decode_set_variant(int v);
// the variant set by attn_decode_set_variant or LSW_CUDA_ATTN_VARIANT, -1 when neither chose one
int attn_decode_forced_variant();
// Variant 1: cap on the splits per KV head (<= 64); 0: the heuristic (one wave, and G x splits <= 128 unless the wide
// tiles' parallel merge runs); -1 back to LSW_CUDA_ATTN_SPLITS (read once; unset: the heuristic).
void attn_decode_set_max_splits(int n);
// Variant 1 with a 16-bit cache at head_dim <= 128: 1 wide tiles (8 warps, 32-row tiles), 0 the 4-warp, 16-row
// tiles; -1 back to LSW_CUDA_ATTN_WIDE=0|1 (read once; unset: wide with grouped-query attention, else not)
void attn_decode_set_wide(int v);
// The wide tiles' splits merged by up to G blocks of the KV head (one query head each) instead of its last block: 1 / 0;
// -1 back to LSW_CUDA_ATTN_PARMERGE=0|1 (read once; default 1)
void attn_decode_set_par_merge(int v);
// decode attention variant 0, MHA with head_dim <= 128: 8 positions in flight per warp instead of 4 (default off)
void attn_decode_set_p8(bool on);
// decode attention variant 0 with GQA: 1 a block per query head (the group's blocks share its K/V rows through L2),
// 0 a block per KV group holding all its query heads; -1 back to LSW_CUDA_ATTN_HEAD_SPLIT=0|1 (read once; default 1)
void attn_decode_set_head_split(int v);
// whether variant 0 runs a block per query head for G query heads per KV head (G > 1 and the setting above)
bool attn_decode_head_split(int G);
cudaError_t attention(int n, int n_ctx, const int *n_ctx_dev, int n_heads, int n_kv_heads, int head_dim,
                      const float *Q, int ldq, int kv_dtype, const void *K, const void *V, int ldkv, float *O,
                      int ldo, float *scratch, cudaStream_t s);

// ---- router / sampling ---------------------------------------------------------------------------
// softmax(R x) over n_experts, top_k kept (ties: lower index), renormalised.  One block.
cudaError_t route(int dtype, int n_experts, int dim, int top_k, const void *R, const float *x, int *experts,
                  float *gates, cudaStream_t s);
// n tokens in one launch (a block each): x row t at x + t*ldx, its experts/gates at + t*ldo.
// fold (n == 1): see RouteFold (declared with LoraRoute, above).
// whether the router reads R in 16-byte chunks (route_block's vec; the token's row must be 16-byte aligned too)
inline int route_vec(int dtype, const void *R, int dim) { return aligned16(R) && dim % (dtype == LSW_DTYPE_F32 ? 4 : 8) == 0; }
cudaError_t route_n(int dtype, int n, int n_experts, int dim, int top_k, const void *R, const float *x, int ldx,
                    int *experts, float *gates, int ldo, cudaStream_t s, const RouteFold &fold = RouteFold{});
// the router launches with PDL while gemv_pdl() is on and this is on (the library's default: off; the model switches
// it on unless LSW_CUDA_PDL_ROUTER=0): its rows of R requested before the wait, its dependents let launch at its start
void route_set_pdl(bool on);
// route_block's wide layout (LSW_CUDA_ROUTE_WIDE, default 1; 0: the warp-per-expert layout) for route_n and the
// routing shrink blocks alike, read once
int route_wide();
// Greedy argmax (lowest id on ties) -> *token (device).  One block.
cudaError_t argmax(int vocab, const float *logits, int *token, cudaStream_t s);

}  // namespace lswc

namespace lswc {
// The sampler's argmax case (temperature 0, or only the top token kept): the sampler kernel's branch, and the
// decode step's and lsw_op_sample's choice of greedy_advance (the CPU engine's sampler tests the same)
__host__ __device__ inline bool sampler_greedy(float temperature, int top_k) { return !(temperature > 0.f) || top_k == 1; }
// Full sampler (see sample.cu).  keep: [vocab] bytes, p: sample_scratch_doubles(vocab) doubles of device scratch.
// step_dev (nullable): the step is read from device memory (graph replay).  *nonfinite: 1 when a logit is NaN or
// infinite, else 0; written on every launch.  Flagged logits get the argmax key's token in the greedy branch, else
// token 0 and nothing more is computed.
// The sampler's p scratch: [vocab] doubles (the probabilities), then [vocab] ints (the general path's list of ids)
inline size_t sample_scratch_doubles(int vocab) { return (size_t)vocab + ((size_t)vocab + 1) / 2; }
cudaError_t sample(int vocab, const float *logits, const lsw_sampler_params &sp, const unsigned long long *step_dev,
                   unsigned long long step_host, unsigned char *keep, double *p, int *token, int *nonfinite,
                   cudaStream_t s);
// true: sample() always takes the general path, never the compact one (at most 1,024 candidates after top-k); the
// harness compares both with the CPU.  Default: env LSW_CUDA_SAMPLE_GENERAL (unset: compact where it applies)
void sample_set_general(bool on);
// true (default; env LSW_CUDA_SAMPLE_MB=0 turns it off): compact steps on large vocabularies, and top-p without top-k
// there, run in several blocks (sample_mb_kernel: each selects its slice's top k, the last one the top k of those and
// the draw; top-p alone: the top 1,024 and the softmax denominator, the general path where the nucleus is larger);
// false: one block
void sample_set_multiblock(bool on);
// the blocks sample() launches for these parameters (1: the one-block kernel)
int sample_blocks(int vocab, const lsw_sampler_params &sp);
// The greedy decode step's tail in ONE launch: argmax over the logits (argmax's key: the same token), written to
// *sampled and *nonfinite (1 when a logit is NaN or infinite, else 0; the token is still the argmax key's, an id in
// the vocabulary); then advance's bookkeeping (io[0] = token, io[1] += 1, io[2] += 1, *step += 1); then blk_bytes (a
// multiple of 4) of the step's scalar block blk copied to host_blk, mapped host memory, so that no copy node follows.
// Several blocks, each taking its share of the logits in 16-byte loads (all in flight at once), combine through
// atomicMax on gs->key and count themselves on gs->done; the last one finishes and re-arms both (zero before the
// first launch).  pdl: launched with PDL (it waits before reading anything).
struct GreedyState {     // greedy_advance's state across its blocks, in device memory: zero before the first launch
  unsigned long long key;  // the argmax key (value, lowest id) combined by atomicMax
  unsigned done;           // blocks finished
  unsigned nonfinite;      // set by a block that saw a NaN or infinite logit
};
cudaError_t greedy_advance(int vocab, const float *logits, GreedyState *gs, int *io, int *sampled, int *nonfinite,
                           unsigned long long *step, const void *blk, void *host_blk, int blk_bytes, bool pdl,
                           cudaStream_t s);
}  // namespace lswc

namespace lswc {
// K = qkv[t][k_off : k_off+kv_dim], V = the kv_dim values after it -> Kc/Vc[positions[t]][:]  (device positions),
// rounded to kv_dtype (to nearest even)
cudaError_t kv_store(int n, int kv_dim, const float *qkv, int ld, int k_off, const int *positions, int kv_dtype,
                     void *Kc, void *Vc, cudaStream_t s);
}  // namespace lswc

namespace lswc {
// Fused-mode prologue for decode (n = 1): builds v = RMSNorm(x)·w (mode 0) or SwiGLU(x[0:D], x[D:2D]) (mode 1),
// writes it to `out` and computes every shrink job of `b` on it (all jobs must have cols == D), one launch.
// With b.njobs == 0 it is a plain (multi-block) RMSNorm / SwiGLU of one token.
cudaError_t prologue_shrink(int dtype, int mode, int D, const float *x, const float *w, float eps, float *out,
                            const ShrinkBatch &b, cudaStream_t s);
}  // namespace lswc

namespace lswc {
// ---- adapters in the model forward (lora.cu) ------------------------------------------------------
// Routes of one adapter in device memory: experts/gates[t * stride + slot * top_k + k] (stride = slots * top_k;
// slot = layer for layer-wise routers, 0 otherwise).  gates == nullptr: gate 1 (MixLoRA expert inputs).
struct RouteRef {
  const int *experts;
  const float *gates;
  int stride, slot, top_k;
};
// out[t][k][j] = fl(g * scale) * dot(A[e_k][j], X[t*ldx + k*ldxk]) for k in [k0, k0+kc); out: [n][top_k][rank];
// scale: the module's LoRA scaling
cudaError_t shrink_tok(int dtype, const void *A, int rank, int cols, const float *X, int ldx, int ldxk, int n,
                       const RouteRef &rt, int k0, int kc, float scale, float *out, cudaStream_t s);
// Y[t*ldy + row0 + row] += Σ_{k in [k0,k0+kc)} B[e_k][row] · tin[t][k]
cudaError_t expand_tok(int dtype, const void *B, int rows, int rank, int n, const RouteRef &rt, int k0, int kc,
                       const float *tin, float *Y, int ldy, int row0, cudaStream_t s);
// T[t][e*rank + j] (all E experts' shrinks of token t) *= fl(Σ_k [e_k(t) == e] g_k(t) * scale); 0 for unselected
// experts (scale: the module's LoRA scaling)
cudaError_t gate_experts(int n, int E, int rank, const RouteRef &rt, float scale, float *T, int ldt, cudaStream_t s);
// out[t][k][row0 + row] += B[e_k][row] · tin[t][k]  (every k separately; out: [n][top_k][ldo])
cudaError_t expand_each(int dtype, const void *B, int rows, int rank, int n, const RouteRef &rt, const float *tin,
                        float *out, int ldo, int row0, cudaStream_t s);
// out[t][k][0:width] = base[t*ldb + 0:width]
cudaError_t bcast_rows(int n, int K, int width, const float *base, int ldb, float *out, cudaStream_t s);
// MixLoRA: hk[t][k] = SwiGLU(gu[t][k]) ([n][K][2I] -> [n][K][I]), h[t] = Σ_k g_k hk[t][k]
cudaError_t mix_act(int n, int inter, const RouteRef &rt, const float *gu, float *hk, float *h, cudaStream_t s);

constexpr int kMaxAdapters = 8;
struct MergeCheck {
  int n = 0;
  const int *experts[kMaxAdapters];
  const float *gates[kMaxAdapters];
  int top_k[kMaxAdapters];
  int *prev_e;      // [Σ top_k]
  float *prev_g;
  int *merged;      // 0 after reset: the next check merges
  int *skip;
  long long *counters;  // [0] merges run, [1] skipped
  int *layer_step = nullptr;  // per-matrix merge (layer-wise adapters): max(*layer_step, skip ? 1 : 2) instead
};
// layer-wise merge counting at the end of a step: counters[0] += #layers with step 2, [1] += #layers with 1; reset
cudaError_t layer_count(int n_layers, int *layer_step, long long *counters, cudaStream_t s);
// a no-op kernel launched normally (PDL rule: separates SGMM from a PDL-launched GEMV reading its output)
cudaError_t noop(cudaStream_t s);
cudaError_t merge_check(const MergeCheck &mc, cudaStream_t s);

constexpr int kMaxTerms = 4;
struct SgmmTerm {
  const void *A, *B;  // [E][rank][cols], [E][rows][rank] (this module's rows)
  const int *experts;
  const float *gates;
  int rank, top_k;
  float scale;  // the module's LoRA scaling (gate_k * scale, fp32)
};
struct SgmmTermsDesc {
  const void *W0;
  void *W;
  int rows, cols, nterm, tile0;
  SgmmTerm term[kMaxTerms];
};
int sgmm_terms_prepare(SgmmTermsDesc *d, int n);
cudaError_t sgmm_terms(int dtype, const SgmmTermsDesc *descs, int n, int tiles, const int *skip, cudaStream_t s);

cudaError_t random_fill(int dtype, void *out, long long n, unsigned long long seed, float scale, int one_plus,
                        cudaStream_t s);
cudaError_t advance(int *io, const int *sampled, unsigned long long *step, cudaStream_t s);
}  // namespace lswc

#include <string>
namespace lswc {
// ---- GEMV autotuning (gemv.cu) --------------------------------------------------------------------
// gemv(..., variant 0) = automatic: the variant autotune_gemv measured fastest for (dtype, rows, cols),
// else a default (LSW_CUDA_GEMV_VARIANT=v forces one kernel everywhere).  Variants 1.. are explicit.
// autotune_gemv times every variant with n = 1 over Ws[0..nW) (all matrices of one shape, e.g. every layer's
// wqkv, so the set streams from HBM as in decode) on stream s (must not be capturing; it synchronises),
// records the fastest, returns it (0: nothing tuned, e.g. unaligned shape or an error, which is cleared).
// X: cols floats, Y: rows floats of scratch (overwritten).  LSW_CUDA_VERBOSE=1 prints each choice.
// Call it at model finalize BEFORE capturing the decode graph, once per distinct (dtype, rows, cols).
int autotune_gemv(int dtype, int rows, int cols, const void *const *Ws, int nW, const float *X, float *Y,
                  cudaStream_t s, float *best_us = nullptr);
int gemv_tuned_variant(int dtype, int rows, int cols, bool lora = false);  // 0: not tuned
void gemv_set_variant(int dtype, int rows, int cols, int variant, bool lora = false);
// The same for launches with the fused-LoRA epilogue (n = 1): eps[i] is Ws[i]'s epilogue (its B, t, experts must
// be valid device data).  A LoRA launch uses this choice, else the plain one of its shape
// (LSW_CUDA_GEMV_LORA_VARIANT=v forces one).
int autotune_gemv_lora(int dtype, int rows, int cols, const void *const *Ws, const LoraEpilogue *eps, int nW,
                       const float *X, float *Y, cudaStream_t s, float *best_us = nullptr);
void gemv_tune_clear();
std::string gemv_tune_report();  // one line per tuned shape
bool cuda_verbose();             // LSW_CUDA_VERBOSE set and not "0"
// PDL rule: a GEMV launched with PDL (gemv_set_pdl) reads its first weights BEFORE griddepcontrol.wait, so a
// kernel that WRITES those weights (SGMM) must be followed by at least one normally launched kernel before the GEMV
// (the model launches lswc::noop after every SGMM).  Every kernel may call griddepcontrol.launch_dependents early
// (harmless); the GEMV only overlaps its predecessor when that predecessor does.  lora_shrink / prologue_shrink
// launch with PDL under gemv_set_pdl(true) and read their A rows (adapter weights, never written by a kernel) before
// the wait; the expert index that selects the row is re-read after the wait.  With pdl_set_scope (off by default)
// RMSNorm / SwiGLU (norm weights before the wait) and the fused decode attention (old KV rows) launch with PDL too.
}  // namespace lswc

namespace lswc {
// ---- prefill attention on tensor cores (attention.cu) ---------------------------------------------
// attention() with n >= 256 (attention_set_tc_min), head_dim 64/128 and 16-byte aligned Q/K/V uses the
// flash-attention-2 tensor-core kernel (16-bit Q/K/V/P, fp32 accumulate and softmax; ~1e-3 relative), after
// a one-time self-check against the exact kernel; LSW_CUDA_EXACT_ATTN=1 keeps the exact fp32 kernel.
// kind: 1 = f16, 2 = bf16 inputs (V transposed in smem); 3 = f16, 4 = bf16 (V row-major, ldmatrix.trans).
bool attention_tc_ok(int n, int n_ctx, int n_heads, int n_kv_heads, int head_dim, const float *Q, int ldq,
                     int kv_dtype, const void *K, const void *V, int ldkv, float *O, int ldo);
cudaError_t attention_prefill_tc(int kind, int n, int n_ctx, int n_heads, int n_kv_heads, int head_dim, const float *Q,
                                 int ldq, int kv_dtype, const void *K, const void *V, int ldkv, float *O, int ldo,
                                 cudaStream_t s);
void attention_set_tc_min(int min_tokens);  // INT_MAX: never
}  // namespace lswc

namespace lswc {
// ---- SGMM tensor-core kernel choice (sgmm.cu) ------------------------------------------------------
// sgmm(..., tensor_cores = true) runs the one-shot kernel (variant 0, default), the persistent one (1:
// same tiles and arithmetic, bit-identical results, W0 of the next tile prefetched), (2) an EXACT register-tiled
// SIMT kernel on the same tiling, bit-identical to the SIMT kernel / CPU (FORMAT.md order), or (3) the streaming
// kernel: persistent, one block of one or two 8-warp groups per SM, W0 tiles through a multi-stage cp.async
// pipeline, LoRA A of a super-strip (up to 8 column strips) resident; same arithmetic as variant 0, bit-identical
// results.
// Variant 3 needs > 48 KB of shared memory: the attribute is set outside capture (sgmm_prepare(..., true),
// autotune_sgmm, or the first non-capturing launch); a launch that would need it during capture runs variant 0.
// autotune_sgmm times 0 and 3 on the real descriptors (it RUNS the merge: W = W0 + Σ g B A with the given device
// experts/gates, which must be valid, e.g. zeros with gates 0 -> W = W0), keeps 3 only when a checksum of all
// W outputs equals variant 0's, keeps the fastest and runs it last.  Not during capture.
// LSW_CUDA_SGMM_VARIANT=v (0..3) forces a variant: the initial choice at load; autotune_sgmm keeps it without
// timing; lsw_op_sgmm uses it per call.
void sgmm_set_tc_variant(int v);  // 0..3 (anything else: 0)
int sgmm_tc_variant();
int sgmm_env_variant();           // LSW_CUDA_SGMM_VARIANT, -1 when unset
// variant 3 knobs (harness): 8-warp groups per block (0 auto, 1, 2), max pipeline stages (0 auto = 8, else 2..8),
// grid blocks (0: one per SM), resident super-strip width in 128-column strips (0 auto, 1, 2, 4, 8).  Results do not
// depend on them.
void sgmm_set_stream_cfg(int groups, int max_stages, int grid_blocks, int strip = 0);
// variant 3's top-1 consumer (both 16-row halves of a warp's block at once, the k-steps unrolled for ranks 16 / 32 /
// 64): on by default (the model: LSW_CUDA_SGMM_TOP1=0 switches it off).  Same bits either way.
void sgmm_set_stream_top1(bool on);
// variant 3's top-1 launches in 32-row half tiles (s3_top1_half: more of W0 in flight in the same shared memory);
// same bits either way
void sgmm_set_stream_half(bool on);
// variant 3's wgmma consumer (sgmm.cu s3_wg_*: warpgroup MMAs with both operands read from shared memory), where the
// device runs this build's sm_90a code (sgmm_wgmma_built) and sgmm() is told the launch's max rank.  mode 0: off;
// 1 (default): launches whose top_k * max rank is 128 (r64 top-2: 81.3-85.9 -> 86.5-87.7 % of copy on H100s,
// session 61); 2: 64 as well (r32 top-2, r64 top-1 in whole tiles: 0.4-0.8 points slower there).  The model reads
// LSW_CUDA_SGMM_WGMMA=0 / 1 / 2.  The same bits as the mma.sync consumer (checked by the harness in every plan shape).
void sgmm_set_stream_wgmma(int mode);
int sgmm_stream_wgmma();
// harness timing diagnostics of the wgmma consumer (F16 launches that take it; the results are WRONG): 1 no products
// (W = W0, the same copies, stores and barriers), 2 no LoRA-B copies; 0 off (the default)
void sgmm_set_stream_diag(int mode);
// 1 when the current device runs this build's sm_90a code (the wgmma consumer exists); a one-time probe launch
int sgmm_wgmma_built();
// The streaming SGMM's lockstep schedule where the matrices come in at most 4 runs of one shape (sgmm.cu s3_segments;
// the model hands its merge descriptors over sorted by shape): each run's super-strips dealt out in rounds, so that the
// groups on one matrix walk its row blocks side by side and share its LoRA-B rows in L2.
// Whole tiles only (top_k >= 2; top-1 runs in half tiles).  mode 0: off; 1 (default): where the LoRA-B re-reads it
// saves are a quarter of W0's bytes or more (s3_lock_pays: r64 top-2, not r16 top-2); 2: wherever it applies.  The
// model reads LSW_CUDA_SGMM_LOCK=0 / 1 / 2 (unset: 1).  Same bits in every mode.
void sgmm_set_stream_lock(int mode);
int sgmm_stream_lock();
bool sgmm_stream_half();
// what variant 3 will do for top_k x max_rank on the current device: 0 unavailable (not set up / too little
// shared memory), 1 resident A, 2 chunked operands, 3 resident A in half tiles (top-1); *groups, *stages,
// *strip per the current knobs
int sgmm_stream_plan(int top_k, int max_rank, int *groups, int *stages, int *strip = nullptr);
// harness diagnostic: W = W0 for every descriptor (16-bit, the tensor-core tiling of sgmm_prepare(..., true)) with no
// math, walking pattern 3 (variant 3's 64 x 128 tiles in strip-major order, 2 groups per SM, W0 3 tiles ahead in
// registers): 91 % of copy on the H200, where sgmm_copy_probe_shape's same geometry without the per-tile descriptor
// search and bounds checks moves 92.2-92.8 %; pattern 4: the same walk, each thread copying the chunks the top-1 SGMM
// epilogue owns (a warp instruction covers 8 rows x 64 bytes)
cudaError_t sgmm_copy_probe(int pattern, int dtype, const SgmmDesc *descs_dev, int n_descs, int total_tiles,
                            cudaStream_t s);
// harness diagnostic: the same copy in other tile geometries (C columns x 8192 / C rows, bands of S tiles side by side;
// every descriptor rows x cols): whether longer row segments stream faster than pattern 3's 256-byte ones
cudaError_t sgmm_copy_probe_shape(int dtype, const SgmmDesc *descs_dev, int n_descs, int rows, int cols, int C, int S,
                                  cudaStream_t s);
int autotune_sgmm(int dtype, const SgmmDesc *descs_dev, int n_descs, int total_tiles, int top_k, const int *experts,
                  const float *gates, cudaStream_t s, int max_rank = 0);
}  // namespace lswc

namespace lswc {
// Autotune every distinct GEMV shape of a model in one call (groups the items by (dtype, rows, cols); shapes
// already tuned are skipped; LSW_CUDA_AUTOTUNE=0 disables).  X: max cols floats, Y: max rows floats of scratch.
// Model finalize, before the decode graph is captured:
//   std::vector<lswc::GemvTuneItem> it;
//   for (auto &d : st->layers) for (int k = 0; k < LSW_MAT_COUNT; k++) if (d.w[k]) it.push_back({d.dt[k], d.rows[k], d.cols[k], d.w[k]});
//   it.push_back({st->lm_dt, V, H, st->lm});
//   lswc::autotune_gemv_all(it.data(), (int)it.size(), st->gu, st->logits, st->s);
struct GemvTuneItem { int dtype, rows, cols; const void *W; };
int autotune_gemv_all(const GemvTuneItem *items, int n, const float *X, float *Y, cudaStream_t s);
}  // namespace lswc
