// SPDX-License-Identifier: Apache-2.0
/// @file throw.hpp
/// @brief Opt-in exceptions: `lowbit::throw_if_error(status)` throws `lowbit::error`.
#pragma once

#include "status.hpp"

#include <stdexcept>
#include <string>

LOWBIT_NAMESPACE_BEGIN

/// Exception carrying a lowbit error code and message.
class error : public std::runtime_error {
 public:
  explicit error(const status& s)
      : std::runtime_error(std::string("lowbit: ") + errc_name(s.code()) + ": " + s.message()), code_(s.code()) {}
  errc code() const noexcept { return code_; }

 private:
  errc code_;
};

/// Throws `lowbit::error` if `s` is not ok.
inline void throw_if_error(const status& s) {
  if (!s) throw error(s);
}

LOWBIT_NAMESPACE_END
