// Seeded pseudo-random tensor values for lsw_model_add_random_tensor (synthetic bench models).
// One pure function of (seed, element index), usable from C++ (CPU backend) and CUDA (device-side
// generation: a 7B model is generated in device memory, no host copy), so both backends hold the same values.
//
//   h = splitmix64(seed ^ splitmix64(index));  u = ((h >> 40) + 0.5) * 2^-24      (in (0, 1), never 1/2)
//   v = scale * (2u - 1);  |v| < scale / 1024 -> ±scale / 1024 (stays non-zero after rounding to F16/BF16)
//   1-D F32 tensors (norm weights, biases): 1 + v.
// The value is then rounded to the tensor's dtype with round-to-nearest-even.
#pragma once
#include <stdint.h>

#if defined(__CUDACC__)
#define LSW_HD __host__ __device__ __forceinline__
#else
#define LSW_HD inline
#endif

LSW_HD uint64_t lsw_splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Multiplies/adds that no compiler contracts into an FMA (host and device results must agree bit for bit).
#if defined(__CUDA_ARCH__)
#define LSW_RMUL(a, b) __fmul_rn((a), (b))
#define LSW_RADD(a, b) __fadd_rn((a), (b))
#else
#define LSW_RMUL(a, b) ((float)((a) * (b)))
#define LSW_RADD(a, b) ((float)((a) + (b)))
#endif

LSW_HD float lsw_random_value(uint64_t seed, uint64_t index, float scale, int one_plus) {
  const uint64_t h = lsw_splitmix64(seed ^ lsw_splitmix64(index));
  // 2u - 1 = (2k + 1 - 2^24) / 2^24 with k = h >> 40: an odd integer below 2^24 in magnitude, exact in fp32
  const int32_t q = (int32_t)(2 * (h >> 40) + 1) - (int32_t)16777216;
  const float w = (float)q * (1.0f / 16777216.0f);
  float v = LSW_RMUL(scale, w);
  const float lo = LSW_RMUL(scale, 1.0f / 1024.0f);
  if (v < lo && v > -lo) v = v < 0.0f ? -lo : lo;
  return one_plus ? LSW_RADD(1.0f, v) : v;
}
