// SPDX-License-Identifier: Apache-2.0
/// @file traits.hpp
/// @brief Compile-time facts about codecs, for static_asserts and generic code.
#pragma once

#include "codebooks.hpp"
#include "integer.hpp"
#include "minifloat.hpp"

#include <type_traits>

LOWBIT_NAMESPACE_BEGIN
namespace codecs {

/// The code storage type of a codec.
template <class Codec>
using storage_t = typename Codec::storage_type;

/// Bits per code of a codec.
template <class Codec>
inline constexpr int bits_v = Codec::bits;

/// True for codecs whose `encode(float)` / `decode(code)` need no scale argument (minifloats and
/// the bitsandbytes codebooks); false for the integer codecs, which take the scale explicitly.
template <class Codec, class = void>
struct is_element_codec : std::false_type {};
template <class Codec>
struct is_element_codec<Codec, std::void_t<decltype(Codec::decode(storage_t<Codec>{})),
                                           decltype(Codec::encode(0.0f))>> : std::true_type {};
template <class Codec>
inline constexpr bool is_element_codec_v = is_element_codec<Codec>::value;

/// Short name of a codec, as used in docs, tests and benchmark rows.
template <class Codec>
struct codec_name;
#define LOWBIT_CODEC_NAME(C, S)                           \
  template <>                                             \
  struct codec_name<C> {                                  \
    static constexpr const char* value = S;               \
  };
LOWBIT_CODEC_NAME(e4m3fn, "e4m3fn")
LOWBIT_CODEC_NAME(e5m2, "e5m2")
LOWBIT_CODEC_NAME(e2m3fn, "e2m3fn")
LOWBIT_CODEC_NAME(e3m2fn, "e3m2fn")
LOWBIT_CODEC_NAME(e2m1fn, "e2m1fn")
LOWBIT_CODEC_NAME(e3m0, "e3m0")
LOWBIT_CODEC_NAME(e8m0fnu, "e8m0fnu")
LOWBIT_CODEC_NAME(nf4, "nf4")
LOWBIT_CODEC_NAME(bnb_fp4, "bnb_fp4")
LOWBIT_CODEC_NAME(bnb_dynamic8, "bnb_dynamic8")
LOWBIT_CODEC_NAME(int8_absmax, "int8_absmax")
LOWBIT_CODEC_NAME(uint8_zeropoint, "uint8_zeropoint")
#undef LOWBIT_CODEC_NAME
template <class Codec>
inline constexpr const char* codec_name_v = codec_name<Codec>::value;

}  // namespace codecs
LOWBIT_NAMESPACE_END
