// SPDX-License-Identifier: Apache-2.0
// The LLM.int8 CUDA launchers with their kernels run on the SIMT executor (the same kernel
// source, compiled by g++/clang++), in forward, reverse and random thread orders, strict mode,
// against the host engine. See int8_kernels_test.inl.
#include <lowbit/cuda/int8.cuh>
#include <lowbit/lowbit.hpp>

#include <functional>
#include <vector>

#include "simt_harness.hpp"
#include "test_util.hpp"

#include "int8_kernels_test.inl"
