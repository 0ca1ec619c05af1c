// SPDX-License-Identifier: Apache-2.0
// The GPU side of the kernel tests' harness: `kt::buffer<T>` (device memory with explicit copies),
// `kt::for_each_order(fn)` (fn once: a GPU has one schedule), `kt::library_call_counts()` (not
// counted on a GPU), and a global environment that skips
// every test of the binary without a CUDA device (CTest then reports a skip, never a pass).
#pragma once

#include <lowbit/cuda/device.cuh>

#include <cuda_runtime.h>

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

/// GEMMs run by cuBLAS(Lt): not observable on a GPU (counted = false).
struct library_calls {
  bool counted = false;
  std::uint64_t lt_matmul = 0, gemm_ex = 0;
};
inline library_calls library_call_counts() { return {}; }

}  // namespace kt

// Every test of this binary needs a device: without one, all are skipped (and CTest reports the
// test as skipped, never as passed).
class require_device : public ::testing::Environment {
 public:
  void SetUp() override {
    if (!lowbit::cuda::device_available()) GTEST_SKIP() << "no CUDA device: GPU tests skipped";
  }
};
static ::testing::Environment* const lowbit_require_device = ::testing::AddGlobalTestEnvironment(new require_device);
