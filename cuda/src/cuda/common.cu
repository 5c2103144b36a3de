// Error mapping and device discovery.
#include "common.cuh"
#include "../backend_cuda.h"

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
