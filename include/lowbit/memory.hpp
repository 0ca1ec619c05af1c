// SPDX-License-Identifier: Apache-2.0
/// @file memory.hpp
/// @brief Where a `quant_tensor`'s bytes live: `memory_space`, the `allocator` a tensor draws its
///        storage from, and `storage<T>`, the owning array built on it.
///
/// An `allocator` is a plain struct of function pointers and a context pointer, so this header
/// needs no CUDA header and a user can hand lowbit any memory pool (a caching allocator, an arena,
/// pinned host memory) without a virtual interface or a template parameter. `allocator::host()` is
/// the default; `lowbit::cuda::stream_allocator(stream)` in `kernels/lowbit/cuda/memory.cuh` is the
/// stream-ordered device one (`cudaMallocAsync` / `cudaFreeAsync`).
///
/// @par Contract of an allocator's functions (all are called with the allocator's `context`)
/// - `allocate(bytes)`: `bytes` > 0; returns memory of its space aligned to at least 256 bytes,
///   or null on failure (lowbit then reports errc::out_of_memory and changes nothing).
/// - `deallocate(p, bytes)`: frees what `allocate` returned (`bytes` is the size asked for).
/// - `zero(p, bytes)`: sets the bytes to 0. A stream-ordered allocator may do it asynchronously,
///   ordered before any later use on its stream.
/// - `copy(dst, src, bytes, kind)`: `from_host` copies host `src` into this space, `to_host`
///   copies from this space into host `dst` and returns only once the bytes are there, `within`
///   copies inside this space. Errors are returned as a status, never thrown.
#pragma once

#include "config.hpp"
#include "status.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#if defined(__linux__)
#  include <sys/mman.h>
#endif

LOWBIT_NAMESPACE_BEGIN

/// Where storage lives.
enum class memory_space : std::uint8_t {
  host,    ///< ordinary CPU memory: the host engine reads and writes it
  device,  ///< CUDA device memory: only the kernels of lowbit::cuda read and write it
};

/// Name of a memory space ("host", "device").
constexpr const char* memory_space_name(memory_space s) noexcept { return s == memory_space::host ? "host" : "device"; }

/// Direction of an allocator's `copy`.
enum class copy_kind : std::uint8_t {
  from_host,  ///< host memory -> this allocator's space
  to_host,    ///< this allocator's space -> host memory (complete when copy returns)
  within,     ///< this allocator's space -> this allocator's space
};

/// A source of storage for quant_tensor (see the file comment for the contract).
struct allocator {
  memory_space space = memory_space::host;
  const char* name = "host";  ///< named in error messages
  void* context = nullptr;    ///< passed to every function; must outlive the storage
  void* (*allocate)(std::size_t bytes, void* context) = nullptr;
  void (*deallocate)(void* p, std::size_t bytes, void* context) = nullptr;
  status (*zero)(void* p, std::size_t bytes, void* context) = nullptr;
  status (*copy)(void* dst, const void* src, std::size_t bytes, copy_kind kind, void* context) = nullptr;

  /// True if every function is set.
  bool complete() const noexcept { return allocate && deallocate && zero && copy; }

  /// Allocations of at least this many bytes are 2 MiB aligned and offered transparent huge
  /// pages (see host()).
  static constexpr std::size_t huge_page_threshold = std::size_t{4} << 20;

  /// The default: memory from the C heap, 256-byte aligned. An allocation of at least
  /// `huge_page_threshold` bytes is 2 MiB aligned and, on Linux, marked MADV_HUGEPAGE: where the
  /// kernel offers transparent huge pages (`/sys/kernel/mm/transparent_hugepage/enabled` set to
  /// `always` or `madvise`), its first touch then faults in 2 MiB pages instead of 4 KiB ones
  /// (512 times fewer page faults; a fresh 256 MiB tensor took 65536 of them). Elsewhere, or when
  /// the kernel refuses, it is ordinary memory. Such a block is `malloc(bytes + 2 MiB)` aligned
  /// by hand (the pointer malloc gave is kept just below the aligned one), not posix_memalign: a
  /// freed block then has exactly the size the next tensor of the same shape asks for, so a heap
  /// that keeps freed memory (glibc with M_MMAP_MAX 0, as the lowbit tool sets it) reuses it
  /// without faulting in new pages, where posix_memalign's alignment slack made every other
  /// request miss. The memory is not zeroed here (`zero` does that).
  static allocator host() noexcept {
    allocator a;
    a.allocate = [](std::size_t bytes, void*) -> void* {
      constexpr std::size_t huge = std::size_t{2} << 20;
      if (bytes < huge_page_threshold) {
        void* p = nullptr;
        return posix_memalign(&p, 256, bytes) == 0 ? p : nullptr;
      }
      if (bytes > static_cast<std::size_t>(-1) - huge) return nullptr;
      void* raw = std::malloc(bytes + huge);
      if (raw == nullptr) return nullptr;
      const std::uintptr_t at = (reinterpret_cast<std::uintptr_t>(raw) + sizeof(void*) + huge - 1) & ~static_cast<std::uintptr_t>(huge - 1);
      void* p = reinterpret_cast<void*>(at);
      std::memcpy(static_cast<unsigned char*>(p) - sizeof(void*), &raw, sizeof(void*));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
      (void)madvise(p, bytes / 4096 * 4096, MADV_HUGEPAGE);  // advice only: a refusal changes nothing
#endif
      return p;
    };
    a.deallocate = [](void* p, std::size_t bytes, void*) {
      if (p == nullptr || bytes < huge_page_threshold) return std::free(p);
      void* raw = nullptr;
      std::memcpy(&raw, static_cast<unsigned char*>(p) - sizeof(void*), sizeof(void*));
      std::free(raw);
    };
    a.zero = [](void* p, std::size_t bytes, void*) -> status {
      std::memset(p, 0, bytes);
      return {};
    };
    a.copy = [](void* dst, const void* src, std::size_t bytes, copy_kind, void*) -> status {
      std::memcpy(dst, src, bytes);
      return {};
    };
    return a;
  }
};

/// Owning array of `n` trivially copyable T from an allocator, zero-filled on allocation.
/// Move-only; copies go through `clone_into` / `copy_into`, which report failures.
template <class T>
class storage {
  static_assert(std::is_trivially_copyable<T>::value, "storage holds trivially copyable elements");

 public:
  storage() noexcept {}  // user-provided: nvcc then sees every local storage as initialized
  storage(storage&& o) noexcept : p_(o.p_), n_(o.n_), alloc_(o.alloc_) {
    o.p_ = nullptr;
    o.n_ = 0;
  }
  storage& operator=(storage&& o) noexcept {
    if (this != &o) {
      release();
      p_ = o.p_;
      n_ = o.n_;
      alloc_ = o.alloc_;
      o.p_ = nullptr;
      o.n_ = 0;
    }
    return *this;
  }
  storage(const storage&) = delete;
  storage& operator=(const storage&) = delete;
  ~storage() { release(); }

  /// Replaces the contents with `n` zero elements from `a` (`zero` false: left as the allocator
  /// returns them, for callers that write every element before reading any). On failure
  /// (errc::out_of_memory, or the allocator's zero error) the old contents are kept. `what`
  /// names the array in messages.
  status allocate(std::size_t n, const allocator& a, const char* what, bool zero = true) noexcept {
    if (!a.complete()) return status::error(errc::invalid_argument, "%s: allocator '%s' lacks a function", what, a.name);
    if (n > static_cast<std::size_t>(-1) / sizeof(T) / 2)
      return status::error(errc::out_of_memory, "%s: %zu elements exceed the address space", what, n);
    storage next;
    next.alloc_ = a;
    if (n > 0) {
      next.p_ = static_cast<T*>(a.allocate(n * sizeof(T), a.context));
      if (next.p_ == nullptr)
        return status::error(errc::out_of_memory, "cannot allocate %zu bytes of %s memory (%s) for %s", n * sizeof(T),
                             memory_space_name(a.space), a.name, what);
      next.n_ = n;
      if (zero) LOWBIT_TRY(a.zero(next.p_, n * sizeof(T), a.context));
    }
    *this = static_cast<storage&&>(next);
    return {};
  }

  /// Copies `n` host elements at `src` into this array's first `n` elements (n <= size()).
  status upload(const T* src, std::size_t n, const char* what) noexcept {
    if (n > n_) return status::error(errc::invalid_argument, "%s: %zu elements do not fit in %zu", what, n, n_);
    if (n == 0) return {};
    return alloc_.copy(p_, src, n * sizeof(T), copy_kind::from_host, alloc_.context);
  }
  /// Copies this array's first `n` elements (n <= size()) to host memory at `dst`.
  status download(T* dst, std::size_t n, const char* what) const noexcept {
    if (n > n_) return status::error(errc::invalid_argument, "%s: %zu elements requested of %zu", what, n, n_);
    if (n == 0) return {};
    return alloc_.copy(dst, p_, n * sizeof(T), copy_kind::to_host, alloc_.context);
  }

  /// A deep copy into `dst`, drawn from allocator `a` (any space): host to host, host to `a`'s
  /// space, this space to host, or within one device allocator's space. On failure `dst` is
  /// unchanged.
  status copy_into(storage& dst, const allocator& a, const char* what) const noexcept {
    storage next;
    LOWBIT_TRY(next.allocate(n_, a, what));
    if (n_ == 0) {
      dst = static_cast<storage&&>(next);
      return {};
    }
    const std::size_t bytes = n_ * sizeof(T);
    if (alloc_.space == memory_space::host) {
      LOWBIT_TRY(a.copy(next.p_, p_, bytes, a.space == memory_space::host ? copy_kind::within : copy_kind::from_host, a.context));
    } else if (a.space == memory_space::host) {
      LOWBIT_TRY(alloc_.copy(next.p_, p_, bytes, copy_kind::to_host, alloc_.context));
    } else {
      LOWBIT_TRY(a.copy(next.p_, p_, bytes, copy_kind::within, a.context));
    }
    dst = static_cast<storage&&>(next);
    return {};
  }
  /// A deep copy from the same allocator.
  status clone_into(storage& dst, const char* what) const noexcept { return copy_into(dst, alloc_, what); }

  T* data() noexcept { return p_; }
  const T* data() const noexcept { return p_; }
  std::size_t size() const noexcept { return n_; }
  bool empty() const noexcept { return n_ == 0; }
  const allocator& source() const noexcept { return alloc_; }
  memory_space space() const noexcept { return alloc_.space; }

  /// Element `i` of a host array.
  template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
  T& operator[](I i) noexcept {
    return p_[static_cast<std::size_t>(i)];
  }
  template <class I, std::enable_if_t<std::is_integral<I>::value, int> = 0>
  const T& operator[](I i) const noexcept {
    return p_[static_cast<std::size_t>(i)];
  }

 private:
  void release() noexcept {
    if (p_ != nullptr) alloc_.deallocate(p_, n_ * sizeof(T), alloc_.context);
    p_ = nullptr;
    n_ = 0;
  }

  T* p_ = nullptr;
  std::size_t n_ = 0;
  allocator alloc_ = allocator::host();
};

/// True if the byte ranges [a, a + a_bytes) and [b, b + b_bytes) share a byte (for the argument
/// checks of functions whose input and output must not overlap).
inline bool ranges_overlap(const void* a, std::int64_t a_bytes, const void* b, std::int64_t b_bytes) noexcept {
  const auto x = reinterpret_cast<std::uintptr_t>(a), y = reinterpret_cast<std::uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && x < y + static_cast<std::uintptr_t>(b_bytes) && y < x + static_cast<std::uintptr_t>(a_bytes);
}

LOWBIT_NAMESPACE_END
