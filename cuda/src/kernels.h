// Run-time dispatched SIMD kernel table (one per instruction-set level, see kern_impl.inc).
#pragma once
#include <cstdint>

#include "lsw.h"

#define LSW_CAT_(a, b) a##b
#define LSW_CAT(a, b) LSW_CAT_(a, b)

namespace lsw {
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
};
const KernelTable *kernels_level0();
const KernelTable *kernels_level1();
const KernelTable *kernels_level2();
const KernelTable &K();  // the table chosen for this CPU (LSW_SIMD env var may force a lower level)
}  // namespace lsw
