// SPDX-License-Identifier: Apache-2.0
/// @file div.cuh
/// @brief IEEE float32 division, round to nearest even, for the positive operands of the block
///        encoders, inline and without a call. nvcc's `/` inlines a fast path and calls an
///        out-of-line routine when an operand's exponent is extreme; in a streaming kernel that call
///        sits in the steady-state loop (and the budget check costs it). This one gives the same
///        bits for every positive operand pair with straight-line code.
#pragma once

#include "arch.cuh"

LOWBIT_NAMESPACE_BEGIN
namespace cuda {
namespace detail {

/// m in [1, 2) and e with x = m * 2^e, for finite x > 0 (subnormals included).
__device__ __forceinline__ float split_exponent(float x, int& e) {
  unsigned b = __float_as_uint(x);
  int bias = 127;
  if (b < 0x00800000u) {  // subnormal: scale by 2^32 first (exact)
    b = __float_as_uint(x * 4294967296.0f);
    bias += 32;
  }
  e = static_cast<int>(b >> 23) - bias;
  return __uint_as_float((b & 0x007FFFFFu) | 0x3F800000u);
}

/// 1 / m rounded to nearest for m in [1, 2): a linear start (relative error <= 1/17), three Newton
/// steps and a remainder correction, correct for every m but the largest (kernels_div_exhaustive_
/// test checks all 2^23): for m = 2 - 2^-23 the correction lands on the tie 0.5 + 2^-25 from 0.5,
/// while 1 / m lies just above it, so that one m is answered directly.
__device__ __forceinline__ float reciprocal_1_2(float m) {
  float r = __fmaf_rn(m, -8.0f / 17.0f, 24.0f / 17.0f);
  LOWBIT_UNROLL
  for (int i = 0; i < 3; ++i) r = __fmaf_rn(r, __fmaf_rn(-m, r, 1.0f), r);
  r = __fmaf_rn(r, __fmaf_rn(-m, r, 1.0f), r);
  return __float_as_uint(m) == 0x3FFFFFFFu ? __uint_as_float(0x3F000001u) : r;
}

/// a / b rounded to nearest given rb = RN(1 / b) (Markstein: q = RN(a rb), then one remainder
/// step), for operands whose quotient and remainder neither overflow nor leave the normal range:
/// in particular a, b in [1, 2) (rb = reciprocal_1_2(b)), a quotient in (0.5, 2). The core of
/// div_rn_positive, and of divisions whose divisor is fixed per launch (its rb formed once).
__device__ __forceinline__ float div_markstein(float a, float b, float rb) {
  const float q = a * rb;
  return __fmaf_rn(__fmaf_rn(-b, q, a), rb, q);
}

/// a / b, IEEE round to nearest even, for a >= 0 and b >= 0 (+Inf allowed for either; not both
/// 0 or both Inf; no NaN): what `a / b` gives, including subnormal results (rounded once from the exact quotient)
/// and overflow to +Inf.
__device__ __forceinline__ float div_rn_positive(float a, float b) {
  const unsigned inf = 0x7F800000u;
  if (__float_as_uint(a) == 0u || __float_as_uint(b) == inf) return 0.0f;
  if (__float_as_uint(a) == inf || __float_as_uint(b) == 0u) return __uint_as_float(inf);
  int ea, eb;
  const float ma = split_exponent(a, ea), mb = split_exponent(b, eb);
  const float r = reciprocal_1_2(mb);
  const float q = div_markstein(ma, mb, r);
  const float rest = __fmaf_rn(-mb, q, ma);  // exact: the sign says where ma / mb lies from q
  const unsigned qb = __float_as_uint(q);
  const int e = static_cast<int>(qb >> 23) - 127 + ea - eb;  // a / b = 1.f * 2^e (before rounding)
  if (e > 127) return __uint_as_float(inf);
  if (e >= -126) return __uint_as_float(qb + static_cast<unsigned>((ea - eb) * (1 << 23)));
  // subnormal: round the 24-bit significand to 2^-149 units once, ties by the exact remainder
  const int shift = -126 - e;
  if (shift > 24) return 0.0f;
  const unsigned sig = (qb & 0x007FFFFFu) | 0x00800000u;
  const unsigned kept = sig >> shift, dropped = sig & ((1u << shift) - 1u), half = 1u << (shift - 1);
  const bool up = dropped > half || (dropped == half && (rest > 0.0f || (rest == 0.0f && (kept & 1u))));
  return __uint_as_float(kept + (up ? 1u : 0u));
}

/// a / c rounded to nearest, for a >= 0 (+Inf allowed) and the minifloat scale divisors c = 448,
/// 57344 and 6 (7 * 2^6, 7 * 2^13, 3 * 2): f32(f64(a) * f64(1 / c)), three instructions
/// (`F2F.F64.F32`, `DMUL` by a constant, `F2F.F32.F64`) instead of a division. Why it is exact:
/// f64(1 / c) errs by less than 2^-53 relative, so a * f64(1 / c) lies within a / c * 2^-53 of
/// a / c. If a / c is a double (every float32 midpoint, normal or subnormal, is), that is less
/// than half its ulp and the product rounds to a / c itself: the float32 rounding is then a / c's
/// own, ties to even included (a = 7 * 2^-144 gives the tie 2^-150 for c = 448). Otherwise a / c
/// is no float32 midpoint M * 2^e (M odd, M < 2^25) and lies at least about 2^-28 (relative)
/// from every one (|a - c M 2^e| is at least the smaller of the two numbers' bit weights, with
/// c M < 7 * 2^25 and a < 2^24 in those units), far more than the double's 2^-52, so it rounds to
/// the same float32 as a / c, subnormal results included. kernels_div_exhaustive_test checks every
/// positive float32 a for each c.
LOWBIT_HD float div_rn_by_constant(float a, float c) {
  return static_cast<float>(static_cast<double>(a) * (1.0 / static_cast<double>(c)));
}

/// quant::make_encoder's division in kernels: div_rn_positive on a GPU and under the executor (so
/// the SIMT tests run it), IEEE `/` in nvcc's host pass; the scale's division by the minifloat's
/// constant (by_constant) is div_rn_by_constant.
struct call_free_div {
  LOWBIT_HD float operator()(float a, float b) const noexcept {
#if defined(__CUDA_ARCH__) || LOWBIT_SIMT
    return div_rn_positive(a, b);
#else
    return a / b;
#endif
  }
  LOWBIT_HD float by_constant(float a, float c) const noexcept {
#if defined(__CUDA_ARCH__) || LOWBIT_SIMT
    return div_rn_by_constant(a, c);
#else
    return a / c;
#endif
  }
};

/// n / d in 32-bit unsigned arithmetic for a divisor d fixed per launch, without the ~20-instruction
/// division sequence nvcc emits for a runtime divisor: the launcher computes `mul` and `shift` once
/// (make_udiv31) and a thread divides with a shift, a high multiply and a shift.
///
/// Valid for 0 <= n < 2^31 and 1 <= d < 2^31. With l = ceil(log2 d) and
/// mul = ceil(2^(31 + l) / d) (2^31 <= mul < 2^32: mul = 2^31 exactly when d is a power of two,
/// and below 2^32 otherwise because d > 2^(l - 1)), the quotient is floor(n mul / 2^(31 + l)),
/// computed as umulhi(2 n, mul) >> l. It is exact: mul d = 2^(31 + l) + e with 0 <= e < d, so
/// n mul / 2^(31 + l) = n / d + n e / (d 2^(31 + l)), and the second term is below
/// 2^31 / 2^(31 + l) <= 1 / d, too little to carry n / d past the next integer.
/// (kernels_div_exhaustive_test checks every n for several divisors and boundary n for every d
/// up to 2^16.)
struct udiv31 {
  unsigned mul = 0x80000000u;  ///< the divisor 1
  unsigned shift = 0;
  __device__ __forceinline__ unsigned div(unsigned n) const { return __umulhi(n << 1, mul) >> shift; }
};

/// The udiv31 of divisor `d` (1 <= d < 2^31; host code, once per launch).
inline udiv31 make_udiv31(std::uint32_t d) noexcept {
  unsigned l = 0;
  while ((std::uint64_t{1} << l) < d) ++l;
  udiv31 r;
  r.mul = static_cast<unsigned>(((std::uint64_t{1} << (31 + l)) + d - 1) / d);
  r.shift = l;
  return r;
}

}  // namespace detail
}  // namespace cuda
LOWBIT_NAMESPACE_END
