// SPDX-License-Identifier: Apache-2.0
// The LLM.int8 launchers on a GPU against the host engine (int8_kernels_test.inl): the kernel-only
// path bit for bit, the cuBLASLt int8 GEMM (exact) and the cuBLAS outlier GEMM (within float32
// rounding of the host), the same tests the SIMT build runs against its cuBLAS(Lt) stand-in.
// Without a CUDA device every test reports itself as skipped.
#include <lowbit/cuda.cuh>
#include <lowbit/cuda/int8.cuh>
#include <lowbit/lowbit.hpp>

#include <functional>
#include <vector>

#include "device_harness.cuh"
#include "test_util.hpp"

#include "int8_kernels_test.inl"
