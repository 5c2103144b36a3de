// Prefill GEMM: Y[n][rows] = X[n][cols] · W[rows][cols]^T.
// Tensor cores through WMMA (bf16/f16 inputs, fp32 accumulate), 128x128x32 tiles, 8 warps, cp.async double
// buffering.  With LSW_HAVE_CUBLAS, cublasGemmEx is used instead for the tensor-core path.
#include "kernels.cuh"
#include <mma.h>
#ifdef LSW_HAVE_CUBLAS
#include <cublas_v2.h>
#endif

namespace lswc {
using namespace nvcuda;

// ---- X fp32 -> weight dtype (hi, and lo = X - hi when precise) ----------------------------------
template <typename T>
__global__ void split_x_kernel(int n, int cols, const float *__restrict__ X, int ldx, T *__restrict__ hi,
                               T *__restrict__ lo) {
  const long long total = (long long)n * cols;
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
    const int t = (int)(i / cols), c = (int)(i - (long long)t * cols);
    const float x = X[(size_t)t * ldx + c];
    const T h = Tr<T>::from_f(x);
    hi[i] = h;
    if (lo) lo[i] = Tr<T>::from_f(x - Tr<T>::to_f(h));
  }
}

__device__ __forceinline__ void cp_async16(void *smem, const void *gmem, bool valid) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  const int bytes = valid ? 16 : 0;  // 0: zero-fill
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory"); }

constexpr int GBM = 128, GBN = 128, GBK = 32, GPAD = 8, GLD = GBK + GPAD;

// A = Xc [M=n][K=cols] (row-major, weight dtype), B = W [N=rows][K] (i.e. K x N col-major).
// Requires K % 8 == 0 and 16-byte aligned rows.
template <typename T>
__global__ void __launch_bounds__(256) gemm_wmma_kernel(const T *__restrict__ A, const T *__restrict__ W, int M, int N,
                                                        int K, float *__restrict__ Y, int ldy,
                                                        const float *__restrict__ bias, int accumulate) {
  __shared__ __align__(128) T As[2][GBM][GLD];
  __shared__ __align__(128) T Bs[2][GBN][GLD];
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int wm = warp >> 1, wn = warp & 1;  // 4 x 2 warps, each 32 (M) x 64 (N)
  const int m0 = blockIdx.y * GBM, n0 = blockIdx.x * GBN;
  const int nk = (K + GBK - 1) / GBK;

  auto load = [&](int stage, int kt) {
    const int k0 = kt * GBK;
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const int q = tid + i * 256;  // 512 chunks of 8 elements per operand tile
      const int r = q >> 2, kc = (q & 3) * 8;
      const int gk = k0 + kc;
      {
        const int gm = m0 + r;
        const bool ok = gm < M && gk < K;
        cp_async16(&As[stage][r][kc], ok ? (const void *)(A + (size_t)gm * K + gk) : (const void *)A, ok);
      }
      {
        const int gn = n0 + r;
        const bool ok = gn < N && gk < K;
        cp_async16(&Bs[stage][r][kc], ok ? (const void *)(W + (size_t)gn * K + gk) : (const void *)W, ok);
      }
    }
  };

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][4];
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) wmma::fill_fragment(acc[i][j], 0.f);

  load(0, 0);
  cp_async_commit();
  for (int kt = 0; kt < nk; kt++) {
    if (kt + 1 < nk) {
      load((kt + 1) & 1, kt + 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int st = kt & 1;
#pragma unroll
    for (int kk = 0; kk < GBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> af[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> bf[4];
#pragma unroll
      for (int i = 0; i < 2; i++) wmma::load_matrix_sync(af[i], &As[st][wm * 32 + i * 16][kk], GLD);
#pragma unroll
      for (int j = 0; j < 4; j++) wmma::load_matrix_sync(bf[j], &Bs[st][wn * 64 + j * 16][kk], GLD);
#pragma unroll
      for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) wmma::mma_sync(acc[i][j], af[i], bf[j], acc[i][j]);
    }
    __syncthreads();
  }
  // epilogue: per-warp 16x16 fp32 staging in the (now idle) A tile memory
  float *stage = reinterpret_cast<float *>(&As[0][0][0]) + warp * 256;
#pragma unroll
  for (int i = 0; i < 2; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) {
      wmma::store_matrix_sync(stage, acc[i][j], 16, wmma::mem_row_major);
      __syncwarp();
#pragma unroll
      for (int q = 0; q < 8; q++) {
        const int e = lane + 32 * q, r = e >> 4, c = e & 15;
        const int gm = m0 + wm * 32 + i * 16 + r, gn = n0 + wn * 64 + j * 16 + c;
        if (gm < M && gn < N) {
          float v = stage[e];
          if (bias) v += bias[gn];
          float *y = Y + (size_t)gm * ldy + gn;
          if (accumulate) v += *y;
          *y = v;
        }
      }
      __syncwarp();
    }
}

// ---- SIMT fp32 fallback: 64x64 tiles, 4x4 per thread --------------------------------------------
template <typename T>
__global__ void __launch_bounds__(256) gemm_simt_kernel(const T *__restrict__ W, int N, int K,
                                                        const float *__restrict__ X, int ldx, int M,
                                                        float *__restrict__ Y, int ldy, const float *__restrict__ bias,
                                                        int accumulate) {
  __shared__ float Xs[16][64 + 4];
  __shared__ float Ws[16][64 + 4];
  const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
  const int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += 16) {
    for (int q = tid; q < 16 * 64; q += 256) {
      const int r = q >> 4, k = q & 15;  // r: row within tile, k: k within chunk
      const int gk = k0 + k;
      Xs[k][r] = (m0 + r < M && gk < K) ? X[(size_t)(m0 + r) * ldx + gk] : 0.f;
      Ws[k][r] = (n0 + r < N && gk < K) ? Tr<T>::to_f(W[(size_t)(n0 + r) * K + gk]) : 0.f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < 16; k++) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; i++) { a[i] = Xs[k][ty * 4 + i]; b[i] = Ws[k][tx * 4 + i]; }
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int gm = m0 + ty * 4 + i, gn = n0 + tx * 4 + j;
      if (gm < M && gn < N) {
        float v = acc[i][j];
        if (bias) v += bias[gn];
        float *y = Y + (size_t)gm * ldy + gn;
        if (accumulate) v += *y;
        *y = v;
      }
    }
}

cudaError_t gemm_simt(int dtype, const void *W, int rows, int cols, const float *X, int ldx, int n, float *Y, int ldy,
                      const float *bias, bool accumulate, cudaStream_t s) {
  if (rows <= 0 || n <= 0) return cudaSuccess;
  dim3 grid(cdiv(rows, 64), cdiv(n, 64));
  switch (dtype) {
    case LSW_DTYPE_F32: gemm_simt_kernel<float><<<grid, 256, 0, s>>>((const float *)W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate); break;
    case LSW_DTYPE_F16: gemm_simt_kernel<__half><<<grid, 256, 0, s>>>((const __half *)W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate); break;
    case LSW_DTYPE_BF16: gemm_simt_kernel<__nv_bfloat16><<<grid, 256, 0, s>>>((const __nv_bfloat16 *)W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate); break;
    default: return cudaErrorInvalidValue;
  }
  LSWC_LAUNCH_RET();
}

size_t gemm_xbuf_bytes(int n, int cols) { return (size_t)2 * n * cols * 2 + 256; }

#ifdef LSW_HAVE_CUBLAS
static cublasHandle_t cublas_handle() {
  static thread_local cublasHandle_t h = nullptr;
  if (!h && cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) h = nullptr;
  return h;
}
#endif

template <typename T>
static cudaError_t gemm_tc(const void *W, int rows, int cols, const float *X, int ldx, int n, float *Y, int ldy,
                           const float *bias, bool accumulate, bool precise, void *xbuf, cudaStream_t s) {
  T *hi = static_cast<T *>(xbuf);
  T *lo = precise ? hi + (size_t)n * cols : nullptr;
  // hi/lo must stay 16-byte aligned: n*cols % 8 == 0 since cols % 8 == 0
  const long long total = (long long)n * cols;
  split_x_kernel<T><<<(int)std::min<long long>((total + 255) / 256, 4096), 256, 0, s>>>(n, cols, X, ldx, hi, lo);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  for (int pass = 0; pass < (precise ? 2 : 1); pass++) {
    const T *A = pass == 0 ? hi : lo;
    const bool acc = pass == 0 ? accumulate : true;
    const float *b = pass == 0 ? bias : nullptr;
#ifdef LSW_HAVE_CUBLAS
    cublasHandle_t h = cublas_handle();
    if (h && !b) {
      cublasSetStream(h, s);
      const float alpha = 1.f, beta = acc ? 1.f : 0.f;
      const cudaDataType_t dt = Tr<T>::dtype == LSW_DTYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
      // column-major view: Y^T [rows x n] = W [rows x cols] (row-major = col-major cols x rows, op T) * Xc^T
      cublasStatus_t st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols, &alpha, W, dt, cols, A, dt, cols,
                                       &beta, Y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      if (st == CUBLAS_STATUS_SUCCESS) continue;
    }
#endif
    dim3 grid(cdiv(rows, GBN), cdiv(n, GBM));
    gemm_wmma_kernel<T><<<grid, 256, 0, s>>>(A, (const T *)W, n, rows, cols, Y, ldy, b, acc);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

cudaError_t gemm(int dtype, const void *W, int rows, int cols, const float *X, int ldx, int n, float *Y, int ldy,
                 const float *bias, bool accumulate, bool precise, void *xbuf, cudaStream_t s) {
  if (rows <= 0 || n <= 0) return cudaSuccess;
  const bool tc = dtype != LSW_DTYPE_F32 && cols % 8 == 0 && aligned16(W) && xbuf && aligned16(xbuf);
  if (!tc) return gemm_simt(dtype, W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate, s);
  if (dtype == LSW_DTYPE_F16)
    return gemm_tc<__half>(W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate, precise, xbuf, s);
  return gemm_tc<__nv_bfloat16>(W, rows, cols, X, ldx, n, Y, ldy, bias, accumulate, precise, xbuf, s);
}

}  // namespace lswc
