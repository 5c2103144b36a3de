// Probe: what does a kernel boundary of the decode chain cost with programmatic dependent launch (PDL), and would a
// counter hand-off (each block of the producer counts itself in at its end, the consumer's blocks poll that count)
// release the consumer earlier than griddepcontrol.wait, which waits for the whole producer grid to complete and its
// memory to be flushed?
//
// The chain is the Llama-2-7B decode's linears (32 layers of q,k,v / o / gate,up / down, then the lm_head: 129
// GEMVs, F16 weights, 13.2 GB), each reading the previous one's output, captured in one CUDA graph. The GEMV is
// a plain one (2 rows per warp, 4 16-byte chunks per lane in flight, the first batch loaded before the wait), the
// same in every mode; only the hand-off differs:
//   0 plain launches (no PDL)
//   1 PDL, dependents triggered at the start, griddepcontrol.wait before the input is read (the engine's way)
//   2 PDL, triggered at the start, the consumer's thread 0 polls the producer's counter (ld.acquire.gpu) until every
//     producer block has counted itself in (red.release.gpu after a block barrier), then a block barrier
//   3 PDL, no wait at all (wrong results; a lower bound)
//   4 as 2, but thread 0 polls with relaxed reads and takes one acquire fence after (session 43 run 1's SASS showed
//     mode 2's ld.acquire as LDG.STRONG.GPU + CCTL.IVALL: the SM's L1 invalidated at every read of the loop)
// Modes 0, 1, 2 and 4 must give the same bits (checked before any timing). Times: graph replays interleaved by mode,
// rounds x replays, median per mode; % of the copy bandwidth measured in the same process.
//   nvcc -std=c++17 -O3 -gencode arch=compute_90,code=sm_90 -Icuda/include cuda/dev/probe_handoff.cu \
//     -o build/dev/probe_handoff
//   ./build/dev/probe_handoff [rounds] [replays]
#include "../src/cuda/common.cuh"  // (device helpers only: ld_stream, warp_sum)

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <vector>

#define CK(x)                                                                                   \
  do {                                                                                          \
    cudaError_t e_ = (x);                                                                       \
    if (e_ != cudaSuccess) {                                                                    \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));       \
      exit(1);                                                                                  \
    }                                                                                           \
  } while (0)

struct Mat {
  const __half *W;
  int rows, cols;
  const float *x;
  float *y;
  const unsigned *cnt_in;  // modes 2 and 4: the producer's counter (null: first kernel)
  unsigned tgt_in;         // its block count
  unsigned *cnt_out;       // modes 2 and 4: this kernel's counter
  unsigned *reset0, *reset1;  // modes 2 and 4: counters no one polls any more, zeroed by block 0 after its poll
};

constexpr int R = 2, U = 4, WPB = 8, ROWS_PB = R * WPB;

using lswc::ld_stream;
__device__ __forceinline__ float dot8(uint4 w, float4 a, float4 b) {
  const __half2 *h = reinterpret_cast<const __half2 *>(&w);
  float2 f0 = __half22float2(h[0]), f1 = __half22float2(h[1]), f2 = __half22float2(h[2]), f3 = __half22float2(h[3]);
  return f0.x * a.x + f0.y * a.y + f1.x * a.z + f1.y * a.w + f2.x * b.x + f2.y * b.y + f3.x * b.z + f3.y * b.w;
}

template <int MODE>
__global__ void __launch_bounds__(256) gemv_probe(Mat m) {
  if (MODE != 0) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int r0 = blockIdx.x * ROWS_PB + warp * R;
  const int nch = m.cols / 8;
  const uint4 *wr[R];
#pragma unroll
  for (int r = 0; r < R; r++) wr[r] = reinterpret_cast<const uint4 *>(m.W + (size_t)min(r0 + r, m.rows - 1) * m.cols);
  uint4 w[U][R];
#pragma unroll
  for (int u = 0; u < U; u++)
#pragma unroll
    for (int r = 0; r < R; r++) {
      const int c = lane + 32 * u;
      w[u][r] = c < nch ? ld_stream(wr[r] + c) : make_uint4(0, 0, 0, 0);
    }
  if (MODE == 1) asm volatile("griddepcontrol.wait;" ::: "memory");
  if (MODE == 2 || MODE == 4) {
    if (m.cnt_in) {
      if (tid == 0) {
        unsigned v;
        if (MODE == 2) {
          do {
            asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(m.cnt_in) : "memory");
          } while (v < m.tgt_in);
        } else {
          do {
            asm volatile("ld.relaxed.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(m.cnt_in) : "memory");
          } while (v < m.tgt_in);
          asm volatile("fence.acq_rel.gpu;" ::: "memory");
        }
      }
      __syncthreads();
    }
    if (blockIdx.x == 0 && tid == 0) {
      if (m.reset0) *m.reset0 = 0;
      if (m.reset1) *m.reset1 = 0;
    }
  }
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; r++) acc[r] = 0.f;
  const float4 *x4 = reinterpret_cast<const float4 *>(m.x);
  for (int base = 0; base < nch; base += 32 * U) {
    if (base > 0) {
#pragma unroll
      for (int u = 0; u < U; u++)
#pragma unroll
        for (int r = 0; r < R; r++) {
          const int c = base + lane + 32 * u;
          w[u][r] = c < nch ? ld_stream(wr[r] + c) : make_uint4(0, 0, 0, 0);
        }
    }
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int c = base + lane + 32 * u;
      if (c < nch) {
        const float4 a = __ldcg(x4 + 2 * c), b = __ldcg(x4 + 2 * c + 1);
#pragma unroll
        for (int r = 0; r < R; r++) acc[r] += dot8(w[u][r], a, b);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; r++) {
    const float v = lswc::warp_sum(acc[r]);
    if (lane == 0 && r0 + r < m.rows) m.y[r0 + r] = v;
  }
  if (MODE == 2 || MODE == 4) {
    __syncthreads();
    if (tid == 0) asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(m.cnt_out) : "memory");
  }
}

__global__ void fill_half(__half *p, size_t n, unsigned seed, float amp) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
    unsigned h = (unsigned)i * 2654435761u ^ seed;
    h ^= h >> 15; h *= 2246822519u; h ^= h >> 13; h *= 3266489917u; h ^= h >> 16;
    p[i] = __float2half(amp * ((h & 0xffffff) / 8388608.f - 1.f));
  }
}

static void launch(int mode, const Mat &m, cudaStream_t s) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = dim3((m.rows + ROWS_PB - 1) / ROWS_PB);
  cfg.blockDim = dim3(256);
  cfg.stream = s;
  cudaLaunchAttribute at[1];
  at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = at;
  cfg.numAttrs = mode == 0 ? 0 : 1;
  switch (mode) {
    case 0: CK(cudaLaunchKernelEx(&cfg, gemv_probe<0>, m)); break;
    case 1: CK(cudaLaunchKernelEx(&cfg, gemv_probe<1>, m)); break;
    case 2: CK(cudaLaunchKernelEx(&cfg, gemv_probe<2>, m)); break;
    case 3: CK(cudaLaunchKernelEx(&cfg, gemv_probe<3>, m)); break;
    default: CK(cudaLaunchKernelEx(&cfg, gemv_probe<4>, m)); break;
  }
}

int main(int argc, char **argv) {
  const int rounds = argc > 1 ? atoi(argv[1]) : 7, reps = argc > 2 ? atoi(argv[2]) : 20;
  const int L = 32, H = 4096, I = 11008, QKV = 3 * H, V = 32000;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  struct Shape { int rows, cols; };
  std::vector<Shape> shapes;
  for (int l = 0; l < L; l++) {
    shapes.push_back({QKV, H});
    shapes.push_back({H, H});
    shapes.push_back({2 * I, H});
    shapes.push_back({H, I});
  }
  shapes.push_back({V, H});
  const int N = (int)shapes.size();
  std::vector<Mat> mats(N);
  float *x0;
  CK(cudaMalloc(&x0, sizeof(float) * H));
  {
    std::vector<float> hx(H);
    for (int i = 0; i < H; i++) hx[i] = (float)((i * 7919) % 2001) / 1000.f - 1.f;
    CK(cudaMemcpy(x0, hx.data(), sizeof(float) * H, cudaMemcpyHostToDevice));
  }
  unsigned *cnt;
  CK(cudaMalloc(&cnt, sizeof(unsigned) * 32 * N));  // one 128-byte line per counter
  CK(cudaMemset(cnt, 0, sizeof(unsigned) * 32 * N));
  double bytes = 0;
  for (int i = 0; i < N; i++) {
    Mat &m = mats[i];
    m.rows = shapes[i].rows;
    m.cols = shapes[i].cols;
    __half *W;
    const size_t n = (size_t)m.rows * m.cols;
    CK(cudaMalloc(&W, n * sizeof(__half)));
    fill_half<<<1024, 256>>>(W, n, 1234567u + 977u * i, sqrtf(3.f / m.cols));
    CK(cudaGetLastError());
    m.W = W;
    bytes += n * sizeof(__half);
    CK(cudaMalloc(&m.y, sizeof(float) * m.rows));
    m.x = i == 0 ? x0 : mats[i - 1].y;
    m.cnt_in = i == 0 ? nullptr : cnt + 32 * (i - 1);
    m.tgt_in = i == 0 ? 0 : (mats[i - 1].rows + ROWS_PB - 1) / ROWS_PB;
    m.cnt_out = cnt + 32 * i;
    m.reset0 = i >= 2 ? cnt + 32 * (i - 2) : cnt + 32 * (N - 2);
    m.reset1 = i == 0 ? cnt + 32 * (N - 1) : nullptr;
  }
  CK(cudaDeviceSynchronize());
  printf("chain: %d GEMVs, %.3f GB of F16 weights\n", N, bytes / 1e9);

  // copy bandwidth (read + write counted), 1 GiB
  double copy_bw = 0;
  {
    const size_t nb = (size_t)1 << 30;
    void *a, *b;
    CK(cudaMalloc(&a, nb));
    CK(cudaMalloc(&b, nb));
    CK(cudaMemset(a, 1, nb));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<float> t;
    for (int k = 0; k < 12; k++) {
      CK(cudaEventRecord(e0));
      CK(cudaMemcpyAsync(b, a, nb, cudaMemcpyDeviceToDevice));
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      if (k >= 2) t.push_back(ms);
    }
    std::sort(t.begin(), t.end());
    copy_bw = 2.0 * nb / (t[t.size() / 2] * 1e-3);
    printf("copy bandwidth: %.3f TB/s (median of 10, 1 GiB)\n", copy_bw / 1e12);
    CK(cudaFree(a));
    CK(cudaFree(b));
  }

  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  const int NM = 5;
  cudaGraphExec_t ge[NM];
  for (int mode = 0; mode < NM; mode++) {
    cudaGraph_t g;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < N; i++) launch(mode, mats[i], s);
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge[mode], g, 0));
    CK(cudaGraphDestroy(g));
  }
  // validate: modes 1, 2 and 4 give mode 0's bits (the counter modes replayed several times: their counters re-arm)
  const int V_ = shapes[N - 1].rows;
  std::vector<float> ref(V_), got(V_);
  bool ok = true;
  auto run_get = [&](int mode, std::vector<float> &out) {  // (every output poisoned first: stale values cannot pass)
    for (int i = 0; i < N; i++) CK(cudaMemsetAsync(mats[i].y, 0xff, sizeof(float) * mats[i].rows, s));
    CK(cudaGraphLaunch(ge[mode], s));
    CK(cudaStreamSynchronize(s));
    CK(cudaMemcpy(out.data(), mats[N - 1].y, sizeof(float) * V_, cudaMemcpyDeviceToHost));
  };
  run_get(0, ref);
  int finite = 0;
  for (float v : ref) finite += std::isfinite(v) && v != 0.f;
  printf("validate: mode 0 output %d / %d finite non-zero (ref[0..2] = %g %g %g)\n", finite, V_, ref[0], ref[1], ref[2]);
  if (finite < V_ * 0.99) ok = false;
  for (int mode : {1, 2, 2, 2, 1, 2, 4, 4, 4}) {
    run_get(mode, got);
    const bool same = memcmp(ref.data(), got.data(), sizeof(float) * V_) == 0;
    printf("validate: mode %d %s mode 0\n", mode, same ? "bit-identical to" : "DIFFERS from");
    ok = ok && same;
  }
  run_get(3, got);
  printf("validate: mode 3 (no wait) %s mode 0 (expected to differ)\n",
         memcmp(ref.data(), got.data(), sizeof(float) * V_) == 0 ? "equals" : "differs from");
  if (!ok) {
    printf("VALIDATION FAILED: no timing\n");
    return 1;
  }

  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int mode = 0; mode < NM; mode++)
    for (int k = 0; k < 3; k++) CK(cudaGraphLaunch(ge[mode], s));
  CK(cudaStreamSynchronize(s));
  std::vector<std::vector<float>> t(NM);
  for (int rd = 0; rd < rounds; rd++)
    for (int mode = 0; mode < NM; mode++) {
      CK(cudaEventRecord(e0, s));
      for (int k = 0; k < reps; k++) CK(cudaGraphLaunch(ge[mode], s));
      CK(cudaEventRecord(e1, s));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      t[mode].push_back(ms / reps);
    }
  const char *names[NM] = {"plain launches", "PDL + griddepcontrol.wait", "PDL + counter poll (acquire)",
                           "PDL, no wait (bound)", "PDL + counter poll (relaxed)"};
  printf("\n%-28s %10s %10s %10s %8s %12s\n", "mode", "median ms", "min", "max", "% copy", "us/boundary");
  std::vector<double> med(NM);
  for (int mode = 0; mode < NM; mode++) {
    auto v = t[mode];
    std::sort(v.begin(), v.end());
    med[mode] = v[v.size() / 2];
  }
  for (int mode = 0; mode < NM; mode++) {
    auto v = t[mode];
    std::sort(v.begin(), v.end());
    printf("%-28s %10.4f %10.4f %10.4f %7.1f%% %+12.3f\n", names[mode], med[mode], v.front(), v.back(),
           100.0 * (bytes / (med[mode] * 1e-3)) / (copy_bw / 2), (med[mode] - med[1]) * 1e3 / (N - 1));
  }
  printf("(%% copy: weight bytes per replay / median time, against the copy's read rate = copy bandwidth / 2;"
         " us/boundary: against mode 1, per kernel boundary)\n");
  return 0;
}
