// SPDX-License-Identifier: Apache-2.0
/// @file cuda.cuh
/// @brief Umbrella header of lowbit's CUDA layer (`lowbit::cuda` target): the host-safe library
///        plus everything that needs nvcc and the CUDA runtime.
#pragma once

#include <lowbit/lowbit.hpp>

#include "cuda/blockwise.cuh"
#include "cuda/blockscaled.cuh"
#include "cuda/memory.cuh"
#include "cuda/device.cuh"
#include "cuda/int8.cuh"
#include "cuda/matmul.cuh"
