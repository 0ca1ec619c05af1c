// SPDX-License-Identifier: Apache-2.0
/// @file lowbit.hpp
/// @brief Host umbrella header of lowbit. Includes no CUDA header; usable from any C++17 compiler.
#pragma once

#include "config.hpp"
#include "codecs.hpp"
#include "convert.hpp"
#include "dtype.hpp"
#include "format.hpp"
#include "host/engine.hpp"
#include "int8/matmul.hpp"
#include "matmul/matmul.hpp"
#include "memory.hpp"
#include "quant/blockwise.hpp"
#include "quant/layout.hpp"
#include "quant/blockscaled.hpp"
#include "quant/scale_layout.hpp"
#include "quant_tensor.hpp"
#include "scaled_tensor.hpp"
#include "status.hpp"
