// SPDX-License-Identifier: Apache-2.0
/// @file config.hpp
/// @brief Compiler portability for lowbit: host/device qualifiers, the versioned namespace,
///        a constexpr bit_cast and the one mechanism by which a constant table is visible to
///        both host and device code.
///
/// This header never includes a CUDA header. Under nvcc (`__CUDACC__`) the qualifiers expand to
/// `__host__ __device__`; under any other C++17 compiler they expand to plain `inline`.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#if !defined(__cplusplus) || (__cplusplus < 201703L && !defined(_MSVC_LANG))
#  error "lowbit requires C++17 or newer"
#endif

#define LOWBIT_VERSION_MAJOR 0
#define LOWBIT_VERSION_MINOR 1
#define LOWBIT_VERSION_PATCH 0

#if defined(__CUDACC__) || defined(__HIPCC__)
/// Marks a function callable from host and device code.
#  define LOWBIT_HD __host__ __device__ __forceinline__
/// True while compiling the device half of a CUDA translation unit.
#  if defined(__CUDA_ARCH__)
#    define LOWBIT_DEVICE_PASS 1
#  else
#    define LOWBIT_DEVICE_PASS 0
#  endif
#else
#  define LOWBIT_HD inline
#  define LOWBIT_DEVICE_PASS 0
#endif

/// Asks nvcc to unroll the next loop (so small per-thread arrays stay in registers); nothing
/// elsewhere (g++ -Wall warns about unknown pragmas).
#if defined(__CUDACC__)
#  define LOWBIT_UNROLL _Pragma("unroll")
#else
#  define LOWBIT_UNROLL
#endif

/// Asks the host compiler to unroll the next loop completely (up to 16 trips): the small constant
/// loops over SIMD register arrays (accumulators, rows, blocks of a transposed reduction), which
/// GCC -O2 otherwise keeps in memory. Nothing in a CUDA translation unit: nvcc's front end rejects
/// "GCC unroll" and the host compiler behind it "unroll" (those host kernels only lose the hint).
#if defined(__CUDACC__)
#  define LOWBIT_HOST_UNROLL
#elif defined(__clang__)
#  define LOWBIT_HOST_UNROLL _Pragma("unroll")
#else
#  define LOWBIT_HOST_UNROLL _Pragma("GCC unroll 16")
#endif

/// Asks nvcc to unroll the next loop 8 times, no more: enough loads in flight for a sequential
/// sum, without the whole unrolled body landing in (and being costed with) a kernel's main loop.
/// Device pass only: it also marks host-and-device functions, which nvcc's host pass hands to the
/// host compiler.
#if defined(__CUDA_ARCH__)
#  define LOWBIT_UNROLL_8 _Pragma("unroll 8")
#else
#  define LOWBIT_UNROLL_8
#endif

/// lowbit's API lives in an inline, versioned namespace so that two builds of different versions
/// linked into one program do not violate the one-definition rule.
#define LOWBIT_NAMESPACE_BEGIN \
  namespace lowbit {           \
  inline namespace v0_1 {
#define LOWBIT_NAMESPACE_END \
  }                          \
  }

#if defined(__has_builtin)
#  if __has_builtin(__builtin_bit_cast)
#    define LOWBIT_HAS_BUILTIN_BIT_CAST 1
#  endif
#endif
#if !defined(LOWBIT_HAS_BUILTIN_BIT_CAST) && defined(__GNUC__) && !defined(__clang__) && (__GNUC__ >= 11)
#  define LOWBIT_HAS_BUILTIN_BIT_CAST 1
#endif

#if defined(LOWBIT_HAS_BUILTIN_BIT_CAST)
/// `constexpr` on functions whose constant evaluation needs a bit_cast (all supported compilers).
#  define LOWBIT_BITCAST_CONSTEXPR constexpr
#else
#  define LOWBIT_BITCAST_CONSTEXPR
#endif

/// Defines a constant lookup table once, visible to host code as a `constexpr` array
/// `NAME` and, under nvcc, to device code as a `__constant__` array `NAME##_device` with the same
/// contents (device code may not index a host `constexpr` array at run time).
/// The variadic argument is the braced initializer list; `TYPE` an arithmetic type.
#if defined(__CUDACC__)
#  define LOWBIT_DEFINE_TABLE(TYPE, NAME, N, ...) \
    inline constexpr TYPE NAME[N] = __VA_ARGS__;   \
    static __constant__ TYPE NAME##_device[N] = __VA_ARGS__;
/// Reads element I of a table defined with LOWBIT_DEFINE_TABLE from host or device code.
#  if defined(__CUDA_ARCH__)
#    define LOWBIT_TABLE(NAME) NAME##_device
#  else
#    define LOWBIT_TABLE(NAME) NAME
#  endif
#else
#  define LOWBIT_DEFINE_TABLE(TYPE, NAME, N, ...) inline constexpr TYPE NAME[N] = __VA_ARGS__;
#  define LOWBIT_TABLE(NAME) NAME
#endif

LOWBIT_NAMESPACE_BEGIN

/// `std::bit_cast` for C++17: constexpr where the compiler provides `__builtin_bit_cast`.
template <class To, class From>
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR To bit_cast(const From& from) noexcept {
  static_assert(sizeof(To) == sizeof(From), "bit_cast: sizes differ");
  static_assert(std::is_trivially_copyable<To>::value && std::is_trivially_copyable<From>::value,
                "bit_cast: types must be trivially copyable");
#if defined(LOWBIT_HAS_BUILTIN_BIT_CAST)
  return __builtin_bit_cast(To, from);
#else
  To to{};
  std::memcpy(&to, &from, sizeof(To));
  return to;
#endif
}

/// The IEEE-754 binary32 bit pattern of `x`.
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR std::uint32_t float_bits(float x) noexcept {
  return bit_cast<std::uint32_t>(x);
}
/// The binary32 value whose bit pattern is `u`.
LOWBIT_HD LOWBIT_BITCAST_CONSTEXPR float bits_float(std::uint32_t u) noexcept {
  return bit_cast<float>(u);
}

namespace detail {

/// One correctly rounded float32 multiply that no compiler may fuse into a neighbouring add
/// (`__fmul_rn` on the device, where nvcc contracts `a * b + c` into an FMA by default).
LOWBIT_HD constexpr float mul_rn(float a, float b) noexcept {
#if LOWBIT_DEVICE_PASS
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

/// One correctly rounded float32 add, never fused with a preceding multiply on the device.
LOWBIT_HD constexpr float add_rn(float a, float b) noexcept {
#if LOWBIT_DEVICE_PASS
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

/// Returns `x` unchanged, but opaque to the optimizer: a multiply that produced `x` can no longer be
/// contracted with an add that consumes it (GCC contracts across statements under its default
/// -ffp-contract=fast when FMA is enabled). Free at run time.
LOWBIT_HD float opaque(float x) noexcept {
#if !LOWBIT_DEVICE_PASS && defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(x));
#elif !LOWBIT_DEVICE_PASS && defined(__GNUC__) && defined(__aarch64__)
  __asm__("" : "+w"(x));
#elif !LOWBIT_DEVICE_PASS
  volatile float v = x;
  x = v;
#endif
  return x;
}

}  // namespace detail

LOWBIT_NAMESPACE_END
