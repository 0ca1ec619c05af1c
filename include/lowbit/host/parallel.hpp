// SPDX-License-Identifier: Apache-2.0
/// @file parallel.hpp
/// @brief A small persistent thread pool for the host engine: `parallel_for(count, threads, fn)`
///        runs fn(begin, end) over contiguous chunks of [0, count) on up to `threads` threads
///        (0 = all hardware threads) and returns when all are done. Calls from several threads
///        are serialized. Every chunk runs in IEEE default floating-point mode (see
///        ieee_mode), whatever mode the calling thread is in.
#pragma once

#include "../config.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#  include <xmmintrin.h>
#  define LOWBIT_HAVE_MXCSR 1
#else
#  define LOWBIT_HAVE_MXCSR 0
#endif

LOWBIT_NAMESPACE_BEGIN
namespace host {
namespace detail {

/// For its lifetime, the calling thread computes in IEEE default mode: on x86, MXCSR = 0x1F80
/// (round to nearest even, subnormals neither read as zero (DAZ) nor flushed (FTZ), every
/// exception masked); the thread's own mode is restored afterwards. The engine's bits are defined
/// in that mode (quant/blockwise.hpp: no flush to zero), and a caller that runs with FTZ/DAZ or
/// another rounding mode, as some inference engines do, still gets them.
class ieee_mode {
 public:
#if LOWBIT_HAVE_MXCSR
  ieee_mode() noexcept : saved_(_mm_getcsr()), change_((saved_ & ~flag_bits) != default_csr) {
    if (change_) _mm_setcsr(default_csr);
  }
  ~ieee_mode() {
    if (change_) _mm_setcsr(saved_);
  }
#endif
  ieee_mode(const ieee_mode&) = delete;
  ieee_mode& operator=(const ieee_mode&) = delete;

 private:
#if LOWBIT_HAVE_MXCSR
  static constexpr unsigned default_csr = 0x1F80u;
  static constexpr unsigned flag_bits = 0x3Fu;  // sticky exception flags: not part of the mode
  unsigned saved_;
  bool change_;
#endif
};

class thread_pool {
 public:
  static thread_pool& instance() {
    static thread_pool pool;
    return pool;
  }
  int size() const noexcept { return static_cast<int>(workers_.size()) + 1; }

  /// Runs task(i) for i in [0, tasks) with the calling thread taking part.
  void run(int tasks, const std::function<void(int)>& task) {
    std::lock_guard<std::mutex> serial(run_mutex_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      task_ = &task;
      tasks_ = tasks;
      next_ = 0;
      done_ = 0;
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [&] { return done_ == tasks_; });
    task_ = nullptr;
  }

  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;
  ~thread_pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }

 private:
  thread_pool() {
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 1; i < hw; ++i) workers_.emplace_back([this] { loop(); });
  }

  void work() {
    for (;;) {
      int i;
      const std::function<void(int)>* task;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (task_ == nullptr || next_ >= tasks_) return;
        i = next_++;
        task = task_;
      }
      (*task)(i);
      std::lock_guard<std::mutex> lock(mutex_);
      if (++done_ == tasks_) finished_.notify_all();
    }
  }

  void loop() {
    std::uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
      }
      work();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  const std::function<void(int)>* task_ = nullptr;
  int tasks_ = 0, next_ = 0, done_ = 0;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace detail

/// Number of threads `threads` resolves to (0 = all hardware threads).
inline int resolve_threads(int threads) {
  const int hw = detail::thread_pool::instance().size();
  return threads <= 0 ? hw : std::min(threads, hw);
}

/// Runs fn(begin, end) over [0, count) split into chunks of at least `grain` items, on up to
/// `threads` threads. Chunk boundaries are multiples of `align` (>= 1).
template <class Fn>
void parallel_for(std::int64_t count, std::int64_t grain, std::int64_t align, int threads, Fn&& fn) {
  if (count <= 0) return;
  const int t = resolve_threads(threads);
  std::int64_t chunks = std::min<std::int64_t>(t * 4, (count + grain - 1) / grain);
  if (chunks <= 1 || t == 1) {
    const detail::ieee_mode ieee;
    fn(std::int64_t{0}, count);
    return;
  }
  std::int64_t per = (count + chunks - 1) / chunks;
  per = (per + align - 1) / align * align;
  chunks = (count + per - 1) / per;
  const std::function<void(int)> task = [&](int i) {
    const std::int64_t b = per * i;
    const std::int64_t e = std::min(count, b + per);
    const detail::ieee_mode ieee;
    if (b < e) fn(b, e);
  };
  detail::thread_pool::instance().run(static_cast<int>(chunks), task);
}

}  // namespace host
LOWBIT_NAMESPACE_END
