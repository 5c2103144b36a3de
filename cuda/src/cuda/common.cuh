// Shared helpers of the CUDA backend: error handling, dtype traits, 16-byte vector loads, reductions.
// Style (ggml-cuda): kernel -> launcher(stream) returning cudaError_t -> entry returning lsw_status.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>
#include <type_traits>
#include "lsw.h"

// Defined by the engine (cuda/src/engine.h); the dev harness provides its own.
extern "C++" void lsw_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// cudaError_t -> lsw_status (+ message naming the failing call). Out-of-memory -> LSW_E_OUT_OF_MEMORY.
lsw_status lswc_cuda_fail(cudaError_t e, const char *what, const char *file, int line);

#define LSWC_CHECK(call)                                                        \
  do {                                                                          \
    cudaError_t e_ = (call);                                                    \
    if (e_ != cudaSuccess) return lswc_cuda_fail(e_, #call, __FILE__, __LINE__); \
  } while (0)

// In launchers: return the launch error (configuration errors) to the caller.
#define LSWC_LAUNCH_RET() return cudaGetLastError()

namespace lswc {

constexpr int WARP = 32;

// HF rotate-half RoPE of one element pair: first half x0 c - x1 s, second half x1 c + x0 s, each product rounded and
// never contracted into an FMA (nvcc may contract a plain `x0 * c - x1 * s` differently at each inlined site, so two
// kernels could store different bits for the same row; this is also the CPU backend's arithmetic)
__device__ __forceinline__ float rope_rot(float x0, float x1, float c, float s, bool first) {
  return first ? __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)) : __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x0, s));
}
// an acquire load of a counter other blocks (or grids) bump: the in-kernel LoRA shrinks' sync (gemv.cu), the decode
// attention's split counters (attention.cu)
__device__ __forceinline__ int ld_acquire(const int *p) {
  int v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
// ... and its bump: one acq_rel atomic add of 1 (after a block barrier, it releases the block's writes); the old value
__device__ __forceinline__ int atom_inc_acq_rel(int *p) {
  int old;
  asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;" : "=r"(old) : "l"(p) : "memory");
  return old;
}
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// ---- dtype traits ------------------------------------------------------------------------------
template <typename T> struct Tr;
template <> struct Tr<float> {
  static constexpr int VEC = 4;  // elements per 16-byte load
  static constexpr int dtype = LSW_DTYPE_F32;
  __device__ __forceinline__ static float to_f(float v) { return v; }
  __device__ __forceinline__ static float from_f(float v) { return v; }
};
template <> struct Tr<__half> {
  static constexpr int VEC = 8;
  static constexpr int dtype = LSW_DTYPE_F16;
  __device__ __forceinline__ static float to_f(__half v) { return __half2float(v); }
  __device__ __forceinline__ static __half from_f(float v) { return __float2half_rn(v); }
};
template <> struct Tr<__nv_bfloat16> {
  static constexpr int VEC = 8;
  static constexpr int dtype = LSW_DTYPE_BF16;
  __device__ __forceinline__ static float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ __forceinline__ static __nv_bfloat16 from_f(float v) { return __float2bfloat16_rn(v); }
};

// 16 bytes of T -> Tr<T>::VEC floats
__device__ __forceinline__ void unpack(const uint4 &u, float *f, const float *) {
  f[0] = __uint_as_float(u.x); f[1] = __uint_as_float(u.y); f[2] = __uint_as_float(u.z); f[3] = __uint_as_float(u.w);
}
__device__ __forceinline__ void unpack(const uint4 &u, float *f, const __half *) {
  const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
  for (int i = 0; i < 4; i++) { float2 t = __half22float2(h[i]); f[2 * i] = t.x; f[2 * i + 1] = t.y; }
}
__device__ __forceinline__ void unpack(const uint4 &u, float *f, const __nv_bfloat16 *) {
  const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) { f[2 * i] = __uint_as_float(w[i] << 16); f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u); }
}
template <typename T> __device__ __forceinline__ void unpack16(const uint4 &u, float *f) { unpack(u, f, (const T *)nullptr); }
// The RMSNorm fold's scale (kernels.cuh NormFold) from the producer's n partial sums of h²: 1 / sqrt(Σ / dim + eps),
// summed lane-strided (fold_part_sum), then by warp_sum (fold_rs_of), so every warp that computes it (GEMV blocks,
// deferring shrink blocks, routers) gets the same bits.  Every lane of the warp takes part.  COHERENT: the partials
// read through L2 (__ldcg: written by the kernel before), else plain loads (a copy in shared memory).
template <bool COHERENT> __device__ __forceinline__ float fold_part_sum(const float *part, int n) {
  float sp = 0.f;
  for (int i = (int)(threadIdx.x & 31); i < n; i += 32) sp += COHERENT ? __ldcg(part + i) : part[i];
  return sp;
}
__device__ __forceinline__ float fold_rs_of(float lane_sum, int dim, float eps) {
  return 1.f / sqrtf(warp_sum(lane_sum) / (float)dim + eps);
}
__device__ __forceinline__ float fold_rs(const float *part, int n, int dim, float eps) {
  return fold_rs_of(fold_part_sum<true>(part, n), dim, eps);
}
// acc + Σ w[i] x[i] over one 16-byte chunk of T (VEC elements) and the matching VEC floats of x (16-byte aligned, read
// through the read-only cache), one fmaf per element in order
template <typename T> __device__ __forceinline__ float dot16(const uint4 &w, const float *x, float acc) {
  constexpr int VEC = Tr<T>::VEC;
  float wf[VEC];
  unpack16<T>(w, wf);
  const float4 *xp = reinterpret_cast<const float4 *>(x);
#pragma unroll
  for (int q = 0; q < VEC / 4; q++) {
    const float4 v = __ldg(xp + q);
    acc = fmaf(wf[4 * q], v.x, acc); acc = fmaf(wf[4 * q + 1], v.y, acc);
    acc = fmaf(wf[4 * q + 2], v.z, acc); acc = fmaf(wf[4 * q + 3], v.w, acc);
  }
  return acc;
}

// VEC floats -> 16 bytes of T (round to nearest even)
// 16-bit types: two elements per conversion (cvt.rn.f16x2.f32 / cvt.rn.bf16x2.f32, one instruction per pair; the same
// round-to-nearest-even as Tr<T>::from_f element by element, so the same bits)
__device__ __forceinline__ uint32_t pack2(float lo, float hi, const __half *) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t *>(&h);
}
__device__ __forceinline__ uint32_t pack2(float lo, float hi, const __nv_bfloat16 *) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t *>(&h);
}
template <typename T> __device__ __forceinline__ uint4 pack16(const float *f) {
  if constexpr (std::is_same<T, float>::value) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]), __float_as_uint(f[3]));
  } else {
    const T *tag = nullptr;
    return make_uint4(pack2(f[0], f[1], tag), pack2(f[2], f[3], tag), pack2(f[4], f[5], tag), pack2(f[6], f[7], tag));
  }
}

// 4 consecutive elements of T -> float4 (a 16-byte load for fp32, 8 bytes for the 16-bit types)
template <typename T> __device__ __forceinline__ float4 cvt4f(const uint2 &u);
template <> __device__ __forceinline__ float4 cvt4f<__half>(const uint2 &u) {
  const float2 a = __half22float2(*reinterpret_cast<const __half2 *>(&u.x));
  const float2 b = __half22float2(*reinterpret_cast<const __half2 *>(&u.y));
  return make_float4(a.x, a.y, b.x, b.y);
}
template <> __device__ __forceinline__ float4 cvt4f<__nv_bfloat16>(const uint2 &u) {
  return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                     __uint_as_float(u.y & 0xffff0000u));
}
template <typename T> __device__ __forceinline__ float4 ld4f(const T *p) {
  if constexpr (std::is_same<T, float>::value) return *reinterpret_cast<const float4 *>(p);
  else return cvt4f<T>(*reinterpret_cast<const uint2 *>(p));
}
// v rounded to T and back (what a T cache holds)
template <typename T> __device__ __forceinline__ float round_to(float v) { return Tr<T>::to_f(Tr<T>::from_f(v)); }

// streaming 16-byte load that does not allocate in L1 (weights are touched once per token)
__device__ __forceinline__ uint4 ld_stream(const void *p) {
  uint4 r;
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
  return r;
}
__device__ __forceinline__ void st_stream(void *p, const uint4 &v) {
  asm volatile("st.global.cs.v4.u32 [%0], {%1,%2,%3,%4};" :: "l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w) : "memory");
}
// st_stream when ok != 0, the predicate inside the asm: a C++ `if` around the store costs a BSSY / BSYNC pair per store
// (the streaming SGMM's epilogue, session 53)
__device__ __forceinline__ void st_stream_if(void *p, const uint4 &v, unsigned ok) {
  asm volatile("{\n .reg .pred q;\n setp.ne.u32 q, %5, 0;\n @q st.global.cs.v4.u32 [%0], {%1,%2,%3,%4};\n}"
               ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w), "r"(ok) : "memory");
}

// bytes per element of an lsw_dtype, 0 for an unknown one
inline size_t dtype_bytes(int dt) { return dt == LSW_DTYPE_F32 ? 4 : dt == LSW_DTYPE_F16 || dt == LSW_DTYPE_BF16 ? 2 : 0; }
// f(tag) for the element type of an lsw_dtype, tag a null pointer to it (LSWC_DT(tag) names the type); an unknown
// dtype calls nothing (callers check it first)
template <class F> void with_dtype(int dt, F &&f) {
  switch (dt) {
    case LSW_DTYPE_F32: f((float *)nullptr); break;
    case LSW_DTYPE_F16: f((__half *)nullptr); break;
    case LSW_DTYPE_BF16: f((__nv_bfloat16 *)nullptr); break;
    default: break;
  }
}
#define LSWC_DT(tag) std::remove_pointer_t<decltype(tag)>
inline bool aligned16(const void *p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }
// a line into L2, no data used (weights a kernel will read after its griddepcontrol.wait)
__device__ __forceinline__ void prefetch_l2(const void *p) { asm volatile("prefetch.global.L2 [%0];" ::"l"(p)); }
// SwiGLU of one pair, shared by the swiglu kernel and the GEMV's SwiGLU fold (the same bits)
__device__ __forceinline__ float swiglu_f(float g, float u) { return g / (1.f + expf(-g)) * u; }
// SMs of the current device (cached per device; 132, an H200, if the query fails: callers only size grids with it)
int sm_count();
// Environment switches (read where a module sets itself up): env_flag: unset or empty -> dflt, "0" -> off, anything
// else -> on; env_mode012: "0", "1" or "2" -> that mode, anything else (unset included) -> dflt.
bool env_flag(const char *name, bool dflt);
int env_mode012(const char *name, int dflt);
inline int cdiv(long long a, long long b) { return (int)((a + b - 1) / b); }

// A launch with programmatic stream serialization (PDL: the kernel may start while the one before it finishes; it
// must execute griddepcontrol.wait before reading anything that kernel writes) when pdl, else a plain launch.
template <typename... KArgs, typename... Args>
inline void launch_pdl_smem(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, bool pdl,
                            Args... args) {
  if (!pdl) {
    kern<<<grid, block, smem, s>>>(args...);
    return;
  }
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cudaLaunchAttribute at[1];
  at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = at;
  cfg.numAttrs = 1;
  cudaLaunchKernelEx(&cfg, kern, args...);
}
template <typename... KArgs, typename... Args>
inline void launch_pdl(void (*kern)(KArgs...), dim3 grid, dim3 block, cudaStream_t s, bool pdl, Args... args) {
  launch_pdl_smem(kern, grid, block, 0, s, pdl, args...);
}
}  // namespace lswc
