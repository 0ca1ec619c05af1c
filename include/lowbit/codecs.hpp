// SPDX-License-Identifier: Apache-2.0
/// @file codecs.hpp
/// @brief All element codecs: minifloats, bitsandbytes codebooks, integer codecs, nibble packing.
#pragma once

#include "codecs/codebooks.hpp"
#include "codecs/integer.hpp"
#include "codecs/minifloat.hpp"
#include "codecs/packing.hpp"
#include "codecs/traits.hpp"
