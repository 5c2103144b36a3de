// Error mapping and device discovery.
#include "common.cuh"
#include "../backend_cuda.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

lsw_status lswc_cuda_fail(cudaError_t e, const char *what, const char *file, int line) {
  const char *f = file;
  for (const char *p = file; *p; p++)
    if (*p == '/') f = p + 1;
  if (e == cudaErrorMemoryAllocation) {
    size_t fr = 0, tot = 0;
    cudaGetLastError();  // clear the (non-sticky) allocation error before querying
    if (cudaMemGetInfo(&fr, &tot) == cudaSuccess)
      lsw_set_error("CUDA out of device memory in %s (%s:%d): %.1f MiB free of %.1f MiB", what, f, line,
                    fr / 1048576.0, tot / 1048576.0);
    else
      lsw_set_error("CUDA out of device memory in %s (%s:%d)", what, f, line);
    return LSW_E_OUT_OF_MEMORY;
  }
  lsw_set_error("CUDA error in %s (%s:%d): %s (%s)", what, f, line, cudaGetErrorString(e), cudaGetErrorName(e));
  return LSW_E_DEVICE;
}

int lswc_available() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
    cudaGetLastError();
    return 0;
  }
  cudaDeviceProp prop;
  for (int d = 0; d < n; d++)  // code is built for sm_90 (+ PTX): needs compute capability >= 9.0
    if (cudaGetDeviceProperties(&prop, d) == cudaSuccess && prop.major >= 9) return 1;
  return 0;
}

namespace lswc {
int sm_count() {
  static std::atomic<int> cache[16];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError();
    dev = 0;
  }
  std::atomic<int> &slot = cache[dev & 15];
  int n = slot.load(std::memory_order_relaxed);
  if (n <= 0) {
    if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n < 1) {
      cudaGetLastError();
      n = 132;
    }
    slot.store(n, std::memory_order_relaxed);
  }
  return n;
}
bool env_flag(const char *name, bool dflt) {
  const char *v = getenv(name);
  return v && *v ? strcmp(v, "0") != 0 : dflt;
}
int env_mode012(const char *name, int dflt) {
  const char *v = getenv(name);
  return v && v[0] >= '0' && v[0] <= '2' && !v[1] ? v[0] - '0' : dflt;
}
}  // namespace lswc
