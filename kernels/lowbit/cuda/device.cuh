// SPDX-License-Identifier: Apache-2.0
/// @file device.cuh
/// @brief Device discovery for lowbit's CUDA layer.
#pragma once

#include <lowbit/config.hpp>

#include <cuda_runtime.h>

LOWBIT_NAMESPACE_BEGIN
namespace cuda {

/// True if the CUDA runtime reports at least one usable device. Never throws; clears the runtime
/// error it may have caused (a machine without a driver reports cudaErrorInsufficientDriver or
/// cudaErrorNoDevice), so later calls do not see it.
inline bool device_available() noexcept {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return count > 0;
}

}  // namespace cuda
LOWBIT_NAMESPACE_END
