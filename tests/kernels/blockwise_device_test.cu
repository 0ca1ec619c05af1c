// SPDX-License-Identifier: Apache-2.0
// The blockwise launchers on a GPU against the host engine (blockwise_kernels_test.inl). Without
// a CUDA device every test reports itself as skipped.
#include <lowbit/cuda.cuh>
#include <lowbit/lowbit.hpp>

#include <functional>
#include <vector>

#include "test_util.hpp"

namespace kt {

/// Device storage with explicit copies.
template <class T>
class buffer {
 public:
  explicit buffer(std::size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(&p_, (n ? n : 1) * sizeof(T)), cudaSuccess);
    EXPECT_EQ(cudaMemset(p_, 0, (n ? n : 1) * sizeof(T)), cudaSuccess);
  }
  explicit buffer(const std::vector<T>& v) : buffer(v.size()) {
    EXPECT_EQ(cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~buffer() { cudaFree(p_); }
  buffer(const buffer&) = delete;
  buffer& operator=(const buffer&) = delete;
  T* get() { return p_; }
  std::vector<T> download() const {
    std::vector<T> v(n_);
    EXPECT_EQ(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }

 private:
  T* p_ = nullptr;
  std::size_t n_;
};

inline void for_each_order(const std::function<void()>& fn) { fn(); }

}  // namespace kt

// Every test that runs a kernel needs a device: without one it is skipped (gtest prints
// "[  SKIPPED ]" for it, and CTest reports the binary as skipped, never as passed).
#define KT_REQUIRE_DEVICE()                                                                    \
  do {                                                                                         \
    if (!lowbit::cuda::device_available()) GTEST_SKIP() << "no CUDA device: GPU test skipped"; \
  } while (0)

#include "blockwise_kernels_test.inl"
