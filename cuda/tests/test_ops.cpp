// C-level tests of the CPU backend through the C ABI: every op against an fp64 reference written here,
// the SGMM no-drift property, sampler properties, model-building errors and prefill/decode agreement.
// Fresh random inputs (never zeros); odd sizes; f32/f16/bf16.  Exit status 1 on any failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <thread>
#include <string>
#include <vector>
#include <unistd.h>

#include "lsw.h"

static int g_fail = 0, g_checks = 0;
#define CHECK(cond, ...)                                        \
  do {                                                          \
    g_checks++;                                                 \
    if (!(cond)) {                                              \
      g_fail++;                                                 \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);      \
      fprintf(stderr, __VA_ARGS__);                             \
      fprintf(stderr, "\n");                                    \
    }                                                           \
  } while (0)
#define OK(call) CHECK((call) == LSW_OK, "%s -> %s", #call, lsw_last_error())

static std::mt19937_64 rng(20261201);
static float urand(float a, float b) { return std::uniform_real_distribution<float>(a, b)(rng); }
static float nz(float s = 1.f) {  // random, never zero
  float v = urand(0.05f, 1.f) * s;
  return (rng() & 1) ? v : -v;
}

// ---- test-side dtype conversions (independent of the engine) ------------------------------------
static double h2d(uint16_t h) {
  int e = (h >> 10) & 31, m = h & 1023;
  double s = (h & 0x8000) ? -1 : 1;
  if (e == 0) return s * std::ldexp((double)m, -24);
  if (e == 31) return m ? NAN : s * INFINITY;
  return s * std::ldexp(1024.0 + m, e - 25);
}
static double b2d(uint16_t b) {
  uint32_t x = (uint32_t)b << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
static uint16_t d2h(double v) {  // round to nearest even via fp64 (test-side, independent of the engine)
  uint16_t sign = std::signbit(v) ? 0x8000 : 0;
  double a = std::fabs(v);
  int e;
  std::frexp(a, &e);                                          // a = f * 2^e, f in [0.5, 1)
  double ulp = std::ldexp(1.0, std::max(e - 11, -24));        // 11 significant bits, subnormal floor 2^-24
  double q = std::nearbyint(a / ulp) * ulp;
  if (q >= 65520.0) return sign | 0x7c00;
  if (q < std::ldexp(1.0, -14)) return sign | (uint16_t)(q / std::ldexp(1.0, -24));
  std::frexp(q, &e);
  int E = e - 1;                                              // q = 1.m * 2^E
  uint16_t m = (uint16_t)((q / std::ldexp(1.0, E) - 1.0) * 1024.0);
  return sign | (uint16_t)((E + 15) << 10) | m;
}
static uint16_t d2b(double v) {
  float f = (float)v;
  uint32_t x;
  std::memcpy(&x, &f, 4);
  x += 0x7fff + ((x >> 16) & 1);
  return (uint16_t)(x >> 16);
}

static double round_dt(int dtype, double v) {  // v rounded to dtype (nearest even), exact in fp64
  return dtype == LSW_DTYPE_F32 ? (double)(float)v : dtype == LSW_DTYPE_F16 ? h2d(d2h(v)) : b2d(d2b(v));
}

struct Buf {  // a weight tensor in some dtype plus its exact fp64 values
  int dtype;
  std::vector<uint8_t> raw;
  std::vector<double> val;
  Buf(int dt, size_t n, float scale = 1.f) : dtype(dt), raw(n * (dt == LSW_DTYPE_F32 ? 4 : 2)), val(n) {
    for (size_t i = 0; i < n; i++) set(i, nz(scale));
  }
  void set(size_t i, double v) {
    if (dtype == LSW_DTYPE_F32) {
      float f = (float)v;
      std::memcpy(&raw[i * 4], &f, 4);
      val[i] = f;
    } else if (dtype == LSW_DTYPE_F16) {
      uint16_t h = d2h(v);
      std::memcpy(&raw[i * 2], &h, 2);
      val[i] = h2d(h);
    } else {
      uint16_t h = d2b(v);
      std::memcpy(&raw[i * 2], &h, 2);
      val[i] = b2d(h);
    }
  }
  double get_raw(const void *p, size_t i) const {
    if (dtype == LSW_DTYPE_F32) return ((const float *)p)[i];
    uint16_t h;
    std::memcpy(&h, (const char *)p + i * 2, 2);
    return dtype == LSW_DTYPE_F16 ? h2d(h) : b2d(h);
  }
};
static std::vector<float> fvec(size_t n, float s = 1.f) {
  std::vector<float> v(n);
  for (auto &x : v) x = nz(s);
  return v;
}
static const int DTYPES[3] = {LSW_DTYPE_F32, LSW_DTYPE_F16, LSW_DTYPE_BF16};
static const char *DTN[3] = {"f32", "f16", "bf16"};

// |got - ref| <= rtol * mag + atol, mag = Σ|terms|
static bool close(double got, double ref, double mag, double rtol = 2e-6, double atol = 1e-6) {
  return std::fabs(got - ref) <= rtol * mag + atol;
}

// ---- ops -------------------------------------------------------------------------------------
static void test_matmul() {
  const int sizes[][3] = {{1, 1, 1}, {37, 83, 1}, {129, 200, 5}, {64, 576, 1}, {300, 97, 7},
                          {517, 333, 3}, {1000, 64, 1}, {33, 1031, 9}, {96, 48, 66}};
  for (int d = 0; d < 3; d++)
    for (auto &s : sizes) {
      int rows = s[0], cols = s[1], n = s[2];
      Buf W(DTYPES[d], (size_t)rows * cols);
      auto X = fvec((size_t)n * cols);
      std::vector<float> Y((size_t)n * rows, NAN);
      OK(lsw_op_matmul(LSW_BACKEND_CPU, DTYPES[d], rows, cols, n, W.raw.data(), X.data(), Y.data()));
      int bad = 0;
      for (int t = 0; t < n; t++)
        for (int r = 0; r < rows; r++) {
          double ref = 0, mag = 0;
          for (int c = 0; c < cols; c++) {
            double p = W.val[(size_t)r * cols + c] * X[(size_t)t * cols + c];
            ref += p;
            mag += std::fabs(p);
          }
          if (!close(Y[(size_t)t * rows + r], ref, mag)) bad++;
        }
      CHECK(bad == 0, "matmul %s rows=%d cols=%d n=%d: %d wrong outputs", DTN[d], rows, cols, n, bad);
    }
}

static void test_rmsnorm() {
  const int sizes[][2] = {{1, 37}, {3, 576}, {5, 1}, {2, 1000}};
  for (auto &s : sizes) {
    int n = s[0], dim = s[1];
    auto X = fvec((size_t)n * dim, 3.f), w = fvec(dim);
    std::vector<float> Y((size_t)n * dim);
    float eps = 1e-5f;
    OK(lsw_op_rmsnorm(LSW_BACKEND_CPU, n, dim, X.data(), w.data(), eps, Y.data()));
    int bad = 0;
    for (int t = 0; t < n; t++) {
      double ss = 0;
      for (int i = 0; i < dim; i++) ss += (double)X[t * dim + i] * X[t * dim + i];
      double r = 1.0 / std::sqrt(ss / dim + eps);
      for (int i = 0; i < dim; i++) {
        double ref = X[t * dim + i] * r * w[i];
        if (!close(Y[t * dim + i], ref, std::fabs(ref), 1e-5)) bad++;
      }
    }
    CHECK(bad == 0, "rmsnorm n=%d dim=%d: %d wrong", n, dim, bad);
  }
}

static std::vector<double> ref_inv_freq(const lsw_model_config &c) {
  int hd = c.head_dim;
  std::vector<double> f(hd / 2);
  for (int i = 0; i < hd / 2; i++) {
    double x = 1.0 / std::pow((double)c.rope_theta, 2.0 * i / hd);
    if (c.rope_type == LSW_ROPE_LINEAR) x /= c.rope_factor;
    if (c.rope_type == LSW_ROPE_LLAMA3) {
      double wl = 2 * M_PI / x, old = c.rope_original_max_position;
      double lo_wl = old / c.rope_low_freq_factor, hi_wl = old / c.rope_high_freq_factor;
      if (wl > lo_wl) x = x / c.rope_factor;
      else if (wl >= hi_wl) {
        double sm = (old / wl - c.rope_low_freq_factor) / (c.rope_high_freq_factor - c.rope_low_freq_factor);
        x = (1 - sm) * x / c.rope_factor + sm * x;
      }
    }
    f[i] = x;
  }
  return f;
}

static void test_rope() {
  for (int type = 0; type < 3; type++)
    for (int hd : {64, 6, 128}) {
      lsw_model_config c{};
      c.head_dim = hd;
      c.rope_theta = type == 2 ? 500000.f : 10000.f;
      c.rope_type = type;
      c.rope_factor = type == 1 ? 4.f : 8.f;
      c.rope_low_freq_factor = 1.f;
      c.rope_high_freq_factor = 4.f;
      c.rope_original_max_position = 8192;
      const int n = 5, nh = 3;
      int32_t pos[n] = {0, 1, 17, 1000, 8191};
      auto X = fvec((size_t)n * nh * hd);
      auto Y = X;
      OK(lsw_op_rope(LSW_BACKEND_CPU, &c, n, nh, pos, Y.data()));
      auto inv = ref_inv_freq(c);
      int bad = 0;
      for (int t = 0; t < n; t++)
        for (int h = 0; h < nh; h++)
          for (int i = 0; i < hd / 2; i++) {
            const float *x = &X[((size_t)t * nh + h) * hd];
            const float *y = &Y[((size_t)t * nh + h) * hd];
            double a = pos[t] * inv[i], cs = std::cos(a), sn = std::sin(a);
            double r0 = x[i] * cs - x[i + hd / 2] * sn, r1 = x[i + hd / 2] * cs + x[i] * sn;
            if (!close(y[i], r0, 2, 1e-6) || !close(y[i + hd / 2], r1, 2, 1e-6)) bad++;
          }
      CHECK(bad == 0, "rope type=%d hd=%d: %d wrong", type, hd, bad);
      // changing the type must change the result for long wavelengths (the scaling is really applied)
      if (type) {
        auto Z = X;
        lsw_model_config c0 = c;
        c0.rope_type = 0;
        OK(lsw_op_rope(LSW_BACKEND_CPU, &c0, n, nh, pos, Z.data()));
        CHECK(Z != Y, "rope type=%d gives the same result as unscaled rope", type);
      }
    }
}

static void test_attention() {
  // n = 1 takes the decode path (chunks of positions, partials merged per head): contexts over one and many chunks, head
  // dims with SIMD tails, 1..8 query heads per KV group.  n > 1 the prompt path, in blocks of up to 32 queries: one
  // block, several (n = 70: 32 + 32 + 6, from an empty cache), a one-query last block (n = 33 after 67 positions).
  const int cfgs[][5] = {{1, 7, 6, 2, 16}, {5, 5, 4, 4, 8}, {3, 11, 6, 3, 9}, {1, 1, 2, 1, 4}, {16, 40, 9, 3, 64},
                         {1, 160, 9, 3, 64}, {1, 33, 6, 3, 9}, {1, 700, 8, 1, 80}, {1, 1029, 4, 4, 128},
                         {1, 65, 5, 1, 17}, {70, 70, 4, 2, 24}, {33, 100, 6, 3, 64}, {100, 300, 8, 8, 17}};
  for (auto &s : cfgs) {
    int n = s[0], nctx = s[1], nh = s[2], nkv = s[3], hd = s[4];
    auto Q = fvec((size_t)n * nh * hd), K = fvec((size_t)nctx * nkv * hd), V = fvec((size_t)nctx * nkv * hd);
    std::vector<float> O((size_t)n * nh * hd, NAN);
    OK(lsw_op_attention(LSW_BACKEND_CPU, LSW_DTYPE_F32, n, nctx, nh, nkv, hd, Q.data(), K.data(), V.data(), O.data()));
    int bad = 0;
    for (int t = 0; t < n; t++)
      for (int h = 0; h < nh; h++) {
        int g = h / (nh / nkv), last = nctx - n + t;
        std::vector<double> sc(last + 1);
        double mx = -INFINITY, sum = 0;
        for (int j = 0; j <= last; j++) {
          double d = 0;
          for (int i = 0; i < hd; i++) d += (double)Q[(t * nh + h) * hd + i] * K[(j * nkv + g) * hd + i];
          sc[j] = d / std::sqrt((double)hd);
          mx = std::max(mx, sc[j]);
        }
        for (auto &v : sc) sum += (v = std::exp(v - mx));
        for (int i = 0; i < hd; i++) {
          double o = 0;
          for (int j = 0; j <= last; j++) o += sc[j] / sum * V[(j * nkv + g) * hd + i];
          if (!close(O[(t * nh + h) * hd + i], o, 1, 1e-5)) bad++;
        }
      }
    CHECK(bad == 0, "attention n=%d nctx=%d nh=%d nkv=%d hd=%d: %d wrong", n, nctx, nh, nkv, hd, bad);
  }
}

// An F16 / BF16 KV cache (kv_dtype): the result is bit for bit the F32 attention over the same values widened (the
// contract: rounded once when stored, fp32 arithmetic), on the decode path (n = 1: per-chunk widening) and the prompt
// path (n > 1: widened once per KV head), and matches the fp64 attention over the rounded values.  Unknown kv_dtype
// values are refused.
static void test_attention_kv() {
  const int cfgs[][5] = {{1, 7, 6, 2, 16}, {1, 1029, 4, 4, 128}, {1, 161, 8, 2, 64}, {1, 33, 6, 3, 9}, {1, 700, 8, 1, 80},
                         {5, 37, 4, 4, 8},  {16, 41, 9, 3, 64},  {3, 11, 6, 3, 9},   {7, 301, 8, 2, 32},
                         {40, 90, 6, 2, 32}};
  for (int dt : {LSW_DTYPE_F16, LSW_DTYPE_BF16})
    for (auto &s : cfgs) {
      const int n = s[0], nctx = s[1], nh = s[2], nkv = s[3], hd = s[4];
      const size_t nkvv = (size_t)nctx * nkv * hd;
      auto Q = fvec((size_t)n * nh * hd);
      Buf K(dt, nkvv, 2.f), V(dt, nkvv, 2.f);
      std::vector<float> Kf(nkvv), Vf(nkvv);  // the same values in fp32 (exact)
      for (size_t i = 0; i < nkvv; i++) Kf[i] = (float)K.val[i], Vf[i] = (float)V.val[i];
      std::vector<float> O((size_t)n * nh * hd, NAN), O32((size_t)n * nh * hd, NAN);
      OK(lsw_op_attention(LSW_BACKEND_CPU, dt, n, nctx, nh, nkv, hd, Q.data(), K.raw.data(), V.raw.data(), O.data()));
      OK(lsw_op_attention(LSW_BACKEND_CPU, LSW_DTYPE_F32, n, nctx, nh, nkv, hd, Q.data(), Kf.data(), Vf.data(), O32.data()));
      CHECK(std::memcmp(O.data(), O32.data(), O.size() * sizeof(float)) == 0,
            "attention %s n=%d nctx=%d nh=%d nkv=%d hd=%d: not bit-identical to F32 over the widened values", DTN[dt], n,
            nctx, nh, nkv, hd);
      int bad = 0;
      for (int t = 0; t < n; t++)
        for (int h = 0; h < nh; h++) {
          const int g = h / (nh / nkv), last = nctx - n + t;
          std::vector<double> sc(last + 1);
          double mx = -INFINITY, sum = 0;
          for (int j = 0; j <= last; j++) {
            double d = 0;
            for (int i = 0; i < hd; i++) d += (double)Q[(t * nh + h) * hd + i] * K.val[((size_t)j * nkv + g) * hd + i];
            sc[j] = d / std::sqrt((double)hd);
            mx = std::max(mx, sc[j]);
          }
          for (auto &v : sc) sum += (v = std::exp(v - mx));
          for (int i = 0; i < hd; i++) {
            double o = 0, mag = 0;
            for (int j = 0; j <= last; j++) {
              o += sc[j] / sum * V.val[((size_t)j * nkv + g) * hd + i];
              mag += sc[j] / sum * std::fabs(V.val[((size_t)j * nkv + g) * hd + i]);
            }
            if (!close(O[(t * nh + h) * hd + i], o, mag, 1e-5)) bad++;
          }
        }
      CHECK(bad == 0, "attention %s n=%d nctx=%d nh=%d nkv=%d hd=%d: %d wrong vs fp64", DTN[dt], n, nctx, nh, nkv, hd, bad);
    }
  float x = 1.f, y;
  for (int bad : {3, -1})
    CHECK(lsw_op_attention(LSW_BACKEND_CPU, bad, 1, 1, 1, 1, 2, &x, &x, &x, &y) == LSW_E_INVALID_ARGUMENT &&
              strstr(lsw_last_error(), "kv_dtype"),
          "attention kv_dtype %d accepted: %s", bad, lsw_last_error());
}

static void test_swiglu() {
  for (int inter : {1, 37, 1536}) {
    int n = 3;
    auto GU = fvec((size_t)n * 2 * inter, 4.f);
    std::vector<float> O((size_t)n * inter);
    OK(lsw_op_swiglu(LSW_BACKEND_CPU, n, inter, GU.data(), O.data()));
    int bad = 0;
    for (int t = 0; t < n; t++)
      for (int i = 0; i < inter; i++) {
        double g = GU[t * 2 * inter + i], u = GU[t * 2 * inter + inter + i];
        double ref = g / (1 + std::exp(-g)) * u;
        if (!close(O[t * inter + i], ref, std::fabs(ref), 1e-5)) bad++;
      }
    CHECK(bad == 0, "swiglu inter=%d: %d wrong", inter, bad);
  }
  // the vectorised exp's range ends: e^-g overflowing, underflowing through the subnormals, around +-88, NaN.  Below
  // g = -88.72 e^-g overflows in fp32 on every path (the result, |g u| / e^-g < 1e-36, becomes -0): atol 1e-36.
  {
    const float gs[] = {-110.f, -104.5f, -100.f, -89.f, -88.5f, -87.5f, -87.f, -20.f, -1e-3f, 0.f, 1e-30f, 2.5f,
                        20.f, 87.f, 87.5f, 88.5f, 89.f, 100.f, 104.5f, 110.f, -3.f, 0.75f, 0.f, 0.f};
    const int ni = (int)(sizeof gs / sizeof gs[0]);
    std::vector<float> GU(2 * ni), O(ni);
    for (int i = 0; i < ni; i++) GU[i] = gs[i], GU[ni + i] = nz(2.f);
    GU[ni - 2] = NAN;
    OK(lsw_op_swiglu(LSW_BACKEND_CPU, 1, ni, GU.data(), O.data()));
    int bad = 0;
    for (int i = 0; i < ni; i++) {
      const double g = GU[i], u = GU[ni + i], ref = g / (1 + std::exp(-g)) * u;
      if (std::isnan(g) ? !std::isnan(O[i]) : !close(O[i], ref, std::fabs(ref), 1e-5, 1e-36)) bad++;
    }
    CHECK(bad == 0, "swiglu at the ends of exp's range: %d wrong", bad);
  }
}

static double ulp_of(int dtype, double v) {
  int e;
  std::frexp(std::fabs(v), &e);
  int mant = dtype == LSW_DTYPE_F32 ? 24 : dtype == LSW_DTYPE_F16 ? 11 : 8;
  double u = std::ldexp(1.0, e - mant);
  if (dtype == LSW_DTYPE_F16) u = std::max(u, std::ldexp(1.0, -24));
  return u;
}

static void test_sgmm() {
  for (int d = 0; d < 3; d++) {
    const int nm = 3, rows = 37, cols = 53, rank = 5, topk = 2;
    const int dt = DTYPES[d];
    Buf W0(dt, (size_t)nm * rows * cols), A(dt, (size_t)nm * topk * rank * cols, 0.3f),
        B(dt, (size_t)nm * topk * rows * rank, 0.3f);
    std::vector<float> g = {0.7f, 0.3f};
    Buf W(dt, (size_t)nm * rows * cols), W2(dt, (size_t)nm * rows * cols);
    OK(lsw_op_sgmm(LSW_BACKEND_CPU, dt, nm, rows, cols, rank, topk, W0.raw.data(), W.raw.data(), A.raw.data(),
                   B.raw.data(), g.data()));
    OK(lsw_op_sgmm(LSW_BACKEND_CPU, dt, nm, rows, cols, rank, topk, W0.raw.data(), W2.raw.data(), A.raw.data(),
                   B.raw.data(), g.data()));
    CHECK(W.raw == W2.raw, "sgmm %s not deterministic", DTN[d]);
    int bad = 0;
    for (int m = 0; m < nm; m++)
      for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
          double ref = W0.val[((size_t)m * rows + i) * cols + j];
          for (int k = 0; k < topk; k++)
            for (int r = 0; r < rank; r++)
              ref += (double)g[k] * B.val[(((size_t)m * topk + k) * rows + i) * rank + r] *
                     A.val[(((size_t)m * topk + k) * rank + r) * cols + j];
          double got = W.get_raw(W.raw.data(), ((size_t)m * rows + i) * cols + j);
          // one rounding to dtype (half an ulp) plus fp32 accumulation error
          if (std::fabs(got - ref) > 0.5 * ulp_of(dt, ref) + 1e-5 * (1 + std::fabs(ref))) bad++;
        }
    CHECK(bad == 0, "sgmm %s: %d wrong", DTN[d], bad);
  }
}

// The SGMM's exact arithmetic (docs/FORMAT.md): acc = W0 in fp32, then c = fl(g_k · B[i][r]) and acc = fmaf(c, A[r][j],
// acc) for k, r in order, W = acc rounded once to the dtype (test-side rounding).  Bit for bit, in shapes around the
// kernel's blocks (4 rows; 16 / 32 / 64 columns per register block, tails of 1..15 columns and 1..3 rows) and with
// the coefficients' signs and magnitudes spread, so a reordered chain or a wrong rounding would show.
static void test_sgmm_exact() {
  const int shapes[][4] = {{1, 1, 1, 1}, {3, 7, 2, 1}, {4, 16, 3, 2}, {5, 33, 4, 3}, {9, 64, 16, 2}, {13, 81, 5, 2},
                           {8, 130, 8, 1}, {21, 200, 16, 3}, {6, 1024, 4, 2}};
  for (int d = 0; d < 3; d++) {
    const int dt = DTYPES[d];
    for (auto &sh : shapes) {
      const int rows = sh[0], cols = sh[1], rank = sh[2], topk = sh[3], nm = 2;
      Buf W0(dt, (size_t)nm * rows * cols), A(dt, (size_t)nm * topk * rank * cols, 0.5f),
          B(dt, (size_t)nm * topk * rows * rank, 0.5f);
      std::vector<float> g(topk);
      for (auto &x : g) x = nz(1.3f);
      Buf W(dt, (size_t)nm * rows * cols);
      OK(lsw_op_sgmm(LSW_BACKEND_CPU, dt, nm, rows, cols, rank, topk, W0.raw.data(), W.raw.data(), A.raw.data(),
                     B.raw.data(), g.data()));
      int bad = 0;
      for (int m = 0; m < nm; m++)
        for (int i = 0; i < rows; i++)
          for (int j = 0; j < cols; j++) {
            float acc = (float)W0.val[((size_t)m * rows + i) * cols + j];
            for (int k = 0; k < topk; k++)
              for (int r = 0; r < rank; r++) {
                const float c = g[k] * (float)B.val[(((size_t)m * topk + k) * rows + i) * rank + r];
                acc = std::fma(c, (float)A.val[(((size_t)m * topk + k) * rank + r) * cols + j], acc);
              }
            const double want = round_dt(dt, acc), got = W.get_raw(W.raw.data(), ((size_t)m * rows + i) * cols + j);
            if (!(want == got)) bad++;
          }
      CHECK(bad == 0, "sgmm %s %dx%d rank %d top-%d: %d elements differ from the reference arithmetic", DTN[d], rows,
            cols, rank, topk, bad);
    }
  }
}

// 10,000 switches: merge random expert sets (random gates) and unmerge; W must return to W0 bit for bit,
// and any merged state must equal a fresh merge of the same set (path independence).
static void test_sgmm_no_drift() {
  for (int dt : {LSW_DTYPE_F16, LSW_DTYPE_BF16}) {
    const int nm = 2, rows = 19, cols = 23, rank = 4, E = 6, topk = 2;
    Buf W0(dt, (size_t)nm * rows * cols), AE(dt, (size_t)nm * E * rank * cols, 0.3f),
        BE(dt, (size_t)nm * E * rows * rank, 0.3f);
    std::vector<uint8_t> W = W0.raw, Wf(W0.raw.size());
    const size_t es = dt == LSW_DTYPE_F32 ? 4 : 2;
    std::vector<uint8_t> A((size_t)nm * topk * rank * cols * es), B((size_t)nm * topk * rows * rank * es);
    int mismatch = 0;
    // negative control: the naive in-place merge/unmerge (W += delta; W -= delta, rounding each time) drifts
    std::vector<float> naive(W0.val.begin(), W0.val.end());
    for (int it = 0; it < 10000; it++) {
      int e0 = rng() % E, e1 = (e0 + 1 + rng() % (E - 1)) % E;
      int ex[2] = {e0, e1};
      float g0 = urand(0.05f, 0.95f);
      float gates[2] = {g0, 1 - g0};
      for (int m = 0; m < nm; m++)
        for (int k = 0; k < topk; k++) {
          std::memcpy(&A[(((size_t)m * topk + k) * rank * cols) * es], &AE.raw[(((size_t)m * E + ex[k]) * rank * cols) * es],
                      (size_t)rank * cols * es);
          std::memcpy(&B[(((size_t)m * topk + k) * rows * rank) * es], &BE.raw[(((size_t)m * E + ex[k]) * rows * rank) * es],
                      (size_t)rows * rank * es);
        }
      OK(lsw_op_sgmm(LSW_BACKEND_CPU, dt, nm, rows, cols, rank, topk, W0.raw.data(), W.data(), A.data(), B.data(),
                     gates));
      if (it % 997 == 0) {
        OK(lsw_op_sgmm(LSW_BACKEND_CPU, dt, nm, rows, cols, rank, topk, W0.raw.data(), Wf.data(), A.data(),
                       B.data(), gates));
        if (Wf != W) mismatch++;
      }
      // unmerge: back to the pristine weights (merging the empty set)
      OK(lsw_op_sgmm(LSW_BACKEND_CPU, dt, nm, rows, cols, rank, 0, W0.raw.data(), W.data(), nullptr, nullptr,
                     nullptr));
      if (it < 200) {  // negative control, a few hundred switches are enough to drift
        for (int m = 0; m < nm; m++)
          for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) {
              double dlt = 0;
              for (int k = 0; k < topk; k++)
                for (int r = 0; r < rank; r++)
                  dlt += gates[k] * BE.val[(((size_t)m * E + ex[k]) * rows + i) * rank + r] *
                         AE.val[(((size_t)m * E + ex[k]) * rank + r) * cols + j];
              size_t idx = ((size_t)m * rows + i) * cols + j;
              Buf tmp(dt, 1);
              tmp.set(0, naive[idx] + dlt);
              tmp.set(0, tmp.val[0] - dlt);
              naive[idx] = (float)tmp.val[0];
            }
      }
    }
    CHECK(W == W0.raw, "sgmm %s: weights drifted after 10,000 merge/unmerge switches", DTN[dt]);
    CHECK(mismatch == 0, "sgmm %s: merged state depends on history (%d mismatches)", DTN[dt], mismatch);
    int drifted = 0;
    for (size_t i = 0; i < naive.size(); i++) drifted += naive[i] != (float)W0.val[i];
    CHECK(drifted > 0, "negative control: naive in-place merging did not drift (the test would not see drift)");
  }
}

static void test_lora_fused() {
  for (int d = 0; d < 3; d++) {
    const int rows = 37, cols = 83, rank = 7, topk = 3, dt = DTYPES[d];
    Buf W(dt, (size_t)rows * cols), A(dt, (size_t)topk * rank * cols, 0.5f), B(dt, (size_t)topk * rows * rank, 0.5f);
    auto x = fvec(cols);
    std::vector<float> g = {0.5f, 0.3f, 0.2f}, Y(rows, NAN);
    OK(lsw_op_lora_fused(LSW_BACKEND_CPU, dt, rows, cols, rank, topk, W.raw.data(), A.raw.data(), B.raw.data(),
                         g.data(), x.data(), Y.data()));
    int bad = 0;
    std::vector<double> ax((size_t)topk * rank);
    for (int k = 0; k < topk; k++)
      for (int r = 0; r < rank; r++) {
        double s = 0;
        for (int c = 0; c < cols; c++) s += A.val[((size_t)k * rank + r) * cols + c] * x[c];
        ax[k * rank + r] = s;
      }
    for (int i = 0; i < rows; i++) {
      double ref = 0, mag = 0;
      for (int c = 0; c < cols; c++) ref += W.val[(size_t)i * cols + c] * x[c], mag += std::fabs(W.val[(size_t)i * cols + c] * x[c]);
      for (int k = 0; k < topk; k++)
        for (int r = 0; r < rank; r++) {
          double p = g[k] * B.val[((size_t)k * rows + i) * rank + r] * ax[k * rank + r];
          ref += p;
          mag += std::fabs(p);
        }
      if (!close(Y[i], ref, mag, 5e-6)) bad++;
    }
    CHECK(bad == 0, "lora_fused %s: %d wrong", DTN[d], bad);
  }
}

static void test_route() {
  for (int d = 0; d < 3; d++) {
    const int E = 8, dim = 37, dt = DTYPES[d];
    for (int topk : {1, 3, 8}) {
      Buf R(dt, (size_t)E * dim);
      auto x = fvec(dim);
      std::vector<int32_t> ex(topk);
      std::vector<float> g(topk);
      OK(lsw_op_route(LSW_BACKEND_CPU, dt, E, dim, topk, R.raw.data(), x.data(), ex.data(), g.data()));
      std::vector<double> l(E);
      for (int e = 0; e < E; e++)
        for (int c = 0; c < dim; c++) l[e] += R.val[(size_t)e * dim + c] * x[c];
      std::vector<int> order(E);
      for (int e = 0; e < E; e++) order[e] = e;
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
      double mx = *std::max_element(l.begin(), l.end()), sum = 0, ks = 0;
      for (int e = 0; e < E; e++) sum += std::exp(l[e] - mx);
      for (int k = 0; k < topk; k++) ks += std::exp(l[order[k]] - mx) / sum;
      int bad = 0;
      for (int k = 0; k < topk; k++) {
        if (ex[k] != order[k]) bad++;
        double ref = std::exp(l[order[k]] - mx) / sum / ks;
        if (!close(g[k], ref, ref, 1e-5)) bad++;
      }
      CHECK(bad == 0, "route %s top_k=%d: %d wrong", DTN[d], topk, bad);
    }
  }
  // ties: experts 5 and 2 have identical rows and the largest logits -> [2, 5]
  const int E = 6, dim = 5;
  std::vector<float> R(E * dim), x = {1, 2, 3, 4, 5};
  for (int e = 0; e < E; e++)
    for (int c = 0; c < dim; c++) R[e * dim + c] = (e == 2 || e == 5) ? 1.f : -0.1f * (e + 1);
  int32_t ex[2];
  float g[2];
  OK(lsw_op_route(LSW_BACKEND_CPU, LSW_DTYPE_F32, E, dim, 2, R.data(), x.data(), ex, g));
  CHECK(ex[0] == 2 && ex[1] == 5 && std::fabs(g[0] - 0.5f) < 1e-6, "route ties: got [%d, %d] gates %g", ex[0], ex[1],
        g[0]);
}

// ---- sampler ------------------------------------------------------------------------------------
static int32_t samp(const std::vector<float> &l, float temp, int topk, float topp, float minp, uint64_t seed,
                    uint64_t step) {
  lsw_sampler_params p{temp, topk, topp, minp, seed};
  int32_t tok = -1;
  OK(lsw_op_sample(LSW_BACKEND_CPU, (int32_t)l.size(), l.data(), &p, step, &tok));
  return tok;
}

static void test_sampler() {
  const int V = 1001;
  auto l = fvec(V, 5.f);
  int am = (int)(std::max_element(l.begin(), l.end()) - l.begin());
  CHECK(samp(l, 0.f, 0, 1.f, 0.f, 1, 0) == am, "greedy != argmax");
  // ties: lowest id
  auto lt = l;
  lt[am] = 100.f;
  lt[7] = 100.f;
  CHECK(samp(lt, 0.f, 0, 1.f, 0.f, 1, 0) == std::min(am, 7), "greedy tie: not the lowest id");
  int bad = 0;
  for (int s = 0; s < 50; s++)
    if (samp(l, urand(0.1f, 10.f), 1, 1.f, 0.f, rng(), s) != am) bad++;
  CHECK(bad == 0, "top_k=1 differs from argmax %d times", bad);
  // determinism and dependence on (seed, step)
  std::vector<int> seen;
  bad = 0;
  for (int s = 0; s < 100; s++) {
    int a = samp(l, 3.f, 0, 1.f, 0.f, 42, s), b = samp(l, 3.f, 0, 1.f, 0.f, 42, s);
    if (a != b) bad++;
    seen.push_back(a);
  }
  std::sort(seen.begin(), seen.end());
  CHECK(bad == 0, "same seed+step gave different tokens %d times", bad);
  CHECK(std::unique(seen.begin(), seen.end()) - seen.begin() > 10, "sampling at temperature 3 is not random");
  // distribution on 4 tokens at temperature 1: frequencies match softmax
  std::vector<float> s4 = {0.3f, -1.2f, 1.1f, 0.4f};
  std::vector<int> cnt(4);
  const int N = 20000;
  for (int i = 0; i < N; i++) cnt[samp(s4, 1.f, 0, 1.f, 0.f, 7, i)]++;
  double z = 0;
  for (float v : s4) z += std::exp(v);
  bad = 0;
  for (int i = 0; i < 4; i++)
    if (std::fabs(cnt[i] / (double)N - std::exp(s4[i]) / z) > 0.015) bad++;
  CHECK(bad == 0, "sample frequencies differ from softmax");
  // top-k 2 -> only the two largest; top-p; min-p
  std::vector<float> lp = {std::log(0.15f), std::log(0.5f), std::log(0.05f), std::log(0.3f)};
  bad = 0;
  for (int i = 0; i < 2000; i++) {
    int a = samp(lp, 1.f, 2, 1.f, 0.f, 9, i);
    int b = samp(lp, 1.f, 0, 0.7f, 0.f, 9, i);   // nucleus {1, 3} (0.5 + 0.3 >= 0.7)
    int c = samp(lp, 1.f, 0, 1.f, 0.4f, 9, i);   // p >= 0.2 -> {1, 3}
    int e = samp(lp, 1.f, 0, 0.5f, 0.f, 9, i);   // 0.5 >= 0.5 -> {1}
    if ((a != 1 && a != 3) || (b != 1 && b != 3) || (c != 1 && c != 3) || e != 1) bad++;
  }
  CHECK(bad == 0, "top-k / top-p / min-p kept the wrong candidates %d times", bad);
  cnt.assign(4, 0);
  for (int i = 0; i < N; i++) cnt[samp(lp, 1.f, 0, 0.7f, 0.f, 11, i)]++;
  CHECK(std::fabs(cnt[1] / (double)N - 0.625) < 0.015, "top-p does not renormalise (p1 = %g)", cnt[1] / (double)N);
  // bad parameters are rejected
  lsw_sampler_params p{-1.f, 0, 1.f, 0.f, 0};
  int32_t tok;
  CHECK(lsw_op_sample(LSW_BACKEND_CPU, 4, s4.data(), &p, 0, &tok) == LSW_E_INVALID_ARGUMENT, "negative temperature accepted");
  // non-finite logits (NaN, +inf, -inf at a random id) are refused, greedy or not, with a message that counts them
  // and names the first; the token is left alone
  const float nonfinite[3] = {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY};
  const lsw_sampler_params nps[2] = {{0.f, 0, 1.f, 0.f, 1}, {0.8f, 40, 0.9f, 0.05f, 2}};
  for (int b = 0; b < 3; b++)
    for (const auto &np : nps) {
      std::vector<float> l(1000);
      for (auto &x : l) x = nz(4.f);
      const int at = (int)(rng() % l.size());
      l[at] = nonfinite[b];
      int32_t t = -7;
      const lsw_status st = lsw_op_sample(LSW_BACKEND_CPU, (int32_t)l.size(), l.data(), &np, 0, &t);
      char want[64];
      snprintf(want, sizeof want, "1 of 1000 logits are not finite (NaN or infinity; the first at token id %d", at);
      CHECK(st == LSW_E_NUMERIC && t == -7 && strstr(lsw_last_error(), want),
            "logit %g at %d (T %g): status %d, token %d, %s", l[at], at, np.temperature, (int)st, t, lsw_last_error());
    }
}

// The sampling algorithm of docs/FORMAT.md ("Sampling") written the plain way: every sort a full sort, every sum in
// the order the spec gives.  lsw::sample takes shortcuts (a heap for top-k up to 1,024 and for the 64 most likely,
// top-p by bins over large candidate sets, ids tied at one p summed at once); its draw must equal this one's.
static uint64_t ref_mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double ref_u(uint64_t seed, uint64_t step) {
  return (double)(ref_mix(seed ^ ref_mix(step)) >> 11) * (1.0 / 9007199254740992.0);
}
static int32_t ref_sample(const std::vector<float> &l, const lsw_sampler_params &sp, uint64_t step, int64_t *n_nucleus) {
  const int64_t V = (int64_t)l.size();
  std::vector<int32_t> ids((size_t)V);
  for (int64_t i = 0; i < V; i++) ids[(size_t)i] = (int32_t)i;
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  if (!(sp.temperature > 0.f) || sp.top_k == 1) return ids[0];
  if (sp.top_k > 0 && sp.top_k < V) ids.resize((size_t)sp.top_k);
  std::sort(ids.begin(), ids.end());
  std::vector<double> p((size_t)V, 0.0);
  const double T = sp.temperature;
  double mx = -INFINITY, sum = 0;
  for (int32_t i : ids) mx = std::max(mx, (double)l[i] / T);
  for (int32_t i : ids) sum += (p[i] = std::exp((double)l[i] / T - mx));
  for (int32_t i : ids) p[i] /= sum;
  if (sp.top_p < 1.f) {
    std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    double cum = 0;
    size_t j = 0;
    for (; j < ids.size(); j++) {
      cum += p[ids[j]];
      if (cum >= (double)sp.top_p) break;
    }
    ids.resize(std::min(j + 1, ids.size()));
    std::sort(ids.begin(), ids.end());
  }
  *n_nucleus = (int64_t)ids.size();
  if (sp.min_p > 0.f) {
    double pm = 0;
    for (int32_t i : ids) pm = std::max(pm, p[i]);
    std::vector<int32_t> kept;
    for (int32_t i : ids)
      if (p[i] >= (double)sp.min_p * pm) kept.push_back(i);
    ids = kept;
  }
  double total = 0;
  for (int32_t i : ids) total += p[i];
  const double target = ref_u(sp.seed, step) * total;
  double cum = 0;
  for (int32_t i : ids) {
    cum += p[i];
    if (cum > target) return i;
  }
  return ids.back();
}

// lsw_op_sample against ref_sample on logits that reach every shortcut and its edges: random, peaked (a nucleus of tens
// of ids), 13 levels (thousands of ids tied at each p), all equal, 300 ids tied where top-k cuts, and half the ids
// far below (p underflows to 0, below the bins); top-k 0 / 40 / 1,024 / 1,025 / 5,000, top-p from 0.3 to 1, min-p.
// Random steps, and steps whose u lies within 1 / (2 V) of 1, where one id more or less in the nucleus changes the draw
static void test_sampler_reference() {
  int bad = 0, n = 0, edge = 0;
  const float temps[] = {0.5f, 0.8f, 1.f, 1.5f};
  const int topks[] = {0, 0, 40, 1024, 1025, 5000};
  const float topps[] = {0.3f, 0.9f, 0.95f, 0.99f, 1.f};
  for (int V : {7, 100, 1000, 1100, 5000, 40000, 151936}) {
    const int kinds = 6, combos = V > 100000 ? 3 : V > 10000 ? 8 : 14;
    for (int kind = 0; kind < kinds; kind++) {
      std::vector<float> l = fvec((size_t)V, 3.f);
      if (kind == 1)
        for (int i = 0; i < 40 && i < V; i++) l[(size_t)(rng() % (uint64_t)V)] = 11.f + 0.05f * (float)(i % 20);
      if (kind == 2)
        for (auto &x : l) x = std::round(2.f * x) * 0.5f;
      if (kind == 3) l.assign((size_t)V, 0.625f);
      if (kind == 4)
        for (int i = 0; i < 300 && i < V; i++) l[(size_t)(rng() % (uint64_t)V)] = 2.5f;
      if (kind == 5)
        for (int i = 0; i < V; i += 2) l[(size_t)i] = -900.f + (float)(rng() % 7);
      for (int c = 0; c < combos; c++) {
        lsw_sampler_params sp{temps[rng() % 4], topks[rng() % 6], topps[rng() % 5], rng() % 3 == 0 ? 0.05f : 0.f,
                              rng()};
        std::vector<uint64_t> steps;
        for (int s = 0; s < (V > 100000 ? 2 : 4); s++) steps.push_back(rng() % 1000000);
        for (uint64_t s = 0, found = 0; s < 20000000u && found < 1; s++)
          if (ref_u(sp.seed, s) > 1.0 - 0.5 / (double)V) {
            steps.push_back(s);
            found++;
            edge++;
          }
        for (uint64_t s : steps) {
          int64_t nn = 0;
          const int32_t want = ref_sample(l, sp, s, &nn);
          int32_t got = -1;
          OK(lsw_op_sample(LSW_BACKEND_CPU, V, l.data(), &sp, s, &got));
          n++;
          if (got != want && bad++ < 5)
            fprintf(stderr, "  vocab %d kind %d T %g top-k %d top-p %g min-p %g step %llu: lsw %d, reference %d (nucleus %lld)\n",
                    V, kind, sp.temperature, sp.top_k, sp.top_p, sp.min_p, (unsigned long long)s, got, want, (long long)nn);
        }
      }
    }
  }
  CHECK(bad == 0 && edge > 100, "sampler against the plain reference: %d of %d draws differ (%d at the nucleus's end)", bad, n,
        edge);
  printf("sampler against the plain reference: %d draws (%d at the nucleus's end), %d differ\n", n, edge, bad);
}

// ---- model -----------------------------------------------------------------------------------------
struct TinyModel {
  lsw_model_config c{};
  std::string path;
  struct T {
    std::string name;
    std::vector<int64_t> shape;
    int dtype;
    uint64_t off;
  };
  std::vector<T> ts;
  uint64_t total = 0;
  std::vector<std::vector<double>> vals;  // fp64 value of every tensor (same order as ts)
  bool has_adapter = false;
  lsw_adapter_desc ad{};
  std::vector<lsw_adapter_desc> extra_ads;  // adapters 1.. (after ad)
};

static void write_model(TinyModel &m) {
  std::vector<uint8_t> data(m.total);
  for (size_t i = 0; i < m.ts.size(); i++) {
    auto &t = m.ts[i];
    Buf b(t.dtype, m.vals[i].size());
    for (size_t j = 0; j < m.vals[i].size(); j++) b.set(j, m.vals[i][j]);
    m.vals[i] = b.val;
    std::memcpy(&data[t.off], b.raw.data(), b.raw.size());
  }
  FILE *f = fopen(m.path.c_str(), "wb");
  fwrite(data.data(), 1, data.size(), f);
  fclose(f);
}

static TinyModel make_tiny(int dtype, bool bias, bool tie, const char *path) {
  TinyModel m;
  auto &c = m.c;
  c.vocab_size = 97; c.hidden_size = 48; c.intermediate_size = 72; c.num_layers = 2; c.num_heads = 6;
  c.num_kv_heads = 2; c.head_dim = 8; c.max_context = 64; c.qkv_bias = bias; c.tie_embeddings = tie;
  c.rms_norm_eps = 1e-5f; c.rope_theta = 10000.f; c.rope_type = LSW_ROPE_LLAMA3; c.rope_factor = 8.f;
  c.rope_low_freq_factor = 1.f; c.rope_high_freq_factor = 4.f; c.rope_original_max_position = 32;
  c.backend = LSW_BACKEND_CPU; c.n_threads = 2;
  const int64_t V = c.vocab_size, H = c.hidden_size, I = c.intermediate_size, hd = c.head_dim;
  const int64_t qkv = (c.num_heads + 2 * c.num_kv_heads) * hd;
  auto add = [&](std::string n, std::vector<int64_t> s, int dt) {
    m.ts.push_back({n, s, dt, m.total});
    uint64_t cnt = 1;
    for (auto v : s) cnt *= v;
    m.total += (cnt * (dt == LSW_DTYPE_F32 ? 4 : 2) + 255) / 256 * 256;
  };
  add("tok_embeddings.weight", {V, H}, dtype);
  for (int L = 0; L < c.num_layers; L++) {
    std::string p = "layers." + std::to_string(L) + ".";
    add(p + "attn_norm.weight", {H}, LSW_DTYPE_F32);
    add(p + "attn.wqkv.weight", {qkv, H}, dtype);
    if (bias) add(p + "attn.bqkv.bias", {qkv}, LSW_DTYPE_F32);
    add(p + "attn.wo.weight", {H, c.num_heads * hd}, dtype);
    add(p + "ffn_norm.weight", {H}, LSW_DTYPE_F32);
    add(p + "ffn.w_gate_up.weight", {2 * I, H}, dtype);
    add(p + "ffn.w_down.weight", {H, I}, dtype);
  }
  add("norm.weight", {H}, LSW_DTYPE_F32);
  if (!tie) add("lm_head.weight", {V, H}, dtype);
  m.path = path;
  for (auto &t : m.ts) {
    uint64_t cnt = 1;
    for (auto v : t.shape) cnt *= v;
    std::vector<double> v(cnt);
    bool norm = t.shape.size() == 1 && t.name.find("norm") != std::string::npos;
    for (auto &x : v) x = norm ? 1.0 + 0.2 * nz() : nz(t.shape.size() == 1 ? 1.f : 0.3f);
    m.vals.push_back(v);
  }
  write_model(m);
  return m;
}

static lsw_status load(const TinyModel &t, lsw_model **out, uint64_t trunc = 0) {
  lsw_model *m;
  lsw_status st = lsw_model_create(&t.c, &m);
  if (st) return st;
  int32_t fid, aid;
  if ((st = lsw_model_map_file(m, t.path.c_str(), 0, &fid))) return lsw_model_free(m), st;
  if (t.has_adapter && (st = lsw_model_add_adapter(m, &t.ad, &aid))) return lsw_model_free(m), st;
  for (auto &d : t.extra_ads)
    if ((st = lsw_model_add_adapter(m, &d, &aid))) return lsw_model_free(m), st;
  for (auto &x : t.ts)
    if ((st = lsw_model_add_tensor(m, x.name.c_str(), x.dtype, (int)x.shape.size(), x.shape.data(), fid, x.off)))
      return lsw_model_free(m), st;
  if ((st = lsw_model_finalize(m))) return lsw_model_free(m), st;
  *out = m;
  return LSW_OK;
}

static void test_model() {
  for (int d = 0; d < 3; d++)
    for (int variant = 0; variant < 2; variant++) {
      TinyModel t = make_tiny(DTYPES[d], variant == 1, variant == 0, "/tmp/lsw_test_tiny.bin");
      lsw_model *m = nullptr;
      OK(load(t, &m));
      if (!m) continue;
      const int n = 13, V = t.c.vocab_size;
      std::vector<int32_t> toks(n);
      for (auto &x : toks) x = (int32_t)(rng() % V);
      std::vector<float> all((size_t)n * V), one((size_t)n * V);
      OK(lsw_model_eval(m, toks.data(), n, all.data(), 1));
      CHECK(lsw_model_n_past(m) == n, "n_past %d", lsw_model_n_past(m));
      OK(lsw_model_reset(m));
      for (int i = 0; i < n; i++) OK(lsw_model_eval(m, &toks[i], 1, &one[(size_t)i * V], 0));
      double maxd = 0, maxa = 0;
      for (size_t i = 0; i < all.size(); i++) {
        maxd = std::max(maxd, (double)std::fabs(all[i] - one[i]));
        maxa = std::max(maxa, (double)std::fabs(all[i]));
      }
      CHECK(maxd <= 1e-5 * maxa + 1e-6, "%s variant %d: prefill and token-by-token logits differ by %g (max %g)",
            DTN[d], variant, maxd, maxa);
      // prefill + step == eval argmax under greedy
      OK(lsw_model_reset(m));
      int32_t next = -1;
      OK(lsw_model_prefill(m, toks.data(), n, &next));
      int am = (int)(std::max_element(all.end() - V, all.end()) - (all.end() - V));
      CHECK(next == am, "prefill greedy token %d != argmax %d", next, am);
      int32_t nn;
      OK(lsw_model_step(m, next, &nn));
      CHECK(lsw_model_n_past(m) == n + 1, "step did not append");
      // bench_decode_tokens appends exactly the given stream (each step's own greedy pick dropped): after a 5-token
      // prefill and the other 8 tokens through it, the logits are those of the 13 tokens fed one at a time
      {
        OK(lsw_model_reset(m));
        OK(lsw_model_prefill(m, toks.data(), 5, &next));
        std::vector<double> ms(n - 5, -1.0);
        OK(lsw_model_bench_decode_tokens(m, &toks[5], n - 5, ms.data()));
        CHECK(lsw_model_n_past(m) == n, "bench_decode_tokens: n_past %d", lsw_model_n_past(m));
        bool timed = true;
        for (double x : ms) timed &= x > 0;
        CHECK(timed, "bench_decode_tokens: a step without its time");
        std::vector<float> lg(V);
        OK(lsw_model_get_logits(m, lg.data()));
        double md = 0;
        for (int v = 0; v < V; v++) md = std::max(md, (double)std::fabs(lg[v] - one[(size_t)(n - 1) * V + v]));
        CHECK(md <= 1e-5 * maxa + 1e-6, "%s variant %d: bench_decode_tokens logits differ from the fed sequence's by %g",
              DTN[d], variant, md);
        std::vector<int32_t> badstream = {toks[0], V};
        CHECK(lsw_model_bench_decode_tokens(m, badstream.data(), 2, ms.data()) == LSW_E_INVALID_ARGUMENT &&
                  strstr(lsw_last_error(), "outside the vocabulary"),
              "bench_decode_tokens accepted a token outside the vocabulary");
        CHECK(lsw_model_n_past(m) == n, "a refused bench_decode_tokens changed the state");
        OK(lsw_model_step(m, next, &nn));
      }
      // context full
      std::vector<int32_t> big(t.c.max_context, 1);
      CHECK(lsw_model_eval(m, big.data(), (int)big.size(), nullptr, 0) == LSW_E_CONTEXT_FULL, "context overflow accepted");
      CHECK(lsw_model_n_past(m) == n + 1, "failed eval changed the state");
      int32_t badtok = V;
      CHECK(lsw_model_step(m, badtok, &nn) == LSW_E_INVALID_ARGUMENT, "out-of-vocabulary token accepted");
      lsw_model_stats st;
      OK(lsw_model_get_stats(m, &st));
      CHECK(st.weight_bytes > 0 && st.n_threads == 2, "stats");
      lsw_model_free(m);
    }
  // bad input: a truncated file, a wrong shape, a missing tensor
  TinyModel t = make_tiny(LSW_DTYPE_F16, false, false, "/tmp/lsw_test_tiny.bin");
  {
    TinyModel tt = t;
    FILE *f = fopen(t.path.c_str(), "r+b");
    CHECK(f && ftruncate(fileno(f), (off_t)(t.total - 1000)) == 0, "truncate");
    fclose(f);
    lsw_model *m = nullptr;
    lsw_status st = load(tt, &m);
    CHECK(st == LSW_E_FORMAT && strstr(lsw_last_error(), "lm_head.weight"), "truncated file: %d %s", st, lsw_last_error());
  }
  t = make_tiny(LSW_DTYPE_F16, false, false, "/tmp/lsw_test_tiny.bin");
  {
    TinyModel tt = t;
    tt.ts[2].shape[0] += 1;
    lsw_model *m = nullptr;
    lsw_status st = load(tt, &m);
    CHECK(st == LSW_E_FORMAT && strstr(lsw_last_error(), tt.ts[2].name.c_str()), "wrong shape: %d %s", st,
          lsw_last_error());
  }
  {
    TinyModel tt = t;
    std::string missing = tt.ts[3].name;
    tt.ts.erase(tt.ts.begin() + 3);
    lsw_model *m = nullptr;
    lsw_status st = load(tt, &m);
    CHECK(st == LSW_E_FORMAT && strstr(lsw_last_error(), missing.c_str()), "missing tensor: %d %s", st, lsw_last_error());
  }
  {
    lsw_model_config c = t.c;
    c.num_kv_heads = 4;
    lsw_model *m = nullptr;
    CHECK(lsw_model_create(&c, &m) == LSW_E_INVALID_ARGUMENT, "num_heads %% num_kv_heads accepted");
    int32_t fid;
    c = t.c;
    OK(lsw_model_create(&c, &m));
    CHECK(lsw_model_map_file(m, "/nonexistent/file.lsw", 0, &fid) == LSW_E_IO &&
              strstr(lsw_last_error(), "/nonexistent/file.lsw"),
          "missing file: %s", lsw_last_error());
    lsw_model_free(m);
  }
  remove("/tmp/lsw_test_tiny.bin");
}

// ---- adapters ------------------------------------------------------------------------------------
static const char *MODN[7] = {"q", "k", "v", "o", "gate", "up", "down"};

// Add an adapter (E experts, rank r) on `mods` of every layer to a tiny model (f32).
static void add_adapter(TinyModel &t, int kind, int E, int topk, int rank, std::vector<int> mods) {
  auto &c = t.c;
  const int64_t H = c.hidden_size, I = c.intermediate_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  t.has_adapter = true;
  t.ad = {kind, E, topk, 0 /* router_input q */, 0};
  auto add = [&](std::string n, std::vector<int64_t> s, float scale) {
    t.ts.push_back({n, s, LSW_DTYPE_F32, t.total});
    uint64_t cnt = 1;
    for (auto v : s) cnt *= v;
    t.total += (cnt * 4 + 255) / 256 * 256;
    std::vector<double> v(cnt);
    for (auto &x : v) x = nz(scale);
    t.vals.push_back(v);
  };
  if (kind == LSW_ROUTER_PREGATED) add("adapters.0.router.weight", {E, H}, 1.f);
  for (int L = 0; L < c.num_layers; L++)
    for (int mo : mods) {
      int64_t out = mo == 0 ? qd : mo <= 2 ? kvd : mo == 3 ? H : mo <= 5 ? I : H;
      int64_t in = mo == 3 ? qd : mo == 6 ? I : H;
      std::string p = "adapters.0.layers." + std::to_string(L) + "." + MODN[mo];
      add(p + ".lora_A", {E, rank, in}, 0.3f);
      add(p + ".lora_B", {E, out, rank}, 0.3f);
      add(p + ".lora_scale", {1}, 0.5f);  // the module's LoRA scaling, in [0.5, 0.975] or [1.025, 1.5]
      t.vals.back()[0] += 1.0;
    }
  write_model(t);
}

// The base model with the given experts/gates merged in fp64 (adapter tensors dropped).
static TinyModel merged_copy(const TinyModel &t, const int32_t *ex, const float *g, const char *path) {
  TinyModel b = t;
  b.has_adapter = false;
  b.path = path;
  const auto &c = t.c;
  const int64_t H = c.hidden_size, I = c.intermediate_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  auto find = [&](const std::string &n) -> int {
    for (size_t i = 0; i < b.ts.size(); i++)
      if (b.ts[i].name == n) return (int)i;
    return -1;
  };
  int n_lora = 0, merged = 0;  // every lora_A of the adapter must be merged below
  for (const auto &x : t.ts)
    if (x.name.size() > 7 && x.name.compare(x.name.size() - 7, 7, ".lora_A") == 0) n_lora++;
  for (int L = 0; L < c.num_layers; L++)
    for (int mo = 0; mo < 7; mo++) {
      std::string p = "adapters.0.layers." + std::to_string(L) + "." + MODN[mo];
      int ia = find(p + ".lora_A"), ib = find(p + ".lora_B"), is = find(p + ".lora_scale");
      // a module the adapter does not target has no tensors (the static adapter covers q, v, down only); one it
      // targets has all three, and its base weight exists
      if (ia < 0 && ib < 0 && is < 0) continue;
      std::string wn = "layers." + std::to_string(L) + (mo <= 2 ? ".attn.wqkv.weight" : mo == 3 ? ".attn.wo.weight"
                                                        : mo <= 5 ? ".ffn.w_gate_up.weight" : ".ffn.w_down.weight");
      int iw = find(wn);
      CHECK(ia >= 0 && ib >= 0 && is >= 0 && iw >= 0, "merged_copy: %s: lora_A %d, lora_B %d, lora_scale %d, %s %d not all found",
            p.c_str(), ia, ib, is, wn.c_str(), iw);
      if (ia < 0 || ib < 0 || is < 0 || iw < 0) continue;
      merged++;
      const double sc = b.vals[is][0];
      int64_t rank = b.ts[ia].shape[1], in = b.ts[ia].shape[2], out = b.ts[ib].shape[1];
      int64_t row0 = mo == 0 ? 0 : mo == 1 ? qd : mo == 2 ? qd + kvd : mo == 4 ? 0 : mo == 5 ? I : 0;
      for (int k = 0; k < t.ad.top_k; k++)
        for (int64_t i = 0; i < out; i++)
          for (int64_t j = 0; j < in; j++) {
            double d = 0;
            for (int64_t r = 0; r < rank; r++)
              d += b.vals[ib][((size_t)ex[k] * out + i) * rank + r] * b.vals[ia][((size_t)ex[k] * rank + r) * in + j];
            b.vals[iw][(size_t)(row0 + i) * in + j] += g[k] * sc * d;
          }
    }
  CHECK(n_lora > 0 && merged == n_lora, "merged_copy: merged %d of the adapter's %d lora_A tensors", merged, n_lora);
  for (int i = (int)b.ts.size() - 1; i >= 0; i--)
    if (b.ts[i].name.compare(0, 9, "adapters.") == 0) {
      b.ts.erase(b.ts.begin() + i);
      b.vals.erase(b.vals.begin() + i);
    }
  (void)H;
  write_model(b);
  return b;
}

static double max_rel(const std::vector<float> &a, const std::vector<float> &b) {
  double d = 0, mx = 0;
  for (size_t i = 0; i < a.size(); i++) d = std::max(d, (double)std::fabs(a[i] - b[i])), mx = std::max(mx, (double)std::fabs(b[i]));
  return d / mx;
}

// A NaN in the final norm's weight makes every logit NaN: evaluating still works (the logits are what they are), but
// no token can be sampled: prefill, step and decode fail with LSW_E_NUMERIC and a message naming the position; the
// token is appended all the same (n_past counts it) and the outputs are left alone.  A model without the NaN samples.
static void test_nonfinite_model() {
  TinyModel t = make_tiny(LSW_DTYPE_F16, false, false, "/tmp/lsw_test_nan.bin");
  size_t ni = 0;
  while (t.ts[ni].name != "norm.weight") ni++;
  t.vals[ni][rng() % t.vals[ni].size()] = std::numeric_limits<double>::quiet_NaN();
  write_model(t);
  lsw_model *m = nullptr;
  OK(load(t, &m));
  if (!m) return;
  const int V = t.c.vocab_size;
  const int32_t toks[4] = {3, 14, 15, 92};
  std::vector<float> lg(V);
  OK(lsw_model_eval(m, toks, 4, lg.data(), 0));
  int nan = 0;
  for (float x : lg) nan += std::isnan(x);
  CHECK(nan == V, "NaN norm weight: %d of %d logits are NaN", nan, V);
  const lsw_sampler_params sps[2] = {{0.f, 0, 1.f, 0.f, 1}, {0.9f, 0, 0.95f, 0.f, 5}};
  for (const auto &sp : sps) {
    OK(lsw_model_set_sampler(m, &sp));
    OK(lsw_model_reset(m));
    int32_t next = -7;
    lsw_status st = lsw_model_prefill(m, toks, 4, &next);
    char want[64];
    snprintf(want, sizeof want, "position 3: %d of %d logits are not finite", V, V);
    CHECK(st == LSW_E_NUMERIC && next == -7 && lsw_model_n_past(m) == 4 && strstr(lsw_last_error(), want),
          "prefill (T %g): status %d, next %d, n_past %d, %s", sp.temperature, (int)st, next, lsw_model_n_past(m),
          lsw_last_error());
    st = lsw_model_step(m, 5, &next);
    CHECK(st == LSW_E_NUMERIC && next == -7 && lsw_model_n_past(m) == 5 && strstr(lsw_last_error(), "position 4: "),
          "step (T %g): status %d, next %d, n_past %d, %s", sp.temperature, (int)st, next, lsw_model_n_past(m),
          lsw_last_error());
    int32_t out[3] = {-7, -7, -7}, n_out = -1;
    st = lsw_model_decode(m, 6, 3, nullptr, 0, out, &n_out);
    CHECK(st == LSW_E_NUMERIC && n_out == 0 && out[0] == -7 && lsw_model_n_past(m) == 6,
          "decode (T %g): status %d, n_out %d, n_past %d", sp.temperature, (int)st, n_out, lsw_model_n_past(m));
  }
  lsw_model_free(m);
  // the same model with the norm weight finite again: every call samples
  t.vals[ni].assign(t.vals[ni].size(), 1.0);
  write_model(t);
  OK(load(t, &m));
  if (!m) return;
  int32_t next = -7;
  OK(lsw_model_prefill(m, toks, 4, &next));
  OK(lsw_model_step(m, next, &next));
  CHECK(next >= 0 && next < V, "finite model: token %d", next);
  lsw_model_free(m);
  remove(t.path.c_str());
}

static void test_adapters() {
  const char *P = "/tmp/lsw_test_adapter.bin", *PM = "/tmp/lsw_test_merged.bin";
  for (int kind : {LSW_ROUTER_STATIC, LSW_ROUTER_PREGATED}) {
    TinyModel t = make_tiny(LSW_DTYPE_F32, kind == 1, false, P);
    const int E = kind == LSW_ROUTER_STATIC ? 1 : 4, K = kind == LSW_ROUTER_STATIC ? 1 : 2;
    add_adapter(t, kind, E, K, 3, kind == LSW_ROUTER_STATIC ? std::vector<int>{0, 2, 6} : std::vector<int>{0, 1, 2, 3, 4, 5, 6});
    const int V = t.c.vocab_size, n = 9;
    std::vector<int32_t> toks(n);
    for (auto &x : toks) x = (int32_t)(rng() % V);
    std::vector<std::vector<float>> per_mode;
    std::vector<int32_t> ex0(K);
    std::vector<float> g0(K);
    for (int mode : {LSW_MODE_UNFUSED, LSW_MODE_FUSED, LSW_MODE_MERGE}) {
      lsw_model *m = nullptr;
      OK(load(t, &m));
      if (!m) return;
      OK(lsw_model_set_mode(m, mode));
      std::vector<float> seq((size_t)n * V), pre((size_t)n * V);
      for (int i = 0; i < n; i++) OK(lsw_model_eval(m, &toks[i], 1, &seq[(size_t)i * V], 0));
      std::vector<int32_t> e1((size_t)n * K), e2((size_t)n * K);
      std::vector<float> g1((size_t)n * K), g2((size_t)n * K);
      OK(lsw_model_get_routes(m, 0, 0, n, e1.data(), g1.data()));
      ex0.assign(e1.begin(), e1.begin() + K);
      g0.assign(g1.begin(), g1.begin() + K);
      OK(lsw_model_reset(m));
      OK(lsw_model_eval(m, toks.data(), n, pre.data(), 1));
      OK(lsw_model_get_routes(m, 0, 0, n, e2.data(), g2.data()));
      CHECK(max_rel(pre, seq) < 1e-5, "adapter kind %d mode %d: prompt != token by token (%g)", kind, mode, max_rel(pre, seq));
      // merge mode: a prompt runs token by token through the merged weights, so bit for bit
      if (mode == LSW_MODE_MERGE) CHECK(pre == seq, "adapter kind %d merge mode: prompt not bit-identical to token by token", kind);
      CHECK(e1 == e2, "adapter kind %d mode %d: routes of prompt != token by token", kind, mode);
      if (kind == LSW_ROUTER_PREGATED) {
        std::sort(e1.begin(), e1.end());
        CHECK(std::unique(e1.begin(), e1.end()) - e1.begin() > 2, "routing uses fewer than 3 experts over %d tokens", n);
      }
      lsw_model_stats st;
      OK(lsw_model_get_stats(m, &st));
      if (mode == LSW_MODE_MERGE) CHECK(st.merge_steps > 0, "merge mode ran no SGMM step");
      CHECK(lsw_model_get_routes(m, 0, n - 1, 2, e2.data(), g2.data()) == LSW_E_INVALID_ARGUMENT, "routes past n_past");
      per_mode.push_back(seq);
      lsw_model_free(m);
    }
    CHECK(max_rel(per_mode[1], per_mode[0]) < 1e-5, "adapter kind %d: fused != unfused (%g)", kind, max_rel(per_mode[1], per_mode[0]));
    CHECK(max_rel(per_mode[2], per_mode[0]) < 1e-5, "adapter kind %d: merge != unfused (%g)", kind, max_rel(per_mode[2], per_mode[0]));
    // independent check: first position == the base model with the first token's experts merged in fp64
    TinyModel b = merged_copy(t, ex0.data(), g0.data(), PM);
    lsw_model *mb = nullptr;
    OK(load(b, &mb));
    if (mb) {
      std::vector<float> lb(V), la(per_mode[0].begin(), per_mode[0].begin() + V);
      OK(lsw_model_eval(mb, &toks[0], 1, lb.data(), 0));
      CHECK(max_rel(la, lb) < 1e-5, "adapter kind %d: logits != merged-weights reference (%g)", kind, max_rel(la, lb));
      lsw_model_free(mb);
      // and the adapter really changes the output: the same file and token without the adapter
      TinyModel t0 = t;
      t0.has_adapter = false;
      for (int i = (int)t0.ts.size() - 1; i >= 0; i--)
        if (t0.ts[i].name.compare(0, 9, "adapters.") == 0) {
          t0.ts.erase(t0.ts.begin() + i);
          t0.vals.erase(t0.vals.begin() + i);
        }
      lsw_model *m0 = nullptr;
      OK(load(t0, &m0));
      if (m0) {
        std::vector<float> l0(V);
        OK(lsw_model_eval(m0, &toks[0], 1, l0.data(), 0));
        CHECK(max_rel(la, l0) > 1e-3, "adapter kind %d: logits without the adapter differ by only %g", kind, max_rel(la, l0));
        lsw_model_free(m0);
      }
    }
  }
  // bad adapter input
  TinyModel t = make_tiny(LSW_DTYPE_F32, false, false, P);
  add_adapter(t, LSW_ROUTER_PREGATED, 4, 2, 3, {0});
  {
    TinyModel tt = t;
    for (auto &x : tt.ts)
      if (x.name == "adapters.0.layers.1.q.lora_B") x.shape[1] += 1;
    lsw_model *m = nullptr;
    lsw_status st = load(tt, &m);
    CHECK(st == LSW_E_FORMAT && strstr(lsw_last_error(), "adapters.0.layers.1.q.lora_B"), "bad lora_B shape: %s", lsw_last_error());
  }
  {
    TinyModel tt = t;
    for (auto &x : tt.ts)
      if (x.name == "adapters.0.layers.1.q.lora_scale") x.shape[0] = 2;
    lsw_model *m = nullptr;
    lsw_status st = load(tt, &m);
    CHECK(st == LSW_E_FORMAT && strstr(lsw_last_error(), "adapters.0.layers.1.q.lora_scale") &&
              strstr(lsw_last_error(), "expected F32 [1]"),
          "bad lora_scale shape: %s", lsw_last_error());
  }
  {
    TinyModel tt = t;
    for (int i = (int)tt.ts.size() - 1; i >= 0; i--)
      if (tt.ts[i].name == "adapters.0.layers.1.q.lora_A" || tt.ts[i].name == "adapters.0.layers.1.q.lora_B")
        tt.ts.erase(tt.ts.begin() + i), tt.vals.erase(tt.vals.begin() + i);
    lsw_model *m = nullptr;
    lsw_status st = load(tt, &m);
    CHECK(st == LSW_E_FORMAT && strstr(lsw_last_error(), "layers.1.q has lora_scale but no lora_A"),
          "lora_scale without A/B: %s", lsw_last_error());
  }
  {  // a LoRA scaling is read on the host at finalize: a random or engine-allocated (file_id -1) one is refused
    lsw_model *m = nullptr;
    int32_t aid = -1;
    const int64_t one = 1;
    OK(lsw_model_create(&t.c, &m));
    OK(lsw_model_add_adapter(m, &t.ad, &aid));
    lsw_status st = lsw_model_add_random_tensor(m, "adapters.0.layers.1.q.lora_scale", LSW_DTYPE_F32, 1, &one, 7, 0.5f);
    CHECK(st == LSW_E_INVALID_ARGUMENT && strstr(lsw_last_error(), "lora_scale: a LoRA scaling must come from a mapped file"),
          "random lora_scale: %d %s", st, lsw_last_error());
    st = lsw_model_add_tensor(m, "adapters.0.layers.1.q.lora_scale", LSW_DTYPE_F32, 1, &one, -1, 0);
    CHECK(st == LSW_E_INVALID_ARGUMENT, "engine-allocated lora_scale: %d %s", st, lsw_last_error());
    lsw_model_free(m);
  }
  {
    TinyModel tt = t;
    tt.ad.top_k = 5;
    lsw_model *m = nullptr;
    CHECK(load(tt, &m) == LSW_E_INVALID_ARGUMENT, "top_k > num_experts accepted");
  }
  {
    TinyModel tt = t;
    for (size_t i = 0; i < tt.ts.size(); i++)
      if (tt.ts[i].name == "adapters.0.router.weight") tt.ts.erase(tt.ts.begin() + i), tt.vals.erase(tt.vals.begin() + i);
    lsw_model *m = nullptr;
    lsw_status st = load(tt, &m);
    CHECK(st == LSW_E_FORMAT && strstr(lsw_last_error(), "router"), "missing router: %s", lsw_last_error());
  }
  remove(P);
  remove(PM);
}

// ---- layer-wise adapters (LAYERWISE, MixLoRA) vs an fp64 reference forward -------------------------------
static int tidx(const TinyModel &t, const std::string &n) {
  for (size_t i = 0; i < t.ts.size(); i++)
    if (t.ts[i].name == n) return (int)i;
  return -1;
}
static void add_f32(TinyModel &t, const std::string &n, std::vector<int64_t> s, float scale) {
  t.ts.push_back({n, s, LSW_DTYPE_F32, t.total});
  uint64_t cnt = 1;
  for (auto v : s) cnt *= v;
  t.total += (cnt * 4 + 255) / 256 * 256;
  std::vector<double> v(cnt);
  for (auto &x : v) x = nz(scale);
  t.vals.push_back(v);
}
static void mod_shape(const lsw_model_config &c, int mo, int64_t &out, int64_t &in, int64_t &row0) {
  const int64_t H = c.hidden_size, I = c.intermediate_size, qd = c.num_heads * c.head_dim, kvd = c.num_kv_heads * c.head_dim;
  out = mo == 0 ? qd : mo <= 2 ? kvd : mo == 3 ? H : mo <= 5 ? I : H;
  in = mo == 3 ? qd : mo == 6 ? I : H;
  row0 = mo == 1 ? qd : mo == 2 ? qd + kvd : mo == 5 ? I : 0;
}
// Adapter `aid` (registered in that order): LAYERWISE (E experts, top_k K) or STATIC (E = K = 1), adapting
// mods[L] in layer L; layer-wise ones get a router per adapted layer whose width is that of the first adapted
// module's input (ffn: the MLP input).  router_w_override > 0: use that width for layer 0 (bad-input tests).
static void add_lw(TinyModel &t, int aid, int kind, int E, int K, bool ffn, const std::vector<std::vector<int>> &mods,
                   int64_t router_w_override = 0) {
  const lsw_adapter_desc d = {kind, E, K, 4, ffn ? 1 : 0};
  if (aid == 0) t.has_adapter = true, t.ad = d;
  else t.extra_ads.push_back(d);
  const auto &c = t.c;
  for (int L = 0; L < c.num_layers; L++) {
    if (mods[L].empty()) continue;
    const std::string p = "adapters." + std::to_string(aid) + ".layers." + std::to_string(L) + ".";
    if (kind == LSW_ROUTER_LAYERWISE) {
      int first = *std::min_element(mods[L].begin(), mods[L].end());
      int64_t out, in, r0;
      mod_shape(c, ffn ? 4 : first, out, in, r0);
      add_f32(t, p + "router.weight", {E, L == 0 && router_w_override ? router_w_override : in}, 0.3f);
    }
    for (int mo : mods[L]) {
      int64_t out, in, r0;
      mod_shape(c, mo, out, in, r0);
      add_f32(t, p + MODN[mo] + ".lora_A", {E, 3, in}, 0.3f);
      add_f32(t, p + MODN[mo] + ".lora_B", {E, out, 3}, 0.3f);
      add_f32(t, p + MODN[mo] + ".lora_scale", {1}, 0.5f);  // LoRA scaling in [0.5, 0.975] or [1.025, 1.5]
      t.vals.back()[0] += 1.0;
    }
  }
  write_model(t);
}

static void ref_rmsnorm(const std::vector<double> &x, const std::vector<double> &w, double eps, std::vector<double> &y) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double r = 1.0 / std::sqrt(ss / (double)x.size() + eps);
  y.resize(x.size());
  for (size_t i = 0; i < x.size(); i++) y[i] = x[i] * r * w[i];
}
static void ref_route(const std::vector<double> &R, int E, size_t dim, int K, const std::vector<double> &x, int *ex,
                      double *g) {
  std::vector<double> l(E);
  for (int e = 0; e < E; e++)
    for (size_t c = 0; c < dim; c++) l[e] += R[e * dim + c] * x[c];
  std::vector<int> o(E);
  for (int e = 0; e < E; e++) o[e] = e;
  std::stable_sort(o.begin(), o.end(), [&](int a, int b) { return l[a] > l[b]; });
  double s = 0;
  for (int k = 0; k < K; k++) s += std::exp(l[o[k]] - l[o[0]]);
  for (int k = 0; k < K; k++) ex[k] = o[k], g[k] = std::exp(l[o[k]] - l[o[0]]) / s;
}

// fp64 forward of a tiny model with its adapters, every position; routes of adapter 0 [n][num_layers][top_k]
// (expert -1, gate 0 where it routes nothing).  MixLoRA: the gated sum of whole expert FFNs, each computed on its
// own (base + the expert's deltas) -- independent of the engine's factoring.
static std::vector<std::vector<double>> ref_forward(const TinyModel &t, const std::vector<int32_t> &toks,
                                                    std::vector<int> &re, std::vector<double> &rg, bool adapters = true) {
  const auto &c = t.c;
  const int NL = c.num_layers, nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim;
  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, qd = nh * hd, kvd = nkv * hd;
  auto W = [&](const std::string &n) -> const std::vector<double> & {
    int i = tidx(t, n);
    if (i < 0) {
      fprintf(stderr, "reference: no tensor %s\n", n.c_str());
      exit(2);
    }
    return t.vals[i];
  };
  std::vector<lsw_adapter_desc> ads;
  if (adapters && t.has_adapter) ads.push_back(t.ad);
  if (adapters) ads.insert(ads.end(), t.extra_ads.begin(), t.extra_ads.end());
  const int NA = (int)ads.size();
  auto has = [&](int a, int L, int mo) {
    return tidx(t, "adapters." + std::to_string(a) + ".layers." + std::to_string(L) + "." + MODN[mo] + ".lora_A") >= 0;
  };
  // router matrix of (adapter, layer): first adapted module's fused matrix (ffn: gate/up), -1 none
  auto mat_of = [](int mo) { return mo <= 2 ? 0 : mo == 3 ? 1 : mo <= 5 ? 2 : 3; };
  std::vector<std::vector<int>> rmat(NA, std::vector<int>(NL, -1));
  for (int a = 0; a < NA; a++)
    for (int L = 0; L < NL; L++)
      for (int mo = 6; mo >= 0; mo--)
        if (has(a, L, mo)) rmat[a][L] = ads[a].ffn_experts ? 2 : mat_of(mo);
  const int K0 = NA ? ads[0].top_k : 1;
  const int n = (int)toks.size();
  re.assign((size_t)n * NL * K0, -1);
  rg.assign((size_t)n * NL * K0, 0.0);
  std::vector<std::vector<int>> ge(NA);  // current token's routes of layer L per adapter
  std::vector<std::vector<double>> gg(NA);
  std::vector<std::vector<double>> kc((size_t)NL * n), vc((size_t)NL * n), logits;
  const std::vector<double> inv = ref_inv_freq(c);
  const std::vector<double> &emb = W("tok_embeddings.weight");
  for (int p = 0; p < n; p++) {
    std::vector<double> x(emb.begin() + (size_t)toks[p] * H, emb.begin() + (size_t)(toks[p] + 1) * H), xa, xf;
    for (int L = 0; L < NL; L++) {
      const std::string pl = "layers." + std::to_string(L) + ".";
      auto route_here = [&](int mat, const std::vector<double> &in) {
        for (int a = 0; a < NA; a++) {
          const int K = ads[a].top_k;
          if (ads[a].router_kind != LSW_ROUTER_LAYERWISE || rmat[a][L] != mat) continue;
          ref_route(W("adapters." + std::to_string(a) + ".layers." + std::to_string(L) + ".router.weight"),
                    ads[a].num_experts, in.size(), K, in, ge[a].data(), gg[a].data());
          if (a == 0)
            for (int k = 0; k < K; k++) re[((size_t)p * NL + L) * K + k] = ge[a][k], rg[((size_t)p * NL + L) * K + k] = gg[a][k];
        }
      };
      auto lora = [&](int a, int mo, int e, double g, const std::vector<double> &in, std::vector<double> &y) {
        const std::string q = "adapters." + std::to_string(a) + ".layers." + std::to_string(L) + "." + MODN[mo];
        const auto &A = W(q + ".lora_A"), &B = W(q + ".lora_B");
        const int is = tidx(t, q + ".lora_scale");
        const double sc = is >= 0 ? t.vals[is][0] : 1.0;  // the module's LoRA scaling (FORMAT.md)
        const size_t in_f = in.size(), out = y.size(), r = 3;
        for (size_t i = 0; i < out; i++) {
          double acc = 0;
          for (size_t j = 0; j < r; j++) {
            double u = 0;
            for (size_t cc = 0; cc < in_f; cc++) u += A[(e * r + j) * in_f + cc] * in[cc];
            acc += B[(e * out + i) * r + j] * u;
          }
          y[i] += g * sc * acc;
        }
      };
      // adapted linear; ffn_e >= 0: the MixLoRA adapter's expert ffn_e with gate 1
      auto lin = [&](int mo, const std::vector<double> &in, int ffn_e = -1) {
        int64_t out, inn, row0;
        mod_shape(c, mo, out, inn, row0);
        const auto &Wm = W(pl + (mo <= 2 ? "attn.wqkv.weight" : mo == 3 ? "attn.wo.weight" : mo <= 5 ? "ffn.w_gate_up.weight" : "ffn.w_down.weight"));
        std::vector<double> y(out);
        for (int64_t i = 0; i < out; i++) {
          double acc = 0;
          for (int64_t j = 0; j < inn; j++) acc += Wm[(row0 + i) * inn + j] * in[j];
          y[i] = acc;
        }
        if (mo <= 2 && c.qkv_bias)
          for (int64_t i = 0; i < out; i++) y[i] += W(pl + "attn.bqkv.bias")[row0 + i];
        for (int a = 0; a < NA; a++) {
          if (!has(a, L, mo)) continue;
          if (ads[a].ffn_experts) {
            if (ffn_e >= 0) lora(a, mo, ffn_e, 1.0, in, y);
            continue;
          }
          for (int k = 0; k < ads[a].top_k; k++) lora(a, mo, ge[a][k], gg[a][k], in, y);
        }
        return y;
      };
      for (int a = 0; a < NA; a++) ge[a].assign(ads[a].top_k, 0), gg[a].assign(ads[a].top_k, 1.0);  // STATIC: 0, 1
      ref_rmsnorm(x, W(pl + "attn_norm.weight"), c.rms_norm_eps, xa);
      route_here(0, xa);
      std::vector<double> q = lin(0, xa), k = lin(1, xa), v = lin(2, xa);
      auto rope = [&](std::vector<double> &z, int heads) {
        for (int h = 0; h < heads; h++)
          for (int i = 0; i < hd / 2; i++) {
            const double an = p * inv[i], cs = std::cos(an), sn = std::sin(an);
            const double x1 = z[h * hd + i], x2 = z[h * hd + i + hd / 2];
            z[h * hd + i] = x1 * cs - x2 * sn;
            z[h * hd + i + hd / 2] = x2 * cs + x1 * sn;
          }
      };
      rope(q, nh);
      rope(k, nkv);
      if (c.kv_dtype != LSW_DTYPE_F32)  // the engine's cache holds K and V rounded to kv_dtype
        for (int64_t i = 0; i < kvd; i++) k[i] = round_dt(c.kv_dtype, k[i]), v[i] = round_dt(c.kv_dtype, v[i]);
      kc[(size_t)L * n + p] = k;
      vc[(size_t)L * n + p] = v;
      std::vector<double> att(qd);
      for (int h = 0; h < nh; h++) {
        const int kh = h / (nh / nkv);
        std::vector<double> sc(p + 1);
        double mx = -1e300, sum = 0;
        for (int s2 = 0; s2 <= p; s2++) {
          double d = 0;
          for (int i = 0; i < hd; i++) d += q[h * hd + i] * kc[(size_t)L * n + s2][kh * hd + i];
          sc[s2] = d / std::sqrt((double)hd);
          mx = std::max(mx, sc[s2]);
        }
        for (auto &z : sc) sum += (z = std::exp(z - mx));
        for (int s2 = 0; s2 <= p; s2++)
          for (int i = 0; i < hd; i++) att[h * hd + i] += sc[s2] / sum * vc[(size_t)L * n + s2][kh * hd + i];
      }
      route_here(1, att);
      std::vector<double> o = lin(3, att);
      for (int64_t i = 0; i < H; i++) x[i] += o[i];
      ref_rmsnorm(x, W(pl + "ffn_norm.weight"), c.rms_norm_eps, xf);
      route_here(2, xf);
      int fa = -1;
      for (int a = 0; a < NA; a++)
        if (ads[a].ffn_experts && rmat[a][L] >= 0) fa = a;
      auto ffn = [&](int e) {
        std::vector<double> g = lin(4, xf, e), u = lin(5, xf, e), h(I);
        for (int64_t i = 0; i < I; i++) h[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
        route_here(3, h);  // (no layer-wise router reads the down input when FFN experts are present)
        return lin(6, h, e);
      };
      std::vector<double> y(H);
      if (fa < 0) {
        y = ffn(-1);
      } else {
        const std::vector<int> ex = ge[fa];
        const std::vector<double> gx = gg[fa];
        for (size_t kk = 0; kk < ex.size(); kk++) {
          std::vector<double> yk = ffn(ex[kk]);
          for (int64_t i = 0; i < H; i++) y[i] += gx[kk] * yk[i];
        }
      }
      for (int64_t i = 0; i < H; i++) x[i] += y[i];
    }
    std::vector<double> fin;
    ref_rmsnorm(x, W("norm.weight"), c.rms_norm_eps, fin);
    const auto &head = c.tie_embeddings ? emb : W("lm_head.weight");
    std::vector<double> lg(V);
    for (int64_t vv = 0; vv < V; vv++)
      for (int64_t i = 0; i < H; i++) lg[vv] += head[vv * H + i] * fin[i];
    logits.push_back(lg);
  }
  return logits;
}

static double max_rel_ref(const std::vector<float> &got, const std::vector<std::vector<double>> &ref) {
  double d = 0, mx = 0;
  const size_t V = ref[0].size();
  for (size_t t = 0; t < ref.size(); t++)
    for (size_t i = 0; i < V; i++)
      d = std::max(d, std::fabs(got[t * V + i] - ref[t][i])), mx = std::max(mx, std::fabs(ref[t][i]));
  return d / mx;
}

static void test_layerwise() {
  const char *P = "/tmp/lsw_test_layerwise.bin";
  struct Case {
    const char *name;
    int E, K;
    bool ffn;
    std::vector<std::vector<int>> mods;
    bool with_static;  // + a STATIC adapter on q and o (MixLoRA's attention LoRA)
  };
  const std::vector<Case> cases = {
      {"layerwise E4 K2 all-linear / o+down", 4, 2, false, {{0, 1, 2, 3, 4, 5, 6}, {3, 6}}, false},
      {"layerwise E3 K3 down-only layer 0 (router width I), layer 1 bare", 3, 3, false, {{6}, {}}, false},
      {"layerwise E5 K1 gate/up + static q,o", 5, 1, false, {{4, 5}, {5}}, true},
      {"MixLoRA E4 K1 + static q,o", 4, 1, true, {{4, 5, 6}, {4, 5, 6}}, true},
      {"MixLoRA E4 K2 (layer 0 without gate)", 4, 2, true, {{5, 6}, {4, 5, 6}}, false},
      {"MixLoRA E5 K3 + static q,o", 5, 3, true, {{4, 5, 6}, {4, 6}}, true},
  };
  for (const Case &cs : cases) {
    TinyModel t = make_tiny(LSW_DTYPE_F32, cs.with_static, false, P);
    add_lw(t, 0, LSW_ROUTER_LAYERWISE, cs.E, cs.K, cs.ffn, cs.mods);
    if (cs.with_static) add_lw(t, 1, LSW_ROUTER_STATIC, 1, 1, false, {{0, 3}, {0, 3}});
    const int V = t.c.vocab_size, NL = t.c.num_layers, K = cs.K, n = 10, RK = NL * K;
    std::vector<int32_t> toks(n);
    for (auto &x : toks) x = (int32_t)(rng() % V);
    toks[4] = toks[3];  // a repeated token: layer 0's routes repeat when its router reads the normed embedding
    std::vector<int> re, re0;
    std::vector<double> rg, rg0;
    const auto want = ref_forward(t, toks, re, rg);
    const auto bare = ref_forward(t, toks, re0, rg0, false);
    double dad = 0;
    {
      std::vector<float> wf;
      for (auto &r : want) wf.insert(wf.end(), r.begin(), r.end());
      dad = max_rel_ref(wf, bare);
    }
    CHECK(dad > 1e-2, "%s: the adapters hardly change the reference logits (%g)", cs.name, dad);
    std::set<int> used;
    for (int e : re) used.insert(e);
    CHECK(cs.K == cs.E || used.size() > (size_t)cs.K, "%s: routing uses only %zu experts", cs.name, used.size());
    const bool merge_ok = !(cs.ffn && cs.K > 1);
    for (int mode : {LSW_MODE_UNFUSED, LSW_MODE_FUSED, LSW_MODE_MERGE}) {
      lsw_model *m = nullptr;
      OK(load(t, &m));
      if (!m) return;
      if (!merge_ok) {  // merge is the default mode: evaluating refuses, as does set_mode(MERGE)
        int32_t tok = toks[0];
        lsw_status st = lsw_model_eval(m, &tok, 1, nullptr, 0);
        CHECK(st == LSW_E_UNSUPPORTED && strstr(lsw_last_error(), "merge mode cannot represent MixLoRA's per-expert FFNs exactly for top_k > 1"),
              "%s: default merge mode: %d %s", cs.name, st, lsw_last_error());
        st = lsw_model_set_mode(m, LSW_MODE_MERGE);
        CHECK(st == LSW_E_UNSUPPORTED && strstr(lsw_last_error(), "use --mode fused or unfused"), "%s: set_mode(MERGE): %d %s",
              cs.name, st, lsw_last_error());
        if (mode == LSW_MODE_MERGE) {
          lsw_model_free(m);
          continue;
        }
      }
      OK(lsw_model_set_mode(m, mode));
      std::vector<float> seq((size_t)n * V), pre((size_t)n * V);
      lsw_model_stats st0, st1;
      for (int i = 0; i < n; i++) {
        if (i == 4) OK(lsw_model_get_stats(m, &st0));
        OK(lsw_model_eval(m, &toks[i], 1, &seq[(size_t)i * V], 0));
        if (i == 4) OK(lsw_model_get_stats(m, &st1));
      }
      std::vector<int32_t> e1((size_t)n * RK), e2((size_t)n * RK);
      std::vector<float> g1((size_t)n * RK), g2((size_t)n * RK);
      OK(lsw_model_get_routes(m, 0, 0, n, e1.data(), g1.data()));
      OK(lsw_model_reset(m));
      OK(lsw_model_eval(m, toks.data(), 6, pre.data(), 1));  // prefill in two chunks
      OK(lsw_model_eval(m, toks.data() + 6, n - 6, pre.data() + (size_t)6 * V, 1));
      OK(lsw_model_get_routes(m, 0, 0, n, e2.data(), g2.data()));
      const double r_seq = max_rel_ref(seq, want), r_pre = max_rel_ref(pre, want), r_pp = max_rel(pre, seq);
      CHECK(r_seq < 2e-5, "%s mode %d: token by token vs fp64 reference %g", cs.name, mode, r_seq);
      CHECK(r_pre < 2e-5, "%s mode %d: prefill vs fp64 reference %g", cs.name, mode, r_pre);
      CHECK(r_pp < 2e-5, "%s mode %d: prefill vs token by token %g", cs.name, mode, r_pp);
      if (mode == LSW_MODE_MERGE) CHECK(pre == seq, "%s merge mode: prefill not bit-identical to token by token", cs.name);
      int bad_e = 0, bad_g = 0;
      for (size_t i = 0; i < e1.size(); i++) {
        bad_e += e1[i] != re[i] || e2[i] != re[i];
        bad_g += std::fabs(g1[i] - rg[i]) > 1e-5 || std::fabs(g2[i] - rg[i]) > 1e-5;
      }
      CHECK(bad_e == 0 && bad_g == 0, "%s mode %d: routes vs reference: %d experts, %d gates wrong", cs.name, mode, bad_e,
            bad_g);
      lsw_model_stats st;
      OK(lsw_model_get_stats(m, &st));
      if (mode == LSW_MODE_MERGE) {
        CHECK(st.merge_steps > 0, "%s: merge mode ran no SGMM step", cs.name);
        // the repeated token: layer 0 (router on the normed embedding in the first case) is skipped
        if (cs.mods[0][0] == 0) CHECK(st1.merge_skipped > st0.merge_skipped, "%s: unchanged layer 0 not skipped", cs.name);
      } else {
        CHECK(st.merge_steps == 0, "%s: SGMM outside merge mode", cs.name);
      }
      lsw_model_free(m);
    }
  }
  // bad input
  auto expect = [&](TinyModel tt, lsw_status want_st, const char *needle, const char *what) {
    lsw_model *m = nullptr;
    lsw_status st = load(tt, &m);
    CHECK(st == want_st && strstr(lsw_last_error(), needle), "%s: %d %s", what, st, lsw_last_error());
    if (m) lsw_model_free(m);
  };
  {
    TinyModel t = make_tiny(LSW_DTYPE_F32, false, false, P);  // router of layer 0 reads the SwiGLU output (I)
    add_lw(t, 0, LSW_ROUTER_LAYERWISE, 3, 2, false, {{6}, {6}}, t.c.hidden_size);
    expect(t, LSW_E_FORMAT, "adapters.0.layers.0.router.weight", "router width H where down (I) is the first module");
  }
  {
    TinyModel t = make_tiny(LSW_DTYPE_F32, false, false, P);
    add_lw(t, 0, LSW_ROUTER_LAYERWISE, 3, 2, false, {{0, 6}, {6}});
    TinyModel tt = t;
    int i = tidx(tt, "adapters.0.layers.1.router.weight");
    tt.ts.erase(tt.ts.begin() + i), tt.vals.erase(tt.vals.begin() + i);
    expect(tt, LSW_E_FORMAT, "adapters.0.layers.1.router.weight is missing", "missing layer router");
    tt = t;
    for (int mo : {0, 6})
      for (const char *ab : {".lora_A", ".lora_B", ".lora_scale"}) {
        int j = tidx(tt, std::string("adapters.0.layers.1.") + MODN[mo] + ab);
        if (j >= 0) tt.ts.erase(tt.ts.begin() + j), tt.vals.erase(tt.vals.begin() + j);
      }
    expect(tt, LSW_E_FORMAT, "adapts nothing in layer 1", "router without adapted modules");
  }
  {
    TinyModel t = make_tiny(LSW_DTYPE_F32, false, false, P);
    add_lw(t, 0, LSW_ROUTER_LAYERWISE, 3, 2, true, {{0, 4}, {4}});
    expect(t, LSW_E_FORMAT, "adapt only gate/up/down", "MixLoRA adapting q");
  }
  {
    TinyModel t = make_tiny(LSW_DTYPE_F32, false, false, P);
    add_lw(t, 0, LSW_ROUTER_LAYERWISE, 3, 2, true, {{4}, {4}});
    add_lw(t, 1, LSW_ROUTER_LAYERWISE, 3, 2, true, {{5}, {5}});
    expect(t, LSW_E_UNSUPPORTED, "at most one", "two MixLoRA adapters");
  }
  remove(P);
}

// lsw_last_error: the most recent error of the process, whichever thread set it (FFI async calls fail on a worker)
static void test_last_error_threads() {
  double gb = 0;
  std::thread th([&] { (void)lsw_measure_bandwidth(LSW_BACKEND_CPU, 12, &gb); });
  th.join();
  CHECK(strstr(lsw_last_error(), "(got 12)") != nullptr, "error set on a worker thread not visible: '%s'", lsw_last_error());
  const char *p1 = lsw_last_error();
  std::string keep = p1;
  CHECK(lsw_measure_bandwidth(LSW_BACKEND_CPU, 13, &gb) == LSW_E_INVALID_ARGUMENT, "bad bytes accepted");
  CHECK(strstr(lsw_last_error(), "(got 13)") != nullptr, "newer error on this thread: '%s'", lsw_last_error());
  std::string seen;
  std::thread th2([&] { seen = lsw_last_error(); });  // another thread reads the main thread's failure
  th2.join();
  CHECK(seen.find("(got 13)") != std::string::npos, "main thread's error not visible on a worker: '%s'", seen.c_str());
  CHECK(keep.find("(got 12)") != std::string::npos, "copy");
}

static void test_random_and_base() {
  // two models from the same seeds give identical logits; a different seed differs; BASE mode == no adapter
  TinyModel t = make_tiny(LSW_DTYPE_F16, true, true, "/tmp/lsw_test_rand.bin");
  auto build = [&](uint64_t seed, bool with_adapter, int mode, std::vector<float> &logits) {
    lsw_model *m = nullptr;
    if (lsw_model_create(&t.c, &m) != LSW_OK) return false;
    int32_t aid;
    lsw_adapter_desc d = {LSW_ROUTER_PREGATED, 3, 2, 0, 0};
    bool ok = true;
    if (with_adapter) ok &= lsw_model_add_adapter(m, &d, &aid) == LSW_OK;
    for (auto &x : t.ts) ok &= lsw_model_add_random_tensor(m, x.name.c_str(), x.dtype, (int)x.shape.size(), x.shape.data(), seed + x.off, 0.3f) == LSW_OK;
    if (with_adapter) {
      int64_t rs[2] = {3, t.c.hidden_size}, as[3] = {3, 4, t.c.hidden_size}, bs[3] = {3, t.c.num_heads * t.c.head_dim, 4};
      ok &= lsw_model_add_random_tensor(m, "adapters.0.router.weight", LSW_DTYPE_F16, 2, rs, 5, 1.f) == LSW_OK;
      for (int L = 0; L < t.c.num_layers; L++) {
        std::string p = "adapters.0.layers." + std::to_string(L) + ".q.";
        ok &= lsw_model_add_random_tensor(m, (p + "lora_A").c_str(), LSW_DTYPE_F16, 3, as, 6 + L, 0.5f) == LSW_OK;
        ok &= lsw_model_add_random_tensor(m, (p + "lora_B").c_str(), LSW_DTYPE_F16, 3, bs, 9 + L, 0.5f) == LSW_OK;
      }
    }
    ok &= lsw_model_finalize(m) == LSW_OK;
    ok &= lsw_model_set_mode(m, mode) == LSW_OK;
    int32_t toks[3] = {1, 50, 7};
    logits.assign(t.c.vocab_size, 0.f);
    ok &= lsw_model_eval(m, toks, 3, logits.data(), 0) == LSW_OK;
    if (!ok) fprintf(stderr, "random model: %s\n", lsw_last_error());
    lsw_model_free(m);
    return ok;
  };
  std::vector<float> a, b, c, base, ad;
  CHECK(build(1, false, LSW_MODE_MERGE, a) && build(1, false, LSW_MODE_MERGE, b) && build(2, false, LSW_MODE_MERGE, c),
        "random models failed");
  CHECK(a == b, "same seed gave different models");
  CHECK(a != c, "different seeds gave the same model");
  CHECK(build(1, true, LSW_MODE_BASE, base) && build(1, true, LSW_MODE_UNFUSED, ad), "random adapter models failed");
  CHECK(base == a, "BASE mode differs from the bare model");
  CHECK(ad != a, "the adapter changed nothing");
  lsw_model *m = nullptr;
  OK(lsw_model_create(&t.c, &m));
  int64_t sh[1] = {t.c.hidden_size};
  CHECK(lsw_model_add_random_tensor(m, "norm.weight", LSW_DTYPE_F32, 1, sh, 1, 0.f) == LSW_E_INVALID_ARGUMENT, "scale 0 accepted");
  CHECK(lsw_model_add_random_tensor(m, "norm.weight", LSW_DTYPE_F16, 1, sh, 1, 0.1f) == LSW_E_FORMAT, "F16 norm accepted");
  lsw_model_free(m);
  double gbs = 0;
  OK(lsw_measure_bandwidth(LSW_BACKEND_CPU, 8 << 20, &gbs));
  CHECK(gbs > 0.1 && gbs < 10000, "bandwidth %g GB/s", gbs);
  remove("/tmp/lsw_test_rand.bin");
}

// lsw_model_create refuses each bad value of one config field, with an error naming the field
static void check_config_refused(const TinyModel &t, int32_t lsw_model_config::*field, const char *name,
                                 std::initializer_list<int32_t> bad_values) {
  for (int32_t bad : bad_values) {
    TinyModel tb = t;
    tb.c.*field = bad;
    lsw_model *m = nullptr;
    CHECK(lsw_model_create(&tb.c, &m) == LSW_E_INVALID_ARGUMENT && m == nullptr, "%s %d accepted", name, bad);
    CHECK(strstr(lsw_last_error(), name) != nullptr, "message: '%s'", lsw_last_error());
  }
}

// lsw_model_config.prefill_precision: validated; the CPU backend computes in fp32 either way (bit-identical logits)
static void test_precision() {
  TinyModel t = make_tiny(LSW_DTYPE_BF16, false, false, "/tmp/lsw_test_prec.bin");
  check_config_refused(t, &lsw_model_config::prefill_precision, "prefill_precision", {2, -1, 7});
  const int n = 11, V = t.c.vocab_size;
  std::vector<int32_t> toks(n);
  for (auto &x : toks) x = (int32_t)(rng() % V);
  std::vector<float> lg[2];
  for (int p = 0; p < 2; p++) {
    TinyModel tp = t;
    tp.c.prefill_precision = p == 0 ? LSW_PRECISION_PRECISE : LSW_PRECISION_FAST;
    lsw_model *m = nullptr;
    OK(load(tp, &m));
    if (!m) return;
    lg[p].assign((size_t)n * V, 0.f);
    OK(lsw_model_eval(m, toks.data(), n, lg[p].data(), 1));
    lsw_model_free(m);
  }
  bool nonzero = false;
  for (float v : lg[0]) nonzero |= v != 0.f;
  CHECK(nonzero, "logits all zero");
  CHECK(lg[0] == lg[1], "CPU: FAST prefill differs from PRECISE (the CPU computes in fp32 either way)");
  remove("/tmp/lsw_test_prec.bin");
}

// lsw_model_config.kv_dtype: validated; an F16 / BF16 cache matches the fp64 reference that rounds K and V when they
// are stored (token by token and in prompt chunks), its logits differ from the F32 cache's (the rounding is real), and
// the cache takes half the bytes (device_bytes_peak).
static void test_kv_dtype() {
  TinyModel t = make_tiny(LSW_DTYPE_F16, true, false, "/tmp/lsw_test_kv.bin");
  check_config_refused(t, &lsw_model_config::kv_dtype, "kv_dtype", {3, -1, 7});
  const int n = 13, V = t.c.vocab_size;
  std::vector<int32_t> toks(n);
  for (auto &x : toks) x = (int32_t)(rng() % V);
  std::vector<int> re;
  std::vector<double> rg;
  std::vector<float> seq[3], pre[3];
  uint64_t peak[3];
  for (int d = 0; d < 3; d++) {
    TinyModel tk = t;
    tk.c.kv_dtype = DTYPES[d];
    lsw_model *m = nullptr;
    OK(load(tk, &m));
    if (!m) return;
    seq[d].assign((size_t)n * V, 0.f);
    pre[d].assign((size_t)n * V, 0.f);
    for (int i = 0; i < n; i++) OK(lsw_model_eval(m, &toks[i], 1, &seq[d][(size_t)i * V], 0));
    OK(lsw_model_reset(m));
    OK(lsw_model_eval(m, toks.data(), 6, pre[d].data(), 1));  // prompt chunks: the second reads cached positions
    OK(lsw_model_eval(m, toks.data() + 6, n - 6, pre[d].data() + (size_t)6 * V, 1));
    lsw_model_stats st;
    OK(lsw_model_get_stats(m, &st));
    peak[d] = st.device_bytes_peak;
    lsw_model_free(m);
    const auto want = ref_forward(tk, toks, re, rg);
    const double r_seq = max_rel_ref(seq[d], want), r_pre = max_rel_ref(pre[d], want);
    // F16 / BF16: the engine rounds its fp32 K / V, the reference its fp64 ones, so an element within fp32 noise of a
    // rounding boundary may land one unit apart (on one SIMD level and not another: their fp32 sums differ).  Each such
    // element moves the logits by ~1e-4 (f16), against ~5e-4 for rounding none of them (r_unr: the unrounded
    // reference).  So: well inside that distance.  The op-level test (test_attention_kv) checks exactness on given
    // rounded values.
    const double r_unr = d == 0 ? 0.0 : max_rel_ref(seq[d], ref_forward(t, toks, re, rg));
    const double tol = d == 0 ? 2e-5 : 0.3 * r_unr;
    CHECK(r_seq < tol, "kv %s: token by token vs fp64 reference %g (tolerance %g)", DTN[d], r_seq, tol);
    CHECK(r_pre < tol, "kv %s: prompt chunks vs fp64 reference %g (tolerance %g)", DTN[d], r_pre, tol);
    if (d == 0) continue;
    // the rounding is visible: the unrounded reference and the F32 cache's logits are farther away than the tolerance
    CHECK(r_unr > 1e-4, "kv %s: as close to the unrounded reference as the F32 cache (%g)", DTN[d], r_unr);
    CHECK(max_rel(seq[d], seq[0]) > 1e-4, "kv %s: logits hardly differ from the F32 cache's (%g)", DTN[d],
          max_rel(seq[d], seq[0]));
    const uint64_t half = (uint64_t)t.c.num_layers * t.c.max_context * t.c.num_kv_heads * t.c.head_dim * 4;
    CHECK(peak[0] - peak[d] == half, "kv %s: device_bytes_peak %llu, F32 cache %llu (expected %llu less)", DTN[d],
          (unsigned long long)peak[d], (unsigned long long)peak[0], (unsigned long long)half);
  }
  remove("/tmp/lsw_test_kv.bin");
}

// lsw_model_config.merge_prompt: validated.  BATCHED merge-mode prompts (CPU) run as fused mode runs a prompt (logits
// and routes bit for bit), merge and count nothing -- also past the 256-token chunk (no lone last token: it would
// merge); the single tokens after them merge from what the working copies hold: the whole sequence matches the fp64
// reference (f32 weights: merged-weight rounding below 2e-5) and the token-wise merge mode, and the merge counters are
// exactly those of a merge keyed on the last merged routes.  The scenario puts a single token after a prompt ending
// with the same token (the same layer-0 experts: router on the q input), so a skip decided on the last prompt token's
// routes instead of the working copies' content runs stale weights.  Pre-gated and layer-wise adapters.
static void test_merge_prompt() {
  const char *P = "/tmp/lsw_test_mprompt.bin";
  {
    TinyModel t = make_tiny(LSW_DTYPE_F32, false, false, P);
    check_config_refused(t, &lsw_model_config::merge_prompt, "merge_prompt", {2, -1, 7});
  }
  for (int lw = 0; lw < 2; lw++) {
    const char *name = lw ? "layer-wise E4 K2" : "pre-gated E4 K2";
    TinyModel t = make_tiny(LSW_DTYPE_F32, lw == 0, false, P);
    if (lw) add_lw(t, 0, LSW_ROUTER_LAYERWISE, 4, 2, false, {{0, 1, 2, 3, 4, 5, 6}, {3, 6}});  // layer 0 routes on q's input
    else add_adapter(t, LSW_ROUTER_PREGATED, 4, 2, 3, {0, 1, 2, 3, 4, 5, 6});
    t.c.max_context = 300;
    const int V = t.c.vocab_size, NL = t.c.num_layers, K = 2, rows = lw ? NL : 1, RK = rows * K;
    // prompt (20, ending with X) | X | Y | Y | segment (5, ending with Z) | Z | Y | segment (3) | Y
    // (the last Y: Y is merged, skipped -- unless a batched segment spoilt the merge state)
    std::vector<int32_t> seq(20);
    for (auto &x : seq) x = (int32_t)(rng() % V);
    const int32_t X = seq.back(), Y = (X + 11) % V;
    std::vector<int32_t> seg(5), seg2(3);
    for (auto &x : seg) x = (int32_t)(rng() % V);
    for (auto &x : seg2) x = (int32_t)(rng() % V);
    const int32_t Z = seg.back();
    const std::vector<int> lens = {20, 1, 1, 1, 5, 1, 1, 3, 1};
    for (int32_t x : {X, Y, Y}) seq.push_back(x);
    seq.insert(seq.end(), seg.begin(), seg.end());
    for (int32_t x : {Z, Y}) seq.push_back(x);
    seq.insert(seq.end(), seg2.begin(), seg2.end());
    seq.push_back(Y);
    const int n = (int)seq.size(), NS = (int)lens.size();
    std::vector<char> single;
    for (int l : lens) single.insert(single.end(), l, l == 1);
    // fp64 reference (ref_forward: layer-wise and static adapters; the pre-gated case is checked against the token-wise
    // merge mode, which test_adapters checks against merged weights)
    std::vector<int> re;
    std::vector<double> rg;
    const auto want = lw ? ref_forward(t, seq, re, rg) : std::vector<std::vector<double>>{};
    lsw_model *m[3] = {};  // fused, merge batched, merge token-wise
    for (int i = 0; i < 3; i++) {
      TinyModel ti = t;
      ti.c.merge_prompt = i == 2 ? LSW_MERGE_PROMPT_TOKENWISE : LSW_MERGE_PROMPT_BATCHED;
      OK(load(ti, &m[i]));
      if (!m[i]) return;
      OK(lsw_model_set_mode(m[i], i == 0 ? LSW_MODE_FUSED : LSW_MODE_MERGE));
    }
    std::vector<float> lg[3];
    std::vector<int32_t> e[3];
    std::vector<float> g[3];
    lsw_model_stats st[3][10];
    for (int i = 0; i < 3; i++) {
      lg[i].assign((size_t)n * V, NAN);
      int pos = 0;
      for (size_t s = 0; s < lens.size(); s++) {
        OK(lsw_model_get_stats(m[i], &st[i][s]));
        OK(lsw_model_eval(m[i], &seq[pos], lens[s], &lg[i][(size_t)pos * V], 1));
        pos += lens[s];
      }
      OK(lsw_model_get_stats(m[i], &st[i][lens.size()]));
      e[i].assign((size_t)n * RK, -9);
      g[i].assign((size_t)n * RK, NAN);
      OK(lsw_model_get_routes(m[i], 0, 0, n, e[i].data(), g[i].data()));
    }
    // the prompt: fused == batched merge, bit for bit; nothing merged or counted
    const size_t P0 = (size_t)20 * V;
    CHECK(std::equal(lg[0].begin(), lg[0].begin() + P0, lg[1].begin()), "%s: batched merge prompt != fused prompt", name);
    CHECK(std::equal(e[0].begin(), e[0].begin() + 20 * RK, e[1].begin()) && std::equal(g[0].begin(), g[0].begin() + 20 * RK, g[1].begin()),
          "%s: batched merge prompt routes != fused", name);
    CHECK(st[1][1].merge_steps == 0 && st[1][1].merge_skipped == 0, "%s: batched prompt counted %lld/%lld", name,
          (long long)st[1][1].merge_steps, (long long)st[1][1].merge_skipped);
    for (int sg : {4, 7})
      CHECK(st[1][sg + 1].merge_steps == st[1][sg].merge_steps && st[1][sg + 1].merge_skipped == st[1][sg].merge_skipped,
            "%s: batched segment %d counted", name, sg);
    // the adapter matters (a stale merge would show): base-mode logits of the same sequence differ
    {
      std::vector<float> base((size_t)n * V);
      OK(lsw_model_set_mode(m[0], LSW_MODE_BASE));
      OK(lsw_model_reset(m[0]));
      OK(lsw_model_eval(m[0], seq.data(), n, base.data(), 1));
      OK(lsw_model_set_mode(m[0], LSW_MODE_FUSED));
      CHECK(max_rel(base, lg[2]) > 1e-2, "%s: the adapter hardly changes the logits (%g)", name, max_rel(base, lg[2]));
    }
    // the whole sequence vs the fp64 reference, batched and token-wise; routes of both == the reference
    for (int i = 1; i < 3 && lw; i++) {
      const double r = max_rel_ref(lg[i], want);
      CHECK(r < 2e-5, "%s %s: logits vs fp64 reference %g", name, i == 1 ? "batched" : "token-wise", r);
      int bad_e = 0, bad_g = 0;
      for (size_t k = 0; k < e[i].size(); k++) bad_e += e[i][k] != re[k], bad_g += std::fabs(g[i][k] - rg[k]) > 1e-5;
      CHECK(bad_e == 0 && bad_g == 0, "%s %s: routes vs reference: %d experts, %d gates wrong", name,
            i == 1 ? "batched" : "token-wise", bad_e, bad_g);
    }
    CHECK(max_rel(lg[1], lg[2]) < 2e-5, "%s: batched vs token-wise %g", name, max_rel(lg[1], lg[2]));
    if (!lw) {  // pre-gated on the q input: the router reads the normed embedding on both paths
      CHECK(e[1] == e[2] && max_rel(g[1], g[2]) < 1e-6, "%s: batched routes != token-wise", name);
    }
    // the premise: layer 0's experts follow the token (router on the q input)
    CHECK(std::equal(&e[1][19 * RK], &e[1][19 * RK] + K, &e[1][20 * RK]), "%s: X after X: different layer-0 experts", name);
    CHECK(std::equal(&e[1][27 * RK], &e[1][27 * RK] + K, &e[1][28 * RK]), "%s: Z after Z: different layer-0 experts", name);
    // counters: per single token (per routed layer), skipped iff its routes equal those of the previous single token
    // (the first one after the reset of a fresh model merges)
    long long es = 0, ek = 0;
    for (int L = 0; L < rows; L++) {
      int prev = -1;
      for (int p = 20; p < n; p++) {
        if (!single[p]) continue;  // the batched segments
        bool same = prev >= 0;
        for (int k = 0; k < K && same; k++)
          same = e[1][(size_t)p * RK + L * K + k] == e[1][(size_t)prev * RK + L * K + k] &&
                 g[1][(size_t)p * RK + L * K + k] == g[1][(size_t)prev * RK + L * K + k];
        (same ? ek : es)++;
        prev = p;
      }
    }
    CHECK(st[1][NS].merge_steps == es && st[1][NS].merge_skipped == ek, "%s: merge counters %lld/%lld, expected %lld/%lld",
          name, (long long)st[1][NS].merge_steps, (long long)st[1][NS].merge_skipped, es, ek);
    // (layer 0 at least: its experts follow the token; a layer-wise router further up reads context)
    CHECK(st[1][NS].merge_skipped - st[1][NS - 1].merge_skipped >= 1, "%s: the Y after the second segment is not skipped",
          name);
    // token-wise counts every position (today's behaviour)
    CHECK(st[2][NS].merge_steps + st[2][NS].merge_skipped == (long long)n * rows, "%s: token-wise counts %lld + %lld",
          name, (long long)st[2][NS].merge_steps, (long long)st[2][NS].merge_skipped);
    // a 257-token prompt: chunks of 255 + 2 (never a lone last token); nothing merged; close to fused's 256 + 1
    {
      std::vector<int32_t> lp(257);
      for (auto &x : lp) x = (int32_t)(rng() % V);
      std::vector<float> a((size_t)257 * V), b((size_t)257 * V);
      std::vector<int32_t> ea((size_t)257 * RK), eb((size_t)257 * RK);
      std::vector<float> ga((size_t)257 * RK), gb((size_t)257 * RK);
      lsw_model_stats s0, s1;
      OK(lsw_model_reset(m[0]));
      OK(lsw_model_reset(m[1]));
      OK(lsw_model_get_stats(m[1], &s0));
      OK(lsw_model_eval(m[0], lp.data(), 257, a.data(), 1));
      OK(lsw_model_eval(m[1], lp.data(), 257, b.data(), 1));
      OK(lsw_model_get_stats(m[1], &s1));
      CHECK(s1.merge_steps == s0.merge_steps && s1.merge_skipped == s0.merge_skipped,
            "%s: 257-token batched prompt merged (%lld -> %lld steps)", name, (long long)s0.merge_steps,
            (long long)s1.merge_steps);
      CHECK(max_rel(b, a) < 1e-5, "%s: 257-token batched prompt vs fused %g", name, max_rel(b, a));
      OK(lsw_model_get_routes(m[0], 0, 0, 257, ea.data(), ga.data()));
      OK(lsw_model_get_routes(m[1], 0, 0, 257, eb.data(), gb.data()));
      CHECK(ea == eb, "%s: 257-token batched prompt routes != fused", name);
      // then a decode step merges (after a reset: nothing merged yet)
      int32_t tok = lp[0], next;
      OK(lsw_model_step(m[1], tok, &next));
      OK(lsw_model_get_stats(m[1], &s0));
      CHECK(s0.merge_steps == s1.merge_steps + rows && s0.merge_skipped == s1.merge_skipped,
            "%s: the step after the long prompt: %lld/%lld", name, (long long)s0.merge_steps, (long long)s0.merge_skipped);
    }
    for (auto *x : m) lsw_model_free(x);
  }
  remove(P);
}

// lsw_measure_matmul: argument checks, and a finite positive rate on the CPU for every dtype
static void test_measure_matmul() {
  double tf = -1;
  auto bad = [&](lsw_status st, const char *what) {
    CHECK(st == LSW_E_INVALID_ARGUMENT && strlen(lsw_last_error()) > 0, "%s accepted (%d)", what, st);
    CHECK(tf == -1, "%s wrote a result", what);
  };
  bad(lsw_measure_matmul(LSW_BACKEND_CPU, LSW_DTYPE_F16, 8, 8, 8, 0, nullptr), "NULL tflops");
  bad(lsw_measure_matmul(5, LSW_DTYPE_F16, 8, 8, 8, 0, &tf), "backend 5");
  bad(lsw_measure_matmul(LSW_BACKEND_CPU, 3, 8, 8, 8, 0, &tf), "dtype 3");
  bad(lsw_measure_matmul(LSW_BACKEND_CPU, LSW_DTYPE_F16, 0, 8, 8, 0, &tf), "rows 0");
  bad(lsw_measure_matmul(LSW_BACKEND_CPU, LSW_DTYPE_F16, 8, -8, 8, 0, &tf), "cols -8");
  bad(lsw_measure_matmul(LSW_BACKEND_CPU, LSW_DTYPE_F16, 8, 8, 0, 0, &tf), "n 0");
  bad(lsw_measure_matmul(LSW_BACKEND_CPU, LSW_DTYPE_F16, 8, 8, 8, -1, &tf), "n_threads -1");
  bad(lsw_measure_matmul(LSW_BACKEND_CPU, LSW_DTYPE_F32, 65536, 65536, 8, 0, &tf), "16 GiB of weights");
  CHECK(strstr(lsw_last_error(), "GiB") != nullptr, "size message: '%s'", lsw_last_error());
  if (!lsw_cuda_available()) {
    lsw_status st = lsw_measure_matmul(LSW_BACKEND_CUDA, LSW_DTYPE_BF16, 64, 64, 64, 0, &tf);
    CHECK(st == LSW_E_BACKEND_UNAVAILABLE && strlen(lsw_last_error()) > 0 && tf == -1, "CUDA matmul rate without a GPU: %d", st);
  }
  for (int d = 0; d < 3; d++)
    for (int threads : {1, 0}) {
      double r = -1;
      OK(lsw_measure_matmul(LSW_BACKEND_CPU, DTYPES[d], 96, 136, 37, threads, &r));
      CHECK(std::isfinite(r) && r > 1e-6 && r < 1000, "%s, %d threads: %g TFLOP/s", DTN[d], threads, r);
    }
}

static void test_backend_errors() {
  float x = 1.f, y;
  if (!lsw_cuda_available()) {
    lsw_status st = lsw_op_rmsnorm(LSW_BACKEND_CUDA, 1, 1, &x, &x, 1e-5f, &y);
    CHECK(st == LSW_E_BACKEND_UNAVAILABLE && strlen(lsw_last_error()) > 0, "CUDA op without CUDA: %d", st);
  }
  CHECK(lsw_op_rmsnorm(7, 1, 1, &x, &x, 1e-5f, &y) == LSW_E_INVALID_ARGUMENT, "unknown backend accepted");
  CHECK(lsw_op_matmul(LSW_BACKEND_CPU, 9, 1, 1, 1, &x, &x, &y) == LSW_E_INVALID_ARGUMENT, "unknown dtype accepted");
}

int main() {
  printf("lsw %s, cpu features: %s\n", lsw_version(), lsw_cpu_features());
  test_matmul();
  test_rmsnorm();
  test_rope();
  test_attention();
  test_attention_kv();
  test_swiglu();
  test_sgmm();
  test_sgmm_exact();
  test_sgmm_no_drift();
  test_lora_fused();
  test_route();
  test_sampler();
  test_sampler_reference();
  test_model();
  test_nonfinite_model();
  test_adapters();
  test_layerwise();
  test_last_error_threads();
  test_random_and_base();
  test_precision();
  test_kv_dtype();
  test_merge_prompt();
  test_measure_matmul();
  test_backend_errors();
  printf("%d checks, %d failed\n", g_checks, g_fail);
  return g_fail ? 1 : 0;
}
