// SPDX-License-Identifier: Apache-2.0
// Shared helpers for lowbit's tests: the seed of every random input (LOWBIT_TEST_SEED overrides
// it and it is printed on failure), hex formatting and bit comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace lowbit_test {

/// The seed for random inputs: $LOWBIT_TEST_SEED if set, else a fixed default.
inline std::uint64_t test_seed() {
  static const std::uint64_t seed = [] {
    const char* s = std::getenv("LOWBIT_TEST_SEED");
    return s ? std::strtoull(s, nullptr, 0) : std::uint64_t{0x10b17ULL};
  }();
  return seed;
}

/// Adds the seed to every failure message of the current scope.
#define LOWBIT_SEED_TRACE() \
  SCOPED_TRACE("LOWBIT_TEST_SEED=" + std::to_string(::lowbit_test::test_seed()))

inline std::string hex(std::uint64_t v, int digits = 8) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%0*llx", digits, static_cast<unsigned long long>(v));
  return buf;
}

inline std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float float_of(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

}  // namespace lowbit_test
