// SPDX-License-Identifier: Apache-2.0
// The blockwise launchers on a GPU against the host engine (blockwise_kernels_test.inl). Without
// a CUDA device every test reports itself as skipped.
#include <lowbit/cuda.cuh>
#include <lowbit/lowbit.hpp>

#include <functional>
#include <vector>

#include "device_harness.cuh"
#include "test_util.hpp"

// Every test that runs a kernel needs a device: without one it is skipped (gtest prints
// "[  SKIPPED ]" for it, and CTest reports the binary as skipped, never as passed).
#define KT_REQUIRE_DEVICE()                                                                    \
  do {                                                                                         \
    if (!lowbit::cuda::device_available()) GTEST_SKIP() << "no CUDA device: GPU test skipped"; \
  } while (0)

#include "blockwise_kernels_test.inl"
