// Run-time dispatched SIMD kernel table (one per instruction-set level, see kern_impl.inc).
#pragma once
#include <cstdint>
#include <cstring>

#include "lsw.h"

#define LSW_CAT_(a, b) a##b
#define LSW_CAT(a, b) LSW_CAT_(a, b)

namespace lsw {
// fp32 -> F16 / BF16, round to nearest even (overflow to infinity, NaN kept quiet): the reference every level's
// vector rounding (KernelTable::from_f32) matches bit for bit
inline uint16_t f32_to_f16_rne(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u | ((ax >> 13) & 0x3ffu) : 0u));
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  // rounds to infinity
  if (ax < 0x38800000u) {                                      // f16 subnormal or zero: let the FPU round
    float af;
    std::memcpy(&af, &ax, 4);
    float r = af + 0.5f;
    uint32_t rb;
    std::memcpy(&rb, &r, 4);
    return (uint16_t)(sign | (rb - 0x3f000000u));
  }
  const uint32_t odd = (ax >> 13) & 1u;
  ax += 0xc8000fffu + odd;
  return (uint16_t)(sign | (ax >> 13));
}
inline uint16_t f32_to_bf16_rne(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return (uint16_t)(x >> 16);
}

struct KernelTable {
  int level;
  // Y[t*ldy + r] (= or +=) dot(W[r][:], X[t*ldx + :]) for r in [r0,r1), t in [0,n)
  void (*matmul_rows)(int dtype, const void *W, int64_t cols, const float *X, int64_t ldx, int64_t n, float *Y,
                      int64_t ldy, int64_t r0, int64_t r1, bool acc);
  void (*axpy)(float a, const float *x, float *y, int64_t n);  // y = fma(a, x, y), one rounding per element
  float (*dot)(const float *a, const float *b, int64_t n);
  void (*to_f32)(int dtype, const void *src, float *dst, int64_t n);
  void (*swiglu)(const float *g, const float *u, float *out, int64_t n);  // out = g / (1 + e^-g) * u
  // decode attention of one query (nh heads, G per KV group) over T positions, unnormalised (see kern_impl.inc); K/V
  // rows of kv_dtype (an lsw_dtype), widened in registers
  void (*attn_chunk)(int kv_dtype, const float *q, int64_t nh, int64_t G, int64_t hd, const void *K, const void *V, int64_t ld,
                     int64_t T, int64_t avail, float scale, float *s, float *m, float *l, float *o);
  // s[j] = e^(s[j] - max) for j < n in place, *mx = the max; returns the sum (the softmax step of attn_chunk)
  float (*exp_shift)(float *s, int64_t n, float *mx);
  // Y[tok[t]*ldy + i] += Σ_j B[i*rank + j] U[t*ldu + j] for rows i in [r0,r1), t in [0,n): a LoRA up-projection of
  // gathered tokens, each element one fma chain along the rank then y + s (the same bits on every level)
  void (*lora_up)(int dtype, const void *B, int64_t rank, const float *U, int64_t ldu, int64_t n, float *Y, int64_t ldy,
                  const int64_t *tok, int64_t r0, int64_t r1);
  // dst[i] = src[i] rounded to dtype (f32_to_f16_rne / f32_to_bf16_rne; F32: a copy), the same bits on every level
  void (*from_f32)(int dtype, const float *src, void *dst, int64_t n);
  // SGMM of n rows (docs/FORMAT.md, "SGMM arithmetic"): W[i][j] = round_dtype(acc) with acc = W0[i][j] widened, then
  // acc = fma(C[i*ldc + q], A[q*cols + j], acc) for q = 0 .. K-1 in order (C: the merge's coefficients g_k · B_k[i][r],
  // A: the matching LoRA-A rows in fp32, [K][cols]); W0 and W point at row 0, rows `cols` elements apart.  One fma
  // chain per element in the reference order: the same bits on every level.
  void (*sgmm_rows)(int dtype, const void *W0, void *W, int64_t cols, int64_t n, const float *C, int64_t ldc,
                    int64_t K, const float *A);
};
const KernelTable *kernels_level0();
const KernelTable *kernels_level1();
const KernelTable *kernels_level2();
const KernelTable &K();  // the table chosen for this CPU (LSW_SIMD env var may force a lower level)
}  // namespace lsw
