// Every SIMD level's rounding of fp32 to F16 and BF16 (KernelTable::from_f32: the SGMM's and the KV cache's stores)
// against the scalar reference functions lsw::f32_to_f16_rne / f32_to_bf16_rne, over ALL 2^32 fp32 bit patterns
// (zeros, subnormals, ties, the overflow edge, infinities, NaN payloads).  Links the kernel translation units
// directly (the library does not export them).  Exit status 1 on any difference.
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "kernels.h"

namespace {
struct Level {
  const char *name;
  const lsw::KernelTable *t;
};

// mismatches of table t against the reference for dtype over bit patterns [lo, hi) (hi - lo a multiple of kChunk)
constexpr uint64_t kChunk = 1u << 16;
uint64_t run_range(const lsw::KernelTable *t, int dtype, uint64_t lo, uint64_t hi, uint32_t *first_bad) {
  std::vector<float> src(kChunk);
  std::vector<uint16_t> got(kChunk), want(kChunk);
  uint64_t bad = 0;
  for (uint64_t b = lo; b < hi; b += kChunk) {
    for (uint64_t i = 0; i < kChunk; i++) {
      const uint32_t bits = (uint32_t)(b + i);
      std::memcpy(&src[i], &bits, 4);
      want[i] = dtype == LSW_DTYPE_F16 ? lsw::f32_to_f16_rne(src[i]) : lsw::f32_to_bf16_rne(src[i]);
    }
    // an odd length once in a while, so the vector body meets its scalar tail at every offset
    const int64_t n = (b / kChunk) % 7 == 3 ? (int64_t)kChunk - (int64_t)((b / kChunk) % 16) : (int64_t)kChunk;
    t->from_f32(dtype, src.data(), got.data(), n);
    for (int64_t i = 0; i < n; i++)
      if (got[i] != want[i]) {
        if (!bad) *first_bad = (uint32_t)(b + i);
        bad++;
      }
  }
  return bad;
}
}  // namespace

int main() {
  std::vector<Level> levels;
#if defined(__x86_64__) || defined(__i386__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    levels.push_back({"avx2", lsw::kernels_level1()});
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    levels.push_back({"avx512", lsw::kernels_level2()});
#endif
  levels.push_back({"scalar", lsw::kernels_level0()});
  int fails = 0, checks = 0;
  const unsigned nt = std::max(1u, std::min(8u, std::thread::hardware_concurrency()));
  for (const Level &L : levels)
    for (int dtype : {LSW_DTYPE_F16, LSW_DTYPE_BF16}) {
      std::vector<uint64_t> bad(nt, 0);
      std::vector<uint32_t> first(nt, 0);
      std::vector<std::thread> th;
      const uint64_t total = 1ull << 32, per = total / nt / kChunk * kChunk;
      for (unsigned k = 0; k < nt; k++)
        th.emplace_back([&, k] {
          const uint64_t lo = k * per, hi = k + 1 == nt ? total : (k + 1) * per;
          bad[k] = run_range(L.t, dtype, lo, hi, &first[k]);
        });
      for (auto &x : th) x.join();
      uint64_t n = 0;
      uint32_t f = 0;
      for (unsigned k = 0; k < nt; k++)
        if (bad[k]) {
          if (!n) f = first[k];
          n += bad[k];
        }
      checks++;
      const char *dn = dtype == LSW_DTYPE_F16 ? "f16" : "bf16";
      if (n) {
        fails++;
        float v;
        std::memcpy(&v, &f, 4);
        fprintf(stderr, "FAIL %s from_f32 -> %s: %llu of 2^32 inputs differ from the reference, first 0x%08x (%g)\n",
                L.name, dn, (unsigned long long)n, f, (double)v);
      } else {
        printf("%s from_f32 -> %s: all 2^32 inputs as the reference\n", L.name, dn);
      }
    }
  printf("%d checks, %d failed\n", checks, fails);
  return fails ? 1 : 0;
}
