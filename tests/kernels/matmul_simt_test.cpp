// SPDX-License-Identifier: Apache-2.0
// The fused matmul's CUDA kernels run on the SIMT executor (the same kernel source, compiled by
// g++/clang++) in forward, reverse and random thread orders, strict mode, against the host
// lowbit::matmul. See matmul_kernels_test.inl.
#include <lowbit/cuda/matmul.cuh>
#include <lowbit/lowbit.hpp>

#include <functional>
#include <limits>
#include <vector>

#include "simt_harness.hpp"
#include "test_util.hpp"

// The executor needs no device.
#define KT_REQUIRE_DEVICE() \
  do {                      \
  } while (0)

#include "matmul_kernels_test.inl"
