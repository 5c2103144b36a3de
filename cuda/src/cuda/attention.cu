// Attention over the KV cache (fp32).
//  - decode (n == 1): flash-decoding.  Phase 1: grid (heads, splits), each block runs an online softmax
//    over its slice of the sequence and writes (max, sum, acc[hd]); phase 2 merges the splits.
//    n_ctx may be read from device memory, so the launch shape is fixed and the step is graph-replayable.
//  - prefill (n > 1): causal, a block per (head, 16 queries) sharing K/V chunks through shared memory.
// Any head_dim <= 256 (lanes own dims lane + 32 i).
#include "kernels.cuh"
#include <math_constants.h>

namespace lswc {

constexpr int AT_MAXD = 8;      // dims per lane (head_dim <= 256)
constexpr int AT_SPLITS = 32;   // max sequence splits for decode
constexpr int AT_WARPS = 4;     // decode phase-1 warps per block

size_t attn_scratch_floats(int n_heads, int head_dim) { return (size_t)n_heads * AT_SPLITS * (head_dim + 2); }

__global__ void __launch_bounds__(AT_WARPS * 32) attn_decode_split_kernel(
    int n_ctx_host, const int *__restrict__ n_ctx_dev, int n_splits, int n_heads, int n_kv_heads, int hd,
    const float *__restrict__ Q, const float *__restrict__ K, const float *__restrict__ V, int ldkv,
    float *__restrict__ part, float scale) {
  const int h = blockIdx.x, sp = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n_ctx = n_ctx_dev ? *n_ctx_dev : n_ctx_host;
  const int kvh = h / (n_heads / n_kv_heads);
  const int chunk = (n_ctx + n_splits - 1) / n_splits;
  const int p0 = sp * chunk, p1 = min(n_ctx, p0 + chunk);
  float q[AT_MAXD], acc[AT_MAXD];
#pragma unroll
  for (int i = 0; i < AT_MAXD; i++) {
    const int d = lane + 32 * i;
    q[i] = d < hd ? Q[(size_t)h * hd + d] : 0.f;
    acc[i] = 0.f;
  }
  float m = -CUDART_INF_F, l = 0.f;
  for (int p = p0 + warp; p < p1; p += AT_WARPS) {
    const float *k = K + (size_t)p * ldkv + (size_t)kvh * hd;
    const float *v = V + (size_t)p * ldkv + (size_t)kvh * hd;
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < AT_MAXD; i++) {
      const int d = lane + 32 * i;
      if (d < hd) s = fmaf(q[i], k[d], s);
    }
    s = warp_sum(s) * scale;
    const float mn = fmaxf(m, s);
    const float corr = expf(m - mn), w = expf(s - mn);
    l = l * corr + w;
#pragma unroll
    for (int i = 0; i < AT_MAXD; i++) {
      const int d = lane + 32 * i;
      if (d < hd) acc[i] = acc[i] * corr + w * v[d];
    }
    m = mn;
  }
  // combine the block's warps
  __shared__ float sm[AT_WARPS], sl[AT_WARPS], sacc[AT_WARPS][AT_MAXD * 32];
  if (lane == 0) { sm[warp] = m; sl[warp] = l; }
#pragma unroll
  for (int i = 0; i < AT_MAXD; i++) sacc[warp][lane + 32 * i] = acc[i];
  __syncthreads();
  if (warp == 0) {
    float M = -CUDART_INF_F;
    for (int w = 0; w < AT_WARPS; w++) M = fmaxf(M, sm[w]);
    float L = 0.f, o[AT_MAXD];
#pragma unroll
    for (int i = 0; i < AT_MAXD; i++) o[i] = 0.f;
    for (int w = 0; w < AT_WARPS; w++) {
      const float f = sm[w] == -CUDART_INF_F ? 0.f : expf(sm[w] - M);
      L += sl[w] * f;
#pragma unroll
      for (int i = 0; i < AT_MAXD; i++) o[i] += sacc[w][lane + 32 * i] * f;
    }
    float *pp = part + ((size_t)h * n_splits + sp) * (hd + 2);
    if (lane == 0) { pp[0] = M; pp[1] = L; }
#pragma unroll
    for (int i = 0; i < AT_MAXD; i++) {
      const int d = lane + 32 * i;
      if (d < hd) pp[2 + d] = o[i];
    }
  }
}

__global__ void attn_decode_reduce_kernel(int n_splits, int hd, const float *__restrict__ part, float *__restrict__ O) {
  const int h = blockIdx.x;
  const float *ph = part + (size_t)h * n_splits * (hd + 2);
  float M = -CUDART_INF_F;
  for (int s = 0; s < n_splits; s++) M = fmaxf(M, ph[(size_t)s * (hd + 2)]);
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float L = 0.f, o = 0.f;
    for (int s = 0; s < n_splits; s++) {
      const float *p = ph + (size_t)s * (hd + 2);
      const float f = p[0] == -CUDART_INF_F ? 0.f : expf(p[0] - M);
      L += p[1] * f;
      o += p[2 + d] * f;
    }
    O[(size_t)h * hd + d] = o / L;
  }
}

constexpr int AP_Q = 16, AP_KC = 16, AP_MAXHD = 256;

__global__ void __launch_bounds__(256) attn_prefill_kernel(int n, int n_ctx, int n_heads, int n_kv_heads, int hd,
                                                           const float *__restrict__ Q, int ldq,
                                                           const float *__restrict__ K, const float *__restrict__ V,
                                                           int ldkv, float *__restrict__ O, int ldo, float scale) {
  __shared__ float Kt[AP_MAXHD][AP_KC];  // transposed: lanes j read Kt[d][j], conflict-free
  __shared__ float Vs[AP_KC][AP_MAXHD];
  __shared__ float Qs[AP_Q][AP_MAXHD];
  const int h = blockIdx.x, t0 = blockIdx.y * AP_Q, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int kvh = h / (n_heads / n_kv_heads);
  const int base = n_ctx - n;  // position of query 0
  for (int e = threadIdx.x; e < AP_Q * hd; e += blockDim.x) {
    const int qi = e / hd, d = e % hd, t = t0 + qi;
    Qs[qi][d] = t < n ? Q[(size_t)t * ldq + (size_t)h * hd + d] * scale : 0.f;
  }
  const int tq[2] = {t0 + warp * 2, t0 + warp * 2 + 1};
  float m[2] = {-CUDART_INF_F, -CUDART_INF_F}, l[2] = {0.f, 0.f}, acc[2][AT_MAXD];
#pragma unroll
  for (int a = 0; a < 2; a++)
#pragma unroll
    for (int i = 0; i < AT_MAXD; i++) acc[a][i] = 0.f;
  const int last_t = min(n, t0 + AP_Q) - 1;
  const int p_end = base + last_t + 1;  // positions [0, p_end) are visible to some query of the tile
  const int j = lane & 15, hh = lane >> 4;
  for (int c0 = 0; c0 < p_end; c0 += AP_KC) {
    __syncthreads();
    for (int e = threadIdx.x; e < AP_KC * hd; e += blockDim.x) {
      const int pj = e / hd, d = e % hd, p = c0 + pj;
      const bool ok = p < p_end;
      Kt[d][pj] = ok ? K[(size_t)p * ldkv + (size_t)kvh * hd + d] : 0.f;
      Vs[pj][d] = ok ? V[(size_t)p * ldkv + (size_t)kvh * hd + d] : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int a = 0; a < 2; a++) {
      const int t = tq[a];
      if (t >= n) continue;  // warp-uniform
      const int qpos = base + t;
      if (c0 > qpos) continue;
      const int qi = warp * 2 + a;
      float s = 0.f;
      for (int d = hh; d < hd; d += 2) s = fmaf(Qs[qi][d], Kt[d][j], s);
      s += __shfl_xor_sync(0xffffffffu, s, 16);
      if (c0 + j > qpos) s = -CUDART_INF_F;
      const float cmax = warp_max(s);
      const float mn = fmaxf(m[a], cmax);
      const float corr = expf(m[a] - mn);
      const float w = s == -CUDART_INF_F ? 0.f : expf(s - mn);
      const float wsum = warp_sum(lane < 16 ? w : 0.f);
      l[a] = l[a] * corr + wsum;
#pragma unroll
      for (int i = 0; i < AT_MAXD; i++) acc[a][i] *= corr;
      for (int jj = 0; jj < AP_KC; jj++) {
        const float wj = __shfl_sync(0xffffffffu, w, jj);
#pragma unroll
        for (int i = 0; i < AT_MAXD; i++) {
          const int d = lane + 32 * i;
          if (d < hd) acc[a][i] = fmaf(wj, Vs[jj][d], acc[a][i]);
        }
      }
      m[a] = mn;
    }
  }
#pragma unroll
  for (int a = 0; a < 2; a++) {
    const int t = tq[a];
    if (t >= n) continue;
    const float inv = 1.f / l[a];
#pragma unroll
    for (int i = 0; i < AT_MAXD; i++) {
      const int d = lane + 32 * i;
      if (d < hd) O[(size_t)t * ldo + (size_t)h * hd + d] = acc[a][i] * inv;
    }
  }
}

cudaError_t attention(int n, int n_ctx, const int *n_ctx_dev, int n_heads, int n_kv_heads, int head_dim,
                      const float *Q, int ldq, const float *K, const float *V, int ldkv, float *O, int ldo,
                      float *scratch, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  if (head_dim > AP_MAXHD || n_kv_heads <= 0 || n_heads % n_kv_heads != 0 || n_ctx < n) return cudaErrorInvalidValue;
  const float scale = 1.f / sqrtf((float)head_dim);
  if (n == 1 && scratch) {
    int splits = (n_ctx + 63) / 64;  // >= 64 positions per split for the host-known bound
    splits = splits < 1 ? 1 : (splits > AT_SPLITS ? AT_SPLITS : splits);
    attn_decode_split_kernel<<<dim3(n_heads, splits), AT_WARPS * 32, 0, s>>>(
        n_ctx, n_ctx_dev, splits, n_heads, n_kv_heads, head_dim, Q, K, V, ldkv, scratch, scale);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    attn_decode_reduce_kernel<<<n_heads, 128, 0, s>>>(splits, head_dim, scratch, O);
    LSWC_LAUNCH_RET();
  }
  if (n_ctx_dev) return cudaErrorInvalidValue;  // prefill needs the host n_ctx
  attn_prefill_kernel<<<dim3(n_heads, cdiv(n, AP_Q)), 256, 0, s>>>(n, n_ctx, n_heads, n_kv_heads, head_dim, Q, ldq, K,
                                                                   V, ldkv, O, ldo, scale);
  LSWC_LAUNCH_RET();
}

}  // namespace lswc
