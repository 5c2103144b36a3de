// Adapter kernels of the model forward (model.cu), token-wise so that every prompt token has its own experts:
//   shrink_tok / expand_tok  (unfused: one pair per expert; fused prompt: all experts in one pair),
//   merge_check              (merge mode: compare the current experts/gates with the merged ones -> skip flag),
//   sgmm_terms               (merge mode: exact-order SIMT SGMM over all adapted modules of all layers, any number
//                             of adapters per module, docs/FORMAT.md arithmetic -> bit-identical to the CPU),
//   mix_act                  (MixLoRA whole-FFN experts: per-expert SwiGLU and the gated sum),
//   random_fill              (lsw_model_add_random_tensor on the device), advance (decode-step bookkeeping).
#include "kernels.cuh"
#include "../random.h"

namespace lswc {

// out[t][k][j] = fl((gates ? g[t][slot][k] : 1) * scale) * dot(A[e_k][j][:], X[t*ldx + k*ldxk + :]),  k in [k0, k0+kc)
template <typename T>
__global__ void __launch_bounds__(256) shrink_tok_kernel(const T *__restrict__ A, int rank, int cols,
                                                         const float *__restrict__ X, int ldx, int ldxk, int n,
                                                         RouteRef rt, int k0, int kc, float scale,
                                                         float *__restrict__ out) {
  const int lane = threadIdx.x & 31;
  const long long w = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  const long long total = (long long)n * kc * rank;
  if (w >= total) return;
  const int j = (int)(w % rank);
  const int kk = (int)((w / rank) % kc);
  const int t = (int)(w / ((long long)rank * kc));
  const int k = k0 + kk;
  const int ri = t * rt.stride + rt.slot * rt.top_k + k;
  const int e = rt.experts[ri];
  const T *a = A + ((size_t)e * rank + j) * cols;
  const float *x = X + (size_t)t * ldx + (size_t)k * ldxk;
  float acc = 0.f;
  for (int c = lane; c < cols; c += 32) acc = fmaf(Tr<T>::to_f(a[c]), x[c], acc);
  acc = warp_sum(acc);
  if (lane == 0) {
    const float g = (rt.gates ? rt.gates[ri] : 1.f) * scale;
    out[((size_t)t * rt.top_k + k) * rank + j] = g * acc;
  }
}

// Y[t*ldy + row0 + row] += Σ_{k in [k0,k0+kc)} Σ_j B[e_k][row][j] * tin[t][k][j]
template <typename T>
__global__ void __launch_bounds__(256) expand_tok_kernel(const T *__restrict__ B, int rows, int rank, int n,
                                                         RouteRef rt, int k0, int kc, const float *__restrict__ tin,
                                                         float *__restrict__ Y, int ldy, int row0) {
  const long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= (long long)n * rows) return;
  const int row = (int)(q % rows), t = (int)(q / rows);
  float acc = 0.f;
  for (int k = k0; k < k0 + kc; k++) {
    const int e = rt.experts[t * rt.stride + rt.slot * rt.top_k + k];
    const T *b = B + ((size_t)e * rows + row) * rank;
    const float *u = tin + ((size_t)t * rt.top_k + k) * rank;
    for (int j = 0; j < rank; j++) acc = fmaf(Tr<T>::to_f(b[j]), u[j], acc);
  }
  Y[(size_t)t * ldy + row0 + row] += acc;
}

// MixLoRA expert FFN inputs: out[t][k][row0 + row] = base[t][row0 + row] + Σ_j B[e_k][row][j] * tin[t][k][j]
// for every k (each expert gets its own copy of the gate/up pre-activations).  out: [n][top_k][ldo].
template <typename T>
__global__ void __launch_bounds__(256) expand_each_kernel(const T *__restrict__ B, int rows, int rank, int n,
                                                          RouteRef rt, const float *__restrict__ tin,
                                                          float *__restrict__ out, int ldo, int row0) {
  const long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= (long long)n * rt.top_k * rows) return;
  const int row = (int)(q % rows);
  const int k = (int)((q / rows) % rt.top_k), t = (int)(q / ((long long)rows * rt.top_k));
  const int e = rt.experts[t * rt.stride + rt.slot * rt.top_k + k];
  const T *b = B + ((size_t)e * rows + row) * rank;
  const float *u = tin + ((size_t)t * rt.top_k + k) * rank;
  float acc = 0.f;
  for (int j = 0; j < rank; j++) acc = fmaf(Tr<T>::to_f(b[j]), u[j], acc);
  out[((size_t)t * rt.top_k + k) * ldo + row0 + row] += acc;
}

__global__ void bcast_kernel(int n, int K, int width, const float *__restrict__ base, int ldb, float *__restrict__ out) {
  const long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= (long long)n * K * width) return;
  const int i = (int)(q % width);
  const long long tk = q / width;
  const int t = (int)(tk / K);
  out[tk * width + i] = base[(size_t)t * ldb + i];
}

// h_k[t][k][i] = silu(gu[t][k][i]) * gu[t][k][I + i];   h[t][i] = Σ_k g[t][k] h_k[t][k][i]   (k ascending)
__global__ void mix_act_kernel(int n, int inter, RouteRef rt, const float *__restrict__ gu, float *__restrict__ hk,
                               float *__restrict__ h) {
  const long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= (long long)n * inter) return;
  const int i = (int)(q % inter), t = (int)(q / inter);
  float acc = 0.f;
  for (int k = 0; k < rt.top_k; k++) {
    const float *r = gu + ((size_t)t * rt.top_k + k) * 2 * inter;
    const float g = r[i];
    const float v = g / (1.f + expf(-g)) * r[inter + i];
    hk[((size_t)t * rt.top_k + k) * inter + i] = v;
    acc = fmaf(rt.gates[t * rt.stride + rt.slot * rt.top_k + k], v, acc);
  }
  h[(size_t)t * inter + i] = acc;
}

// Prompt deltas as GEMMs (see Fwd::delta_gemm): T[t][e*rank + j] holds dot(A[e][j], x_t) for EVERY expert e;
// keep fl(g_k(t) * scale) times it for the experts token t selected (summed over k; ungated: 1) and zero for the
// others.
__global__ void gate_experts_kernel(int n, int E, int rank, RouteRef rt, float scale, float *__restrict__ T, int ldt) {
  const long long q = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (q >= (long long)n * E * rank) return;
  const int j = (int)(q % rank), e = (int)((q / rank) % E), t = (int)(q / ((long long)rank * E));
  float g = 0.f;
  for (int k = 0; k < rt.top_k; k++) {
    const int i = t * rt.stride + rt.slot * rt.top_k + k;
    if (rt.experts[i] == e) g += rt.gates ? rt.gates[i] : 1.f;
  }
  float *p = T + (size_t)t * ldt + (size_t)e * rank + j;
  *p = g == 0.f ? 0.f : *p * (g * scale);
}
cudaError_t gate_experts(int n, int E, int rank, const RouteRef &rt, float scale, float *T, int ldt, cudaStream_t s) {
  const long long total = (long long)n * E * rank;
  if (total <= 0) return cudaSuccess;
  gate_experts_kernel<<<(int)((total + 255) / 256), 256, 0, s>>>(n, E, rank, rt, scale, T, ldt);
  LSWC_LAUNCH_RET();
}

template <typename F>
static cudaError_t by_dtype(int dtype, F &&f) {
  switch (dtype) {
    case LSW_DTYPE_F32: f((const float *)nullptr); break;
    case LSW_DTYPE_F16: f((const __half *)nullptr); break;
    case LSW_DTYPE_BF16: f((const __nv_bfloat16 *)nullptr); break;
    default: return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t shrink_tok(int dtype, const void *A, int rank, int cols, const float *X, int ldx, int ldxk, int n,
                       const RouteRef &rt, int k0, int kc, float scale, float *out, cudaStream_t s) {
  const long long warps = (long long)n * kc * rank;
  if (warps <= 0) return cudaSuccess;
  const int blocks = (int)((warps + 7) / 8);
  return by_dtype(dtype, [&](auto tp) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(tp)>>;
    shrink_tok_kernel<T><<<blocks, 256, 0, s>>>((const T *)A, rank, cols, X, ldx, ldxk, n, rt, k0, kc, scale, out);
  });
}

cudaError_t expand_tok(int dtype, const void *B, int rows, int rank, int n, const RouteRef &rt, int k0, int kc,
                       const float *tin, float *Y, int ldy, int row0, cudaStream_t s) {
  const long long th = (long long)n * rows;
  if (th <= 0 || kc <= 0) return cudaSuccess;
  return by_dtype(dtype, [&](auto tp) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(tp)>>;
    expand_tok_kernel<T><<<(int)((th + 255) / 256), 256, 0, s>>>((const T *)B, rows, rank, n, rt, k0, kc, tin, Y, ldy, row0);
  });
}

cudaError_t expand_each(int dtype, const void *B, int rows, int rank, int n, const RouteRef &rt, const float *tin,
                        float *out, int ldo, int row0, cudaStream_t s) {
  const long long th = (long long)n * rt.top_k * rows;
  if (th <= 0) return cudaSuccess;
  return by_dtype(dtype, [&](auto tp) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(tp)>>;
    expand_each_kernel<T><<<(int)((th + 255) / 256), 256, 0, s>>>((const T *)B, rows, rank, n, rt, tin, out, ldo, row0);
  });
}

cudaError_t bcast_rows(int n, int K, int width, const float *base, int ldb, float *out, cudaStream_t s) {
  const long long th = (long long)n * K * width;
  if (th <= 0) return cudaSuccess;
  bcast_kernel<<<(int)((th + 255) / 256), 256, 0, s>>>(n, K, width, base, ldb, out);
  LSWC_LAUNCH_RET();
}

cudaError_t mix_act(int n, int inter, const RouteRef &rt, const float *gu, float *hk, float *h, cudaStream_t s) {
  const long long th = (long long)n * inter;
  if (th <= 0) return cudaSuccess;
  mix_act_kernel<<<(int)((th + 255) / 256), 256, 0, s>>>(n, inter, rt, gu, hk, h);
  LSWC_LAUNCH_RET();
}

// ---- merge mode -----------------------------------------------------------------------------------
// One thread: skip = merged && cur == prev (experts and gates of every adapter, concatenated); prev = cur;
// counters[0] += !skip (steps), counters[1] += skip (skipped); merged = 1.
__global__ void merge_check_kernel(MergeCheck mc) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  bool same = *mc.merged != 0;
  int o = 0;
  for (int a = 0; a < mc.n; a++)
    for (int k = 0; k < mc.top_k[a]; k++, o++) {
      const int e = mc.experts[a][k];
      const float g = mc.gates[a][k];
      same = same && mc.prev_e[o] == e && mc.prev_g[o] == g;
      mc.prev_e[o] = e;
      mc.prev_g[o] = g;
    }
  *mc.skip = same ? 1 : 0;
  if (mc.layer_step) {
    const int v = same ? 1 : 2;
    if (*mc.layer_step < v) *mc.layer_step = v;
  } else {
    mc.counters[same ? 1 : 0] += 1;
  }
  *mc.merged = 1;
}

__global__ void layer_count_kernel(int nl, int *step, long long *counters) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  for (int L = 0; L < nl; L++) {
    if (step[L] == 2) counters[0] += 1;
    else if (step[L] == 1) counters[1] += 1;
    step[L] = 0;
  }
}

cudaError_t layer_count(int n_layers, int *layer_step, long long *counters, cudaStream_t s) {
  layer_count_kernel<<<1, 32, 0, s>>>(n_layers, layer_step, counters);
  LSWC_LAUNCH_RET();
}

__global__ void noop_kernel() {}
cudaError_t noop(cudaStream_t s) {
  noop_kernel<<<1, 32, 0, s>>>();
  LSWC_LAUNCH_RET();
}

cudaError_t merge_check(const MergeCheck &mc, cudaStream_t s) {
  merge_check_kernel<<<1, 32, 0, s>>>(mc);
  LSWC_LAUNCH_RET();
}

// Exact-order SGMM over term lists: acc = W0; for each term, expert k, rank r: c = g*B (rounded), acc = fma(c, A, acc)
constexpr int SX_R = 8, SX_C = 128;
template <typename T>
__global__ void __launch_bounds__(256) sgmm_terms_kernel(const SgmmTermsDesc *__restrict__ descs, int n_descs,
                                                         const int *skip) {
  if (skip && *skip) return;
  int lo = 0, hi = n_descs - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (descs[mid].tile0 <= (int)blockIdx.x) lo = mid; else hi = mid - 1;
  }
  const SgmmTermsDesc &d = descs[lo];
  const int tiles_c = (d.cols + SX_C - 1) / SX_C;
  const int local = blockIdx.x - d.tile0;
  const int r0 = (local / tiles_c) * SX_R, c0 = (local % tiles_c) * SX_C;
  for (int q = threadIdx.x; q < SX_R * SX_C; q += blockDim.x) {
    const int i = r0 + q / SX_C, c = c0 + q % SX_C;
    if (i >= d.rows || c >= d.cols) continue;
    const size_t o = (size_t)i * d.cols + c;
    float acc = Tr<T>::to_f(static_cast<const T *>(d.W0)[o]);
    for (int tm = 0; tm < d.nterm; tm++) {
      const SgmmTerm &tr = d.term[tm];
      for (int k = 0; k < tr.top_k; k++) {
        const int e = tr.experts[k];
        const float g = tr.gates[k] * tr.scale;
        const T *b = static_cast<const T *>(tr.B) + ((size_t)e * d.rows + i) * tr.rank;
        const T *a = static_cast<const T *>(tr.A) + (size_t)e * tr.rank * d.cols + c;
        for (int j = 0; j < tr.rank; j++)
          acc = fmaf(__fmul_rn(g, Tr<T>::to_f(b[j])), Tr<T>::to_f(a[(size_t)j * d.cols]), acc);
      }
    }
    static_cast<T *>(d.W)[o] = Tr<T>::from_f(acc);
  }
}

int sgmm_terms_prepare(SgmmTermsDesc *d, int n) {
  int tiles = 0;
  for (int i = 0; i < n; i++) {
    d[i].tile0 = tiles;
    tiles += cdiv(d[i].rows, SX_R) * cdiv(d[i].cols, SX_C);
  }
  return tiles;
}

cudaError_t sgmm_terms(int dtype, const SgmmTermsDesc *descs, int n, int tiles, const int *skip, cudaStream_t s) {
  if (n <= 0 || tiles <= 0) return cudaSuccess;
  return by_dtype(dtype, [&](auto tp) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(tp)>>;
    sgmm_terms_kernel<T><<<tiles, 256, 0, s>>>(descs, n, skip);
  });
}

// ---- synthetic tensors ----------------------------------------------------------------------------
template <typename T>
__global__ void random_fill_kernel(T *__restrict__ out, long long n, unsigned long long seed, float scale, int one_plus) {
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    out[i] = Tr<T>::from_f(lsw_random_value(seed, (uint64_t)i, scale, one_plus));
}

cudaError_t random_fill(int dtype, void *out, long long n, unsigned long long seed, float scale, int one_plus,
                        cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  const int blocks = (int)std::min<long long>((n + 255) / 256, 65536);
  switch (dtype) {
    case LSW_DTYPE_F32: random_fill_kernel<float><<<blocks, 256, 0, s>>>((float *)out, n, seed, scale, one_plus); break;
    case LSW_DTYPE_F16: random_fill_kernel<__half><<<blocks, 256, 0, s>>>((__half *)out, n, seed, scale, one_plus); break;
    case LSW_DTYPE_BF16: random_fill_kernel<__nv_bfloat16><<<blocks, 256, 0, s>>>((__nv_bfloat16 *)out, n, seed, scale, one_plus); break;
    default: return cudaErrorInvalidValue;
  }
  LSWC_LAUNCH_RET();
}

// ---- decode-step bookkeeping (last node before the host copy) -------------------------------------
// io: [0] token (sampled -> next input), [1] pos, [2] n_ctx; step (u64) += 1
__global__ void advance_kernel(int *io, const int *sampled, unsigned long long *step) {
  if (threadIdx.x == 0 && blockIdx.x == 0) {
    io[0] = *sampled;
    io[1] += 1;
    io[2] += 1;
    *step += 1;
  }
}

cudaError_t advance(int *io, const int *sampled, unsigned long long *step, cudaStream_t s) {
  advance_kernel<<<1, 32, 0, s>>>(io, sampled, step);
  LSWC_LAUNCH_RET();
}

}  // namespace lswc
