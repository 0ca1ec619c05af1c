// SPDX-License-Identifier: Apache-2.0
// The SIMT side of the kernel tests' harness: `kt::buffer<T>` ("device" storage, host memory, since
// the executor runs kernels on the CPU), `kt::for_each_order(fn)` (fn once per thread order:
// forward, reverse, random seeded from the test seed; strict mode) and `kt::library_call_counts()`
// (the GEMMs the cuBLAS(Lt) stand-in ran).
#pragma once

#include <lowbit/cuda/detail/arch.cuh>
#include <lowbit/simt/cublas.hpp>

#include <cstring>
#include <functional>
#include <vector>

#include "test_util.hpp"

namespace kt {

/// "Device" storage: exactly n elements of simt::device_malloc memory (host memory between
/// redzones, watched by the executor's checker), zeroed on creation as the GPU harness does with
/// cudaMemset, or holding a copy of `v`.
template <class T>
class buffer {
 public:
  explicit buffer(std::size_t n) : n_(n), p_(static_cast<T*>(lowbit::simt::device_malloc(n * sizeof(T)))) {
    std::memset(static_cast<void*>(p_), 0, n * sizeof(T));
    lowbit::simt::device_written(p_, n * sizeof(T));
  }
  explicit buffer(const std::vector<T>& v) : buffer(v.size()) {
    if (!v.empty()) std::memcpy(static_cast<void*>(p_), v.data(), v.size() * sizeof(T));
  }
  ~buffer() { lowbit::simt::device_free(p_); }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  T* get() { return p_; }
  std::vector<T> download() const {
    std::vector<T> v(n_);
    if (n_ != 0) std::memcpy(static_cast<void*>(v.data()), p_, n_ * sizeof(T));
    return v;
  }

 private:
  std::size_t n_;
  T* p_;
};

/// GEMMs run by the cuBLAS(Lt) library so far: counted by the SIMT build's stand-in, not on a GPU.
struct library_calls {
  bool counted = false;
  std::uint64_t lt_matmul = 0, gemm_ex = 0;
};
inline library_calls library_call_counts() {
  const auto c = lowbit::simt::cublas_calls();
  return {true, c.lt_matmul, c.gemm_ex};
}

/// Runs fn under each schedule: forward, reverse, and a random order seeded from the test seed.
inline void for_each_order(const std::function<void()>& fn) {
  using lowbit::simt::order;
  for (order o : {order::forward, order::reverse, order::random}) {
    lowbit::simt::launch_options opt;
    opt.ord = o;
    opt.seed = lowbit_test::test_seed();
    opt.strict = true;
    lowbit::simt::set_default_options(opt);
    SCOPED_TRACE(o == order::forward ? "forward order" : (o == order::reverse ? "reverse order" : "random order"));
    fn();
    if (::testing::Test::HasFatalFailure()) break;
  }
  lowbit::simt::set_default_options(lowbit::simt::launch_options{});
}

}  // namespace kt
