// Top-p helpers shared by the CPU sampler (cpu.cpp) and the CUDA one (cuda/sample.cu), host and device.
//
// lsw_topp_bin: the bin of a probability in top-p's walk, 64 bins per binary order of magnitude over the 32 below the
// largest probability (bin 0 holds the largest), kTopPBins for everything below those.  Larger p, lower or equal bin.
//
// lsw_repeat_add: a running fp64 sum of one value repeated: what the loop
//
//   for (j = 0; j < n; j++) { cum += v; if (cum >= tp) break; }
//
// leaves in cum, and how many times it added (j + 1 at the break, else n), in a few steps per binary order of
// magnitude of cum instead of n (top-p over thousands of ids tied at one probability).  The CPU test test_repeat_add
// checks it against the loop.
//
// Why it is exact: while cum lies in [2^E, 2^(E+1)) it is an integer multiple M of u = ulp(cum) = 2^(E-52), and
// v < 2^E.  Round-to-nearest of (M + v/u) u is (M + D) u with D = v/u rounded to the nearest integer, unless
// v/u's fraction is exactly 1/2 (then the tie goes to the even multiple, which depends on M: one plain add).  So the
// sum advances by the same D u per add until it would pass 2^(E+1); a sum that lands exactly on 2^(E+1) is still
// (M + D) u (the exact sum is then within u/2 of it, and 2u apart from its other neighbours).  D = 0 (v < u / 2)
// leaves cum where it is for every add.
#pragma once
#include <stdint.h>

#include <cmath>
#include <cstring>

#if defined(__CUDACC__)
#define LSW_TOPP_HD __host__ __device__ inline
#else
#define LSW_TOPP_HD inline
#endif

constexpr int kTopPBins = 32 * 64;

// emax: the biased exponent of the largest probability (its bits >> 52); p >= 0
LSW_TOPP_HD int lsw_topp_bin(double p, int emax) {
  uint64_t b;
  memcpy(&b, &p, 8);
  const int d = emax - (int)(b >> 52);
  return d < 32 ? (d << 6) | (63 - (int)((b >> 46) & 63)) : kTopPBins;
}

// v > 0 and cum >= 0 finite, n >= 0; returns the adds taken and leaves cum as the loop would (tp may be anything)
LSW_TOPP_HD long long lsw_repeat_add(double &cum, double v, long long n, double tp) {
  long long done = 0;
  while (done < n) {
    uint64_t bits;
    memcpy(&bits, &cum, 8);
    const int E = (int)((bits >> 52) & 0x7ff);  // biased exponent of cum (0: zero or subnormal)
    // the binade [lo, 2 lo) and its ulp; a batch needs a normal cum, v below lo, and room for 2 lo
    if (E >= 1 && E <= 2045) {
      const double lo = ldexp(1.0, E - 1023), u = ldexp(1.0, E - 1075);
      if (v < lo) {
        const double r = v / u;  // exact: a power-of-two scaling to below 2^52
        const double fl = floor(r);
        if (r - fl != 0.5) {
          const uint64_t D = (uint64_t)fl + (r - fl > 0.5 ? 1u : 0u);
          if (D == 0) {  // absorbed: cum never moves
            if (cum >= tp) return done + 1;
            return n;
          }
          const uint64_t M = (uint64_t)(cum / u), top = 1ull << 53;  // cum = M u, 2 lo = top u
          uint64_t k = (top - M) / D;                                 // adds that stay within [lo, 2 lo]
          bool reach = false;
          if (tp <= 2.0 * lo) {  // the first j with (M + j D) u >= tp: M + j D >= ceil(tp / u)
            const double T = ceil(tp / u);  // exact: tp / u <= 2^53
            const uint64_t Tc = T <= (double)M ? M + 1 : (uint64_t)T;
            const uint64_t jt = (Tc - M + D - 1) / D;
            if (jt <= k) {
              k = jt;
              reach = true;
            }
          }
          if ((long long)k > n - done) {
            k = (uint64_t)(n - done);
            reach = false;
          }
          if (k > 0) {
            cum = (double)(M + k * D) * u;  // exact: an integer up to 2^53 times a power of two
            done += (long long)k;
            if (reach) return done;
            continue;
          }
        }
      }
    }
    cum += v;  // one plain add (cum small, v not below it, a tie of roundings, or the binade's last step)
    done++;
    if (cum >= tp) return done;
  }
  return done;
}
