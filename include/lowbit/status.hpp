// SPDX-License-Identifier: Apache-2.0
/// @file status.hpp
/// @brief lowbit's one error model: fallible functions return `[[nodiscard]] lowbit::status`.
///
/// The core never throws, prints or exits and builds with -fno-exceptions. A status carries a code
/// and a message that names the problem (which argument, which index) in a fixed-size buffer, so
/// reporting an error never allocates. `lowbit/throw.hpp` converts a status into an exception for
/// callers who prefer that.
#pragma once

#include "config.hpp"

#include <cstdarg>
#include <cstdio>
#include <cstring>

LOWBIT_NAMESPACE_BEGIN

/// Error categories.
enum class errc : unsigned char {
  ok = 0,
  invalid_argument,  ///< a null pointer, a bad size, a value out of its domain
  unsupported,       ///< a valid request lowbit does not implement (format/dtype/block combination)
  misaligned,        ///< a pointer lacks the alignment an operation requires
  non_finite,        ///< NaN or Inf in an input that must be finite
  out_of_memory,     ///< an allocation failed
  io,                ///< a file could not be read or written
  cuda,              ///< the CUDA runtime reported an error
};

/// Name of an error category.
constexpr const char* errc_name(errc c) noexcept {
  switch (c) {
    case errc::ok: return "ok";
    case errc::invalid_argument: return "invalid argument";
    case errc::unsupported: return "unsupported";
    case errc::misaligned: return "misaligned";
    case errc::non_finite: return "non-finite input";
    case errc::out_of_memory: return "out of memory";
    case errc::io: return "i/o error";
    case errc::cuda: return "CUDA error";
  }
  return "unknown";
}

/// Result of a fallible operation: `ok()` or a code with a message.
class [[nodiscard]] status {
 public:
  static constexpr int max_message = 240;

  constexpr status() noexcept = default;

  /// An error with a printf-style message.
#if defined(__GNUC__)
  __attribute__((format(printf, 2, 3)))
#endif
  static status error(errc code, const char* fmt, ...) noexcept {
    status s;
    s.code_ = code;
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(s.message_, sizeof s.message_, fmt, args);
    va_end(args);
    return s;
  }

  constexpr bool ok() const noexcept { return code_ == errc::ok; }
  constexpr explicit operator bool() const noexcept { return ok(); }
  constexpr errc code() const noexcept { return code_; }
  /// The message ("" when ok).
  const char* message() const noexcept { return message_; }

 private:
  errc code_ = errc::ok;
  char message_[max_message] = {};
};

/// Returns from the enclosing function if `expr` is an error status.
#define LOWBIT_TRY(expr)                         \
  do {                                           \
    ::lowbit::status lowbit_try_status_ = (expr); \
    if (!lowbit_try_status_) return lowbit_try_status_; \
  } while (0)

LOWBIT_NAMESPACE_END
