// SPDX-License-Identifier: Apache-2.0
// The blockwise launchers on a GPU against the host engine (blockwise_kernels_test.inl). Without
// a CUDA device every test reports itself as skipped.
#include <lowbit/cuda.cuh>
#include <lowbit/lowbit.hpp>

#include <functional>
#include <vector>

#include "device_harness.cuh"
#include "test_util.hpp"

#include "blockwise_kernels_test.inl"
