// lsw_repeat_add (src/topp.h: the samplers' top-p running sum over ids tied at one probability) against the plain
// loop it stands for, bit for bit (the count of adds and cum's bits): random values of many magnitudes, values that add
// exactly (sums landing on powers of two), values half an ulp of the sum apart (ties of roundings), values the sum
// absorbs, subnormals, a start at 0 or past tp.  And lsw_topp_bin's order and range.  Exit status 1 on any failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>

#include "../src/topp.h"

static long long loop_add(double &cum, double v, long long n, double tp) {
  long long j = 0;
  while (j < n) {
    cum += v;
    j++;
    if (cum >= tp) break;
  }
  return j;
}

int main() {
  std::mt19937_64 rng(20261206);
  auto unif = [&](double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); };
  constexpr int kCases = 30000, kBinPairs = 20000;
  int checks = 0, fails = 0;
  long long batched = 0;  // cases the batch form took in fewer steps than adds (so the test reaches it)
  for (int c = 0; c < kCases; c++) {
    const int kind = c % 6;
    double v, cum = 0, tp;
    long long n = c % 97 == 0 ? 0 : 1 + (long long)(rng() % (c % 3 == 0 ? 200000u : 5000u));
    switch (kind) {
      case 0:  // a probability of any size, from 0
        v = std::exp(unif(-40.0, -1.0));
        break;
      case 1:  // an exact binary fraction: sums land on powers of two exactly
        v = std::ldexp((double)(1 + rng() % 15), -(int)(4 + rng() % 40));
        cum = rng() % 2 ? 0.0 : std::ldexp((double)(rng() % 64), -6);
        break;
      case 2: {  // v / ulp(cum) = m + 1/2 where cum starts: the tie of roundings
        cum = unif(0.25, 0.5);
        const double u = std::ldexp(1.0, -54);  // ulp in [0.25, 0.5)
        v = ((double)(rng() % 4) + 0.5) * u;
        break;
      }
      case 3:  // absorbed: v below half an ulp of cum
        cum = unif(0.1, 0.9);
        v = std::ldexp(1.0, -(int)(56 + rng() % 30)) * unif(0.5, 1.0);
        break;
      case 4:  // subnormal values and sums
        v = std::ldexp(unif(0.5, 1.0), -1050 - (int)(rng() % 20));
        tp = 1e-300;
        break;
      default:  // random start, values near its size
        cum = unif(0.0, 0.9);
        v = cum * std::exp(unif(-30.0, 0.0));
        break;
    }
    if (kind != 4) {
      const int t = (int)(rng() % 4);
      tp = t == 0 ? 1.0 : t == 1 ? (double)(float)unif(0.05, 1.0) : t == 2 ? cum * 0.5 : cum + v * (double)(rng() % (n + 1));
    }
    double a = cum, b = cum;
    const long long ka = loop_add(a, v, n, tp), kb = lsw_repeat_add(b, v, n, tp);
    checks++;
    batched += ka > 64;
    if (ka != kb || std::memcmp(&a, &b, 8) != 0) {
      if (fails++ < 10)
        fprintf(stderr, "FAIL case %d (kind %d): cum0 %.17g v %.17g n %lld tp %.17g: loop %lld adds -> %.17g, "
                "lsw_repeat_add %lld -> %.17g\n", c, kind, cum, v, n, tp, ka, a, kb, b);
    }
  }
  // lsw_topp_bin: larger p, lower or equal bin; the largest in bin 0; 64 bins per binary order of magnitude over 32 of
  // them, kTopPBins below
  for (int c = 0; c < kBinPairs; c++) {
    const double pm = std::exp(unif(-20.0, 0.0));
    uint64_t pmb;
    std::memcpy(&pmb, &pm, 8);
    const int emax = (int)(pmb >> 52);
    const double a = pm * std::exp(unif(-30.0, 0.0)), b = pm * std::exp(unif(-30.0, 0.0));
    const int ba = lsw_topp_bin(a, emax), bb = lsw_topp_bin(b, emax), b0 = lsw_topp_bin(pm, emax);
    const double ratio = std::log2(pm / std::min(a, b));
    const bool ok = b0 < 64 && (a > b ? ba <= bb : a < b ? ba >= bb : ba == bb) && ba >= 0 && ba <= kTopPBins &&
                    bb >= 0 && bb <= kTopPBins && (ratio < 31.0 ? std::max(ba, bb) < kTopPBins : true) &&
                    (ratio > 33.0 ? std::max(ba, bb) == kTopPBins : true) && lsw_topp_bin(0.0, emax) == kTopPBins;
    checks++;
    if (!ok && fails++ < 10)
      fprintf(stderr, "FAIL lsw_topp_bin: pm %.17g a %.17g -> %d, b %.17g -> %d, pm -> %d\n", pm, a, ba, b, bb, b0);
  }
  if (batched < 5000) {
    fails++;
    fprintf(stderr, "FAIL only %lld cases ran more than 64 adds\n", batched);
  }
  printf("lsw_repeat_add: %d cases against the loop, %lld of more than 64 adds; lsw_topp_bin: %d pairs; %d checks, "
         "%d failed\n", kCases, batched, kBinPairs, checks, fails);
  return fails ? 1 : 0;
}
