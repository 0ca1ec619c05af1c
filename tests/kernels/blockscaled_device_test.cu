// SPDX-License-Identifier: Apache-2.0
// The block-scaled CUDA launchers on a GPU against the host engine (blockscaled_kernels_test.inl).
// Without a CUDA device every test reports itself as skipped.
#include <lowbit/cuda.cuh>
#include <lowbit/lowbit.hpp>

#include <functional>
#include <vector>

#include "device_harness.cuh"
#include "test_util.hpp"

#define KT_REQUIRE_DEVICE()                                                                    \
  do {                                                                                         \
    if (!lowbit::cuda::device_available()) GTEST_SKIP() << "no CUDA device: GPU test skipped"; \
  } while (0)

#include "blockscaled_kernels_test.inl"
