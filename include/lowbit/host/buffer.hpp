// SPDX-License-Identifier: Apache-2.0
/// @file buffer.hpp
/// @brief An owning, zero-initialized host array whose allocation reports failure instead of
///        throwing (the core builds with -fno-exceptions).
#pragma once

#include "../config.hpp"
#include "../status.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <type_traits>

LOWBIT_NAMESPACE_BEGIN
namespace host {

/// Owning array of trivially copyable T, value-initialized; movable, copyable via `clone`.
template <class T>
class buffer {
 public:
  buffer() noexcept = default;
  buffer(buffer&&) noexcept = default;
  buffer& operator=(buffer&&) noexcept = default;
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;

  /// Replaces the contents with `n` value-initialized elements; errc::out_of_memory on failure
  /// (the old contents are then kept). `what` names the buffer in the message.
  status allocate(std::size_t n, const char* what) noexcept {
    if (n == 0) {
      data_.reset();
      size_ = 0;
      return {};
    }
    std::unique_ptr<T[]> p(new (std::nothrow) T[n]());
    if (!p) return status::error(errc::out_of_memory, "cannot allocate %zu bytes for %s", n * sizeof(T), what);
    data_ = std::move(p);
    size_ = n;
    return {};
  }
  /// A deep copy (errc::out_of_memory on failure).
  status clone_into(buffer& dst, const char* what) const noexcept {
    LOWBIT_TRY(dst.allocate(size_, what));
    for (std::size_t i = 0; i < size_; ++i) dst.data_[i] = data_[i];
    return {};
  }

  T* data() noexcept { return data_.get(); }
  const T* data() const noexcept { return data_.get(); }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  /// Element `i` (any integer type; callers index with int64 element counts).
  template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
  T& operator[](I i) noexcept {
    return data_[static_cast<std::size_t>(i)];
  }
  template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
  const T& operator[](I i) const noexcept {
    return data_[static_cast<std::size_t>(i)];
  }

 private:
  std::unique_ptr<T[]> data_;
  std::size_t size_ = 0;
};

}  // namespace host
LOWBIT_NAMESPACE_END
