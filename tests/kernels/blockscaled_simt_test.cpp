// SPDX-License-Identifier: Apache-2.0
// The block-scaled CUDA launchers with their kernels run on the SIMT executor (the same kernel
// source, compiled by g++/clang++), in forward, reverse and random thread orders, strict mode,
// against the host engine. See blockscaled_kernels_test.inl.
#include <lowbit/cuda/blockscaled.cuh>
#include <lowbit/lowbit.hpp>

#include <functional>
#include <vector>

#include "simt_harness.hpp"
#include "test_util.hpp"

// The executor needs no device.
#define KT_REQUIRE_DEVICE() \
  do {                      \
  } while (0)

#include "blockscaled_kernels_test.inl"
