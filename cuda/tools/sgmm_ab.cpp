// A-B timing of the CPU SGMM (lsw_op_sgmm, unchanged in the C ABI since version 1) for one decode step's merge of a
// model's q and v weights, to compare two builds of the library in one shell loop; kept as the evidence for
// cuda/BENCH_CPU.md's session 47 section; not part of the build.
//   g++ -O2 -std=c++17 -Icuda/include -o /tmp/sgmm_ab cuda/tools/sgmm_ab.cpp -Lbuild/native -llsw
//   LD_LIBRARY_PATH=<lib dir> /tmp/sgmm_ab [layers hidden kv_dim rank top_k reps]     (default: SmolLM-135M, r16 top-2)
// Prints the median ms of reps merges (q: hidden x hidden and v: kv_dim x hidden per layer, F16, random values).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "lsw.h"

int main(int argc, char **argv) {
  const int L = argc > 1 ? atoi(argv[1]) : 30, H = argc > 2 ? atoi(argv[2]) : 576, KV = argc > 3 ? atoi(argv[3]) : 192;
  const int R = argc > 4 ? atoi(argv[4]) : 16, K = argc > 5 ? atoi(argv[5]) : 2, reps = argc > 6 ? atoi(argv[6]) : 21;
  std::mt19937 rng(47);
  auto h = [&](size_t n) {  // random F16 values in [-1, 1) (exponent 14 or below: no inf / NaN)
    std::vector<uint16_t> v(n);
    for (auto &x : v) x = (uint16_t)((rng() & 0x83ff) | ((10 + rng() % 5) << 10));
    return v;
  };
  struct M { int rows; std::vector<uint16_t> w0, w, a, b; };
  M q{H, h((size_t)L * H * H), std::vector<uint16_t>((size_t)L * H * H), h((size_t)L * K * R * H), h((size_t)L * K * H * R)};
  M v{KV, h((size_t)L * KV * H), std::vector<uint16_t>((size_t)L * KV * H), h((size_t)L * K * R * H), h((size_t)L * K * KV * R)};
  std::vector<float> g(K, 1.f / K);
  std::vector<double> ms;
  for (int i = 0; i < reps + 2; i++) {
    const auto t0 = std::chrono::steady_clock::now();
    for (M *m : {&q, &v})
      if (lsw_op_sgmm(LSW_BACKEND_CPU, LSW_DTYPE_F16, L, m->rows, H, R, K, m->w0.data(), m->w.data(), m->a.data(),
                      m->b.data(), g.data()) != LSW_OK) {
        fprintf(stderr, "lsw_op_sgmm: %s\n", lsw_last_error());
        return 1;
      }
    if (i >= 2) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  printf("%s: %d layers, q %dx%d + v %dx%d, rank %d top-%d: median %.3f ms (p10 %.3f, p90 %.3f)\n", lsw_version(), L, H,
         H, KV, H, R, K, ms[ms.size() / 2], ms[ms.size() / 10], ms[ms.size() * 9 / 10]);
  return 0;
}
