// RMSNorm, RoPE, SwiGLU, residual add, embedding lookup, dtype conversion.
#include "kernels.cuh"

namespace lswc {

// 1 / sqrt(Σ ss over the block / dim + eps): warp sums, then the first warp over the per-warp sums (fixed order)
__device__ __forceinline__ float block_rms_inv(float ss, int dim, float eps) {
  __shared__ float red[32];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.f;
    v = warp_sum(v);
    if (threadIdx.x == 0) red[0] = 1.f / sqrtf(v / (float)dim + eps);
  }
  __syncthreads();
  return red[0];
}

// One block per row: Y = X / sqrt(mean(X^2) + eps) * w
__global__ void __launch_bounds__(256) rmsnorm_kernel(int dim, const float *__restrict__ X, int ldx,
                                                      const float *__restrict__ w, float eps, float *__restrict__ Y,
                                                      int ldy) {
  // let a GEMV launched after us with programmatic dependent launch start its weight loads now;
  // it still waits (griddepcontrol.wait) for this grid to finish before reading our output
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  const float *x = X + (size_t)blockIdx.x * ldx;
  float *y = Y + (size_t)blockIdx.x * ldy;
  float ss = 0.f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss = fmaf(x[i], x[i], ss);
  const float inv = block_rms_inv(ss, dim, eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) y[i] = x[i] * inv * w[i];
}

// The same arithmetic as rmsnorm_kernel (per-thread Σx² over i = tid, tid + 256, ... in order, the same block
// reduction, y = x * inv * w), so the same bits, with the row held in registers (dim <= 256 * NV): x is read once,
// and the norm weight -- a constant -- is loaded BEFORE griddepcontrol.wait.  Launched with PDL when the GEMVs are
// (pdl_norms): its block then waits, weights loaded, while the GEMV before it (the writer of X) finishes.
template <int NV>
__global__ void __launch_bounds__(256) rmsnorm_reg_kernel(int dim, const float *__restrict__ X, int ldx,
                                                          const float *__restrict__ w, float eps, float *__restrict__ Y,
                                                          int ldy) {
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  float wv[NV], xv[NV];
#pragma unroll
  for (int k = 0; k < NV; k++) {
    const int i = threadIdx.x + k * 256;
    wv[k] = i < dim ? __ldg(w + i) : 0.f;
  }
  asm volatile("griddepcontrol.wait;" ::: "memory");
  const float *x = X + (size_t)blockIdx.x * ldx;
  float *y = Y + (size_t)blockIdx.x * ldy;
#pragma unroll
  for (int k = 0; k < NV; k++) {
    const int i = threadIdx.x + k * 256;
    xv[k] = i < dim ? x[i] : 0.f;
  }
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < NV; k++)
    if (threadIdx.x + k * 256 < dim) ss = fmaf(xv[k], xv[k], ss);
  const float inv = block_rms_inv(ss, dim, eps);
#pragma unroll
  for (int k = 0; k < NV; k++) {
    const int i = threadIdx.x + k * 256;
    if (i < dim) y[i] = xv[k] * inv * wv[k];
  }
}

cudaError_t rmsnorm(int n, int dim, const float *X, int ldx, const float *w, float eps, float *Y, int ldy,
                    cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  const bool pdl = pdl_norms();
  if (dim <= 256 * 4) launch_pdl(rmsnorm_reg_kernel<4>, dim3(n), dim3(256), s, pdl, dim, X, ldx, w, eps, Y, ldy);
  else if (dim <= 256 * 8) launch_pdl(rmsnorm_reg_kernel<8>, dim3(n), dim3(256), s, pdl, dim, X, ldx, w, eps, Y, ldy);
  else if (dim <= 256 * 16) launch_pdl(rmsnorm_reg_kernel<16>, dim3(n), dim3(256), s, pdl, dim, X, ldx, w, eps, Y, ldy);
  else if (dim <= 256 * 32) launch_pdl(rmsnorm_reg_kernel<32>, dim3(n), dim3(256), s, pdl, dim, X, ldx, w, eps, Y, ldy);
  else rmsnorm_kernel<<<n, 256, 0, s>>>(dim, X, ldx, w, eps, Y, ldy);
  LSWC_LAUNCH_RET();
}

// Thread per rotated pair.  angle in fp64 (as the CPU tables), cos/sin rounded to fp32, rotation in fp32.
__global__ void rope_kernel(int n, int n_heads, int hd, int ld, const int *__restrict__ pos,
                            const double *__restrict__ inv_freq, float *__restrict__ X) {
  // let a GEMV launched after us with programmatic dependent launch start its weight loads now;
  // it still waits (griddepcontrol.wait) for this grid to finish before reading our output
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  const int half = hd >> 1;
  const long long total = (long long)n * n_heads * half;
  for (long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; q < total; q += (long long)gridDim.x * blockDim.x) {
    const int i = (int)(q % half);
    const long long th = q / half;
    const int h = (int)(th % n_heads), t = (int)(th / n_heads);
    const double ang = (double)pos[t] * inv_freq[i];
    double sd, cd;
    sincos(ang, &sd, &cd);
    const float c = (float)cd, s = (float)sd;
    float *x = X + (size_t)t * ld + (size_t)h * hd;
    const float x0 = x[i], x1 = x[i + half];
    x[i] = rope_rot(x0, x1, c, s, true);
    x[i + half] = rope_rot(x0, x1, c, s, false);
  }
}

cudaError_t rope(int n, int n_heads, int head_dim, int ld, const int *positions, const double *inv_freq, float *X,
                 cudaStream_t s) {
  const long long total = (long long)n * n_heads * (head_dim / 2);
  if (total <= 0) return cudaSuccess;
  rope_kernel<<<(int)std::min<long long>((total + 255) / 256, 8192), 256, 0, s>>>(n, n_heads, head_dim, ld, positions,
                                                                                  inv_freq, X);
  LSWC_LAUNCH_RET();
}

__global__ void swiglu_kernel(int n, int inter, const float *__restrict__ GU, int ldgu, float *__restrict__ Out,
                              int ldo) {
  // let a GEMV launched after us with programmatic dependent launch start its weight loads now;
  // it still waits (griddepcontrol.wait) for this grid to finish before reading our output
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  asm volatile("griddepcontrol.wait;" ::: "memory");  // launched with PDL when the GEMVs are: GU comes from the one before
  const long long total = (long long)n * inter;
  for (long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; q < total; q += (long long)gridDim.x * blockDim.x) {
    const int t = (int)(q / inter), i = (int)(q % inter);
    const float g = GU[(size_t)t * ldgu + i], u = GU[(size_t)t * ldgu + inter + i];
    Out[(size_t)t * ldo + i] = swiglu_f(g, u);
  }
}

cudaError_t swiglu(int n, int inter, const float *GU, int ldgu, float *Out, int ldo, cudaStream_t s) {
  const long long total = (long long)n * inter;
  if (total <= 0) return cudaSuccess;
  launch_pdl(swiglu_kernel, dim3((unsigned)std::min<long long>((total + 255) / 256, 8192)), dim3(256), s, pdl_norms(), n,
             inter, GU, ldgu, Out, ldo);
  LSWC_LAUNCH_RET();
}

__global__ void add_kernel(long long n, float *__restrict__ Y, const float *__restrict__ X) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    Y[i] += X[i];
}

cudaError_t add_inplace(long long n, float *Y, const float *X, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  add_kernel<<<(int)std::min<long long>((n + 255) / 256, 8192), 256, 0, s>>>(n, Y, X);
  LSWC_LAUNCH_RET();
}

template <typename T>
__global__ void embed_kernel(const T *__restrict__ E, int dim, const int *__restrict__ tokens, float *__restrict__ Out) {
  const T *e = E + (size_t)tokens[blockIdx.x] * dim;
  float *o = Out + (size_t)blockIdx.x * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = Tr<T>::to_f(e[i]);
}

cudaError_t embed(int dtype, const void *E, int dim, int n, const int *tokens, float *Out, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  switch (dtype) {
    case LSW_DTYPE_F32: embed_kernel<float><<<n, 256, 0, s>>>((const float *)E, dim, tokens, Out); break;
    case LSW_DTYPE_F16: embed_kernel<__half><<<n, 256, 0, s>>>((const __half *)E, dim, tokens, Out); break;
    case LSW_DTYPE_BF16: embed_kernel<__nv_bfloat16><<<n, 256, 0, s>>>((const __nv_bfloat16 *)E, dim, tokens, Out); break;
    default: return cudaErrorInvalidValue;
  }
  LSWC_LAUNCH_RET();
}

template <typename T>
__global__ void to_f32_kernel(const T *__restrict__ src, float *__restrict__ dst, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    dst[i] = Tr<T>::to_f(src[i]);
}
template <typename T>
__global__ void from_f32_kernel(const float *__restrict__ src, T *__restrict__ dst, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    dst[i] = Tr<T>::from_f(src[i]);
}

cudaError_t to_f32(int dtype, const void *src, float *dst, long long n, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  const int g = (int)std::min<long long>((n + 255) / 256, 8192);
  switch (dtype) {
    case LSW_DTYPE_F32: to_f32_kernel<float><<<g, 256, 0, s>>>((const float *)src, dst, n); break;
    case LSW_DTYPE_F16: to_f32_kernel<__half><<<g, 256, 0, s>>>((const __half *)src, dst, n); break;
    case LSW_DTYPE_BF16: to_f32_kernel<__nv_bfloat16><<<g, 256, 0, s>>>((const __nv_bfloat16 *)src, dst, n); break;
    default: return cudaErrorInvalidValue;
  }
  LSWC_LAUNCH_RET();
}
cudaError_t from_f32(int dtype, const float *src, void *dst, long long n, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  const int g = (int)std::min<long long>((n + 255) / 256, 8192);
  switch (dtype) {
    case LSW_DTYPE_F32: from_f32_kernel<float><<<g, 256, 0, s>>>(src, (float *)dst, n); break;
    case LSW_DTYPE_F16: from_f32_kernel<__half><<<g, 256, 0, s>>>(src, (__half *)dst, n); break;
    case LSW_DTYPE_BF16: from_f32_kernel<__nv_bfloat16><<<g, 256, 0, s>>>(src, (__nv_bfloat16 *)dst, n); break;
    default: return cudaErrorInvalidValue;
  }
  LSWC_LAUNCH_RET();
}

}  // namespace lswc

namespace lswc {
// K/V rows of n tokens (inside the fused qkv output, token stride ld) -> caches at positions pos[t].
template <typename KT>
__global__ void kv_store_kernel(int n, int kv_dim, const float *__restrict__ qkv, int ld, int k_off,
                                const int *__restrict__ pos, KT *__restrict__ Kc, KT *__restrict__ Vc) {
  // let a GEMV launched after us with programmatic dependent launch start its weight loads now;
  // it still waits (griddepcontrol.wait) for this grid to finish before reading our output
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  const long long total = (long long)n * kv_dim;
  for (long long q = blockIdx.x * (long long)blockDim.x + threadIdx.x; q < total; q += (long long)gridDim.x * blockDim.x) {
    const int t = (int)(q / kv_dim), d = (int)(q % kv_dim);
    const float *r = qkv + (size_t)t * ld + k_off;
    const size_t o = (size_t)pos[t] * kv_dim + d;
    Kc[o] = Tr<KT>::from_f(r[d]);
    Vc[o] = Tr<KT>::from_f(r[kv_dim + d]);
  }
}
cudaError_t kv_store(int n, int kv_dim, const float *qkv, int ld, int k_off, const int *positions, int kv_dtype,
                     void *Kc, void *Vc, cudaStream_t s) {
  const long long total = (long long)n * kv_dim;
  if (total <= 0) return cudaSuccess;
  if (!dtype_bytes(kv_dtype)) return cudaErrorInvalidValue;
  with_dtype(kv_dtype, [&](auto tag) {
    using KT = LSWC_DT(tag);
    kv_store_kernel<<<(int)std::min<long long>((total + 255) / 256, 8192), 256, 0, s>>>(
        n, kv_dim, qkv, ld, k_off, positions, static_cast<KT *>(Kc), static_cast<KT *>(Vc));
  });
  LSWC_LAUNCH_RET();
}
}  // namespace lswc
