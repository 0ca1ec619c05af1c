// SPDX-License-Identifier: Apache-2.0
/// @file io.hpp
/// @brief Umbrella header of lowbit::io: safetensors files, sharded checkpoints, bitsandbytes,
///        fine-grained FP8, gpt-oss MXFP4 and compressed-tensors layouts and transformers'
///        quantization_config. Needs nlohmann/json (target lowbit::io).
#pragma once

#include "io/bnb.hpp"
#include "io/checkpoint.hpp"
#include "io/compressed_tensors.hpp"
#include "io/fp8_block.hpp"
#include "io/gguf.hpp"
#include "io/mxfp4.hpp"
#include "io/safetensors.hpp"
#include "io/transformers.hpp"
