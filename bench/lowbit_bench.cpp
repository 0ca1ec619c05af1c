// SPDX-License-Identifier: Apache-2.0
/// @file lowbit_bench.cpp
/// @brief Throughput of the host engine against the machine's memory bandwidth.
///
/// One run measures
/// - `memcpy`: a multi-threaded std::memcpy of a 64M-element float32 tensor (256 MiB -> 256 MiB),
///   split over lowbit's own thread pool exactly as the engine splits its work;
/// - `dequantize/<fmt>/<dtype>`: codes + scales -> bf16, f16 or f32 output;
/// - `quantize/<fmt>/<dtype>`: f32 or bf16 input -> codes + scales, through the engine's single
///   pass into the caller's buffers (`host::quantize_into`: what `lowbit::quantize` into a new
///   QuantTensor runs);
/// - `quantize/<fmt>/<dtype>/all-or-nothing`: the same through `host::quantize`, which promises
///   an untouched output on a non-finite input and pays for it by going through a scratch copy
///   of the outputs (no target; it shows what the promise costs);
/// for nf4, e4m3fn and int8 (int8_absmax), block size 64, all hardware threads, plus
/// `quantize/<fmt>/<dtype>/per-tensor` (one block of 64M elements) and `/per-row:28672` for e4m3fn
/// and int8; `convert/...`: the plain conversions (convert_bench.cpp). Every row reports
/// bytes_per_second = (bytes read + bytes written) / real time, counting each byte of the
/// operands once (codes, float32 scales and the dense tensor); `%memcpy` is that bandwidth as a
/// percentage of the memcpy row's. After the run a summary table repeats each row in GB/s
/// (10^9 bytes/s) with its percentage of memcpy and the target (dequantize >= 85%, quantize >= 60%).
///
/// Extra flag: `--lowbit_diagnostics` adds rows that help explain a missed target: single-thread
/// (`/threads:1`), portable-code (`/nosimd`, options::simd = false), AVX2-only quantize (`/avx2`,
/// options::avx512 = false) and block-4096 (`/block:4096`,
/// 64x less per-block overhead) variants of the engine rows, and plain-loop read-only, write-only
/// and copy baselines (`diag/...`: ordinary stores, plus `diag/copy_streaming` with non-temporal
/// ones), and `/cached` dequantize rows (store_mode::cached: ordinary stores; the default rows'
/// outputs are large enough for store_mode::automatic to stream them).
/// All data is allocated, filled (seeded, deterministic) and first-touched once, outside the
/// timed loops; the tensors (>= 32 MiB each) are far larger than the last-level cache.
///
/// The matmul rows (`matmul/...`: LLM.int8 against OpenBLAS and oneDNN in the same run) are
/// bench/int8_matmul_bench.cpp's (`--lowbit_matmul_threads=N` sets their threads,
/// `--lowbit_int8_path=avx2` etc. forces lowbit's integer kernel in them); their summary table
/// follows the bandwidth table.
#include <lowbit/host/engine.hpp>
#include <lowbit/host/parallel.hpp>
#include <lowbit/quant_tensor.hpp>

#include "bench_rows.hpp"
#include "formats_bench.hpp"
#include "int8_matmul_bench.hpp"

#include <benchmark/benchmark.h>

#include <sys/resource.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>
#  define LOWBIT_BENCH_STREAMING_COPY 1
#endif

#include <algorithm>
#include <functional>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

namespace lb = ::lowbit;

constexpr std::int64_t kNumel = std::int64_t{1} << 26;  // 64M elements: 256 MiB of float32
constexpr std::int64_t kBlock = 64;
constexpr double kMinTime = 1.0;  // seconds per row
constexpr double kDequantizeTarget = 85.0, kQuantizeTarget = 60.0;
constexpr double kConvertTarget = 85.0;  // plain conversions, both directions (issue 16)

// ---- storage --------------------------------------------------------------------------------------

struct free_deleter {
  void operator()(void* p) const noexcept { std::free(p); }
};

template <class T>
using array = std::unique_ptr<T[], free_deleter>;

template <class T>
array<T> allocate(std::int64_t count) {
  const std::size_t bytes = (static_cast<std::size_t>(count) * sizeof(T) + 4095) / 4096 * 4096;
  void* p = std::aligned_alloc(4096, bytes);
  if (p == nullptr) {
    std::fprintf(stderr, "lowbit_bench: cannot allocate %zu bytes\n", bytes);
    std::exit(1);
  }
  return array<T>(static_cast<T*>(p));
}

// Runs fn(begin, end) over [0, count) on the engine's thread pool (same chunking as the engine:
// 4 chunks per thread), in chunks of at least `grain` items.
template <class Fn>
void parallel(std::int64_t count, int threads, Fn&& fn, std::int64_t grain = std::int64_t{1} << 15) {
  lb::host::parallel_for(count, grain, 1, threads, std::forward<Fn>(fn));
}

std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Deterministic, roughly normal weights (Irwin-Hall of 4 uniforms) with a few outliers, as LLM
// weights look; value i depends on i and the seed only, not on the thread count.
float weight(std::int64_t i) {
  constexpr std::uint64_t seed = 0x10B17BE7C4ull;
  const std::uint64_t r = splitmix64(static_cast<std::uint64_t>(i) ^ seed);
  const float u = static_cast<float>(r & 0xFFFF) + static_cast<float>((r >> 16) & 0xFFFF) +
                  static_cast<float>((r >> 32) & 0xFFFF) + static_cast<float>(r >> 48);
  float v = (u / 65536.0f - 2.0f) * 0.035f;  // std ~0.02
  if ((r & 0x3FF00000ull) == 0) v *= 8.0f;    // ~1 in 1024 an outlier
  return v;
}

struct format_data {
  lb::format fmt;
  array<std::uint8_t> codes;
  array<float> scales;

  lb::quant_view view(std::int64_t block = kBlock) const {
    lb::quant_view q;
    q.fmt = fmt;
    q.numel = kNumel;
    q.block_size = block;  // the scales buffer holds the block-64 count, enough for larger blocks
    q.codes = codes.get();
    q.scales = scales.get();
    return q;
  }
};

struct data_set {
  array<float> x_f32;   // quantize input, memcpy source
  array<lb::bf16> x_bf16;
  array<float> out;     // dequantize output (any dtype), memcpy destination
  std::vector<format_data> formats;

  const format_data& of(lb::format f) const {
    for (const auto& fd : formats)
      if (fd.fmt == f) return fd;
    std::fprintf(stderr, "lowbit_bench: no data for format %s\n", lb::info(f).name);
    std::exit(1);
  }
};

constexpr lb::format kFormats[] = {lb::format::nf4, lb::format::e4m3fn, lb::format::int8_absmax};

const data_set& data() {
  static const data_set d = [] {
    data_set s;
    s.x_f32 = allocate<float>(kNumel);
    s.x_bf16 = allocate<lb::bf16>(kNumel);
    s.out = allocate<float>(kNumel);
    const std::int64_t nb = lb::quant::block_count(kNumel, kBlock);
    for (const lb::format f : kFormats) {
      format_data fd{f, allocate<std::uint8_t>(lb::code_bytes(f, kNumel)), allocate<float>(nb)};
      s.formats.push_back(std::move(fd));
    }
    float* x = s.x_f32.get();
    lb::bf16* xb = s.x_bf16.get();
    float* out = s.out.get();
    parallel(kNumel, 0, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        x[i] = weight(i);
        xb[i] = lb::from_float<lb::bf16>(x[i]);
        out[i] = 0.0f;  // first touch
      }
    });
    for (const auto& fd : s.formats) {  // valid codes for the dequantize rows (touches them too)
      lb::quant_view q = fd.view();
      const lb::status st = lb::host::quantize(x, lb::dtype::f32, q);
      if (!st) {
        std::fprintf(stderr, "lowbit_bench: setup quantize(%s) failed: %s\n", lb::info(fd.fmt).name, st.message());
        std::exit(1);
      }
    }
    return s;
  }();
  return d;
}

// ---- reporting ------------------------------------------------------------------------------------

double g_memcpy_bytes_per_second = 0.0;  // set by the reporter once the memcpy row has run
std::vector<std::string> g_registered;    // row names in registration order, for the summary

double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

// Wall and process CPU time of a row's timed loop, for its counters: `%memcpy` (its bandwidth as
// a percentage of the memcpy row's) and `cpu%` (process CPU time / (wall time x threads used):
// well below 100 means the threads were not running, e.g. another process held the cores).
class row_timer {
 public:
  explicit row_timer(int threads) : threads_(lb::host::resolve_threads(threads)) {}

  void finish(benchmark::State& state, std::int64_t bytes, bool is_memcpy = false) const {
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0_).count();
    const double cpu = process_cpu_seconds() - cpu0_;
    const double moved = static_cast<double>(bytes) * static_cast<double>(state.iterations());
    state.SetBytesProcessed(state.iterations() * bytes);
    if (is_memcpy) {
      state.counters["%memcpy"] = 100.0;
    } else if (g_memcpy_bytes_per_second > 0.0 && wall > 0.0) {
      state.counters["%memcpy"] = 100.0 * moved / wall / g_memcpy_bytes_per_second;
    }
    if (wall > 0.0) state.counters["cpu%"] = 100.0 * cpu / (wall * threads_);
  }

 private:
  int threads_;
  std::chrono::steady_clock::time_point wall0_ = std::chrono::steady_clock::now();
  double cpu0_ = process_cpu_seconds();
};

template <class T>
constexpr lb::dtype dtype_of() {
  return std::is_same<T, float>::value ? lb::dtype::f32 : (std::is_same<T, lb::f16>::value ? lb::dtype::f16 : lb::dtype::bf16);
}
template <class T>
const char* dtype_label() {
  return std::is_same<T, float>::value ? "f32" : (std::is_same<T, lb::f16>::value ? "f16" : "bf16");
}
const char* format_label(lb::format f) { return f == lb::format::int8_absmax ? "int8" : lb::info(f).name; }

// ---- memory baselines -----------------------------------------------------------------------------

constexpr std::int64_t kCopyBytes = kNumel * static_cast<std::int64_t>(sizeof(float));
constexpr std::int64_t kPage = 4096;

void copy_memcpy(void* dst, const void* src, std::int64_t bytes, int threads) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  parallel((bytes + kPage - 1) / kPage, threads, [&](std::int64_t b, std::int64_t e) {
    const std::int64_t lo = b * kPage, hi = std::min(bytes, e * kPage);
    std::memcpy(d + lo, s + lo, static_cast<std::size_t>(hi - lo));
  }, 8);  // grain: 8 pages
}

void BM_memcpy(benchmark::State& state, int threads) {
  const data_set& d = data();
  const row_timer timer(threads);
  for (auto _ : state) {
    copy_memcpy(d.out.get(), d.x_f32.get(), kCopyBytes, threads);
    benchmark::ClobberMemory();
  }
  timer.finish(state, 2 * kCopyBytes, threads == 0);
}

// Element loops with ordinary (cached, write-allocate) stores, like the engine's kernels.
void BM_copy_loop(benchmark::State& state) {
  const data_set& d = data();
  const float* x = d.x_f32.get();
  float* out = d.out.get();
  const row_timer timer(0);
  for (auto _ : state) {
    parallel(kNumel, 0, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) out[i] = x[i] + 0.0f;  // + 0.0f: not turned into memcpy
    });
    benchmark::ClobberMemory();
  }
  timer.finish(state, 2 * kCopyBytes);
}

#if defined(LOWBIT_BENCH_STREAMING_COPY)
// A copy whose stores are non-temporal (as dequantize's with store_mode::streaming): the
// fastest copy of this size the machine does, next to memcpy's cached stores in 32 KiB pieces.
__attribute__((target("avx2"))) void copy_streaming(float* out, const float* x, std::int64_t b, std::int64_t e) {
  for (std::int64_t i = b; i < e; i += 8) _mm256_stream_ps(out + i, _mm256_load_ps(x + i));
  _mm_sfence();
}
void BM_copy_streaming(benchmark::State& state) {
  const data_set& d = data();
  const row_timer timer(0);
  for (auto _ : state) {
    parallel(kNumel / 8, 0, [&](std::int64_t b, std::int64_t e) { copy_streaming(d.out.get(), d.x_f32.get(), 8 * b, 8 * e); });
    benchmark::ClobberMemory();
  }
  timer.finish(state, 2 * kCopyBytes);
}
#endif

void BM_read_only(benchmark::State& state) {
  const data_set& d = data();
  const float* x = d.x_f32.get();
  const row_timer timer(0);
  for (auto _ : state) {
    std::atomic<std::uint32_t> sink{0};
    parallel(kNumel, 0, [&](std::int64_t b, std::int64_t e) {
      std::uint32_t acc = 0;
      const auto* u = reinterpret_cast<const std::uint32_t*>(x);
      for (std::int64_t i = b; i < e; ++i) acc ^= u[i];
      sink ^= acc;
    });
    benchmark::DoNotOptimize(sink.load());
  }
  timer.finish(state, kCopyBytes);
}

void BM_write_only(benchmark::State& state) {
  const data_set& d = data();
  float* out = d.out.get();
  const row_timer timer(0);
  for (auto _ : state) {
    parallel(kNumel, 0, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) out[i] = 1.5f;
    });
    benchmark::ClobberMemory();
  }
  timer.finish(state, kCopyBytes);
}

// ---- engine rows ----------------------------------------------------------------------------------

std::int64_t quantized_bytes(lb::format f, std::int64_t block) {
  return lb::code_bytes(f, kNumel) + lb::quant::block_count(kNumel, block) * static_cast<std::int64_t>(sizeof(float));
}

template <class T>
void BM_dequantize(benchmark::State& state, lb::format f, lb::host::options opt, std::int64_t block) {
  const data_set& d = data();
  const lb::quant_view q = d.of(f).view(block);
  void* out = d.out.get();
  const row_timer timer(opt.threads);
  for (auto _ : state) {
    const lb::status st = lb::host::dequantize(q, out, dtype_of<T>(), opt);
    if (!st) {
      state.SkipWithError(st.message());
      break;
    }
    benchmark::ClobberMemory();
  }
  timer.finish(state, quantized_bytes(f, block) + kNumel * static_cast<std::int64_t>(sizeof(T)));
}

template <class T>
void BM_quantize(benchmark::State& state, lb::format f, lb::host::options opt, std::int64_t block, bool checked) {
  const data_set& d = data();
  lb::quant_view q = d.of(f).view(block);
  const void* x = std::is_same<T, float>::value ? static_cast<const void*>(d.x_f32.get())
                                                 : static_cast<const void*>(d.x_bf16.get());
  const row_timer timer(opt.threads);
  for (auto _ : state) {
    const lb::status st =
        checked ? lb::host::quantize(x, dtype_of<T>(), q, opt) : lb::host::quantize_into(x, dtype_of<T>(), q, opt);
    if (!st) {
      state.SkipWithError(st.message());
      break;
    }
    benchmark::ClobberMemory();
  }
  timer.finish(state, quantized_bytes(f, block) + kNumel * static_cast<std::int64_t>(sizeof(T)));
}

// quantize into a new QuantTensor (lowbit::quantize allocates it from allocator::host(), which
// offers 2 MiB pages for large tensors) and dequantize into a new buffer, from that allocator
// (`huge`) or from operator new (4 KiB pages): each iteration's first touch pays its page faults.
template <class T>
void BM_quantize_new(benchmark::State& state, lb::format f, std::int64_t block) {
  const data_set& d = data();
  const void* x = std::is_same<T, float>::value ? static_cast<const void*>(d.x_f32.get()) : static_cast<const void*>(d.x_bf16.get());
  lb::quantize_params p;
  p.fmt = f;
  p.gran = lb::granularity::per_block(block);
  const row_timer timer(0);
  for (auto _ : state) {
    lb::quant_tensor q;
    const lb::status st = lb::quantize(x, dtype_of<T>(), {kNumel}, p, q);
    if (!st) {
      state.SkipWithError(st.message());
      break;
    }
    benchmark::DoNotOptimize(q.codes());
  }
  timer.finish(state, quantized_bytes(f, block) + kNumel * static_cast<std::int64_t>(sizeof(T)));
}

template <class T>
void BM_dequantize_new(benchmark::State& state, lb::format f, std::int64_t block, bool huge) {
  const data_set& d = data();
  const lb::quant_view q = d.of(f).view(block);
  const lb::allocator a = lb::allocator::host();
  const std::size_t bytes = static_cast<std::size_t>(kNumel) * sizeof(T);
  const row_timer timer(0);
  for (auto _ : state) {
    void* out = huge ? a.allocate(bytes, a.context) : static_cast<void*>(new (std::nothrow) T[static_cast<std::size_t>(kNumel)]);
    if (out == nullptr) {
      state.SkipWithError("out of memory");
      break;
    }
    const lb::status st = lb::host::dequantize(q, out, dtype_of<T>(), {});
    benchmark::ClobberMemory();
    if (huge) a.deallocate(out, bytes, a.context);
    else delete[] static_cast<T*>(out);
    if (!st) {
      state.SkipWithError(st.message());
      break;
    }
  }
  timer.finish(state, quantized_bytes(f, block) + kNumel * static_cast<std::int64_t>(sizeof(T)));
}

void configure(benchmark::internal::Benchmark* b) {
  b->UseRealTime()->MinTime(kMinTime)->Unit(benchmark::kMillisecond);
}

template <class T>
void register_dequantize(lb::format f, const char* variant, lb::host::options opt, std::int64_t block = kBlock) {
  const std::string name = std::string("dequantize/") + format_label(f) + "/" + dtype_label<T>() + variant;
  g_registered.push_back(name);
  configure(benchmark::RegisterBenchmark(name.c_str(), BM_dequantize<T>, f, opt, block));
}
template <class T>
void register_quantize(lb::format f, const char* variant, lb::host::options opt, std::int64_t block = kBlock,
                       bool checked = false) {
  const std::string name = std::string("quantize/") + format_label(f) + "/" + dtype_label<T>() + variant;
  g_registered.push_back(name);
  configure(benchmark::RegisterBenchmark(name.c_str(), BM_quantize<T>, f, opt, block, checked));
}

void register_all(bool diagnostics) {
  g_registered.push_back("memcpy");
  configure(benchmark::RegisterBenchmark("memcpy", BM_memcpy, 0));
  lowbit_bench::register_convert_rows(diagnostics);
  const lb::host::options all{};  // every hardware thread, AVX2 when available
  for (const lb::format f : kFormats) {
    register_dequantize<lb::bf16>(f, "", all);
    register_dequantize<lb::f16>(f, "", all);
    register_dequantize<float>(f, "", all);
  }
  for (const lb::format f : kFormats) {
    register_quantize<float>(f, "", all);
    register_quantize<lb::bf16>(f, "", all);
  }
  // fresh allocations (issue 15): quantize into a new QuantTensor, dequantize into new memory
  for (const char* name : {"quantize_new/nf4/f32", "quantize_new/nf4/bf16", "dequantize_new/nf4/bf16/huge_pages", "dequantize_new/nf4/bf16/operator_new"})
    g_registered.push_back(name);
  configure(benchmark::RegisterBenchmark("quantize_new/nf4/f32", BM_quantize_new<float>, lb::format::nf4, kBlock));
  configure(benchmark::RegisterBenchmark("quantize_new/nf4/bf16", BM_quantize_new<lb::bf16>, lb::format::nf4, kBlock));
  configure(benchmark::RegisterBenchmark("dequantize_new/nf4/bf16/huge_pages", BM_dequantize_new<lb::bf16>, lb::format::nf4, kBlock, true));
  configure(benchmark::RegisterBenchmark("dequantize_new/nf4/bf16/operator_new", BM_dequantize_new<lb::bf16>, lb::format::nf4, kBlock, false));
  for (const lb::format f : kFormats) register_quantize<float>(f, "/all-or-nothing", all, kBlock, true);
  // one scale for the whole tensor, and per row of 28672 (a long row: past the one-pass
  // quantizer's block limit, so both take the two-pass path over slices of the blocks)
  for (const lb::format f : {lb::format::e4m3fn, lb::format::int8_absmax}) {
    register_quantize<float>(f, "/per-tensor", all, kNumel);
    register_quantize<lb::bf16>(f, "/per-tensor", all, kNumel);
    register_quantize<float>(f, "/per-row:28672", all, 28672);
  }
  // the block-scaled formats' rows (formats_bench.cpp), timed and summarized like the rows above
  static const lowbit_bench::hooks format_hooks{
      [](const std::string& name, std::function<void(benchmark::State&)> row) {
        g_registered.push_back(name);
        configure(benchmark::RegisterBenchmark(name.c_str(), [row](benchmark::State& state) { row(state); }));
      },
      [](benchmark::State& state, std::int64_t bytes, const std::function<lb::status()>& body) {
        const row_timer timer(0);
        for (auto _ : state) {
          const lb::status st = body();
          if (!st) {
            state.SkipWithError(st.message());
            break;
          }
          benchmark::ClobberMemory();
        }
        timer.finish(state, bytes);
      },
      weight};
  lowbit_bench::register_format_rows(format_hooks);
  lowbit_bench::register_int8_matmul_rows(g_registered, diagnostics);
  if (!diagnostics) return;
  g_registered.push_back("diag/memcpy/threads:1");
  configure(benchmark::RegisterBenchmark("diag/memcpy/threads:1", BM_memcpy, 1));
  g_registered.push_back("diag/copy_loop");
  configure(benchmark::RegisterBenchmark("diag/copy_loop", BM_copy_loop));
  g_registered.push_back("diag/read_only");
  configure(benchmark::RegisterBenchmark("diag/read_only", BM_read_only));
  g_registered.push_back("diag/write_only");
  configure(benchmark::RegisterBenchmark("diag/write_only", BM_write_only));
#if defined(LOWBIT_BENCH_STREAMING_COPY)
  g_registered.push_back("diag/copy_streaming");
  configure(benchmark::RegisterBenchmark("diag/copy_streaming", BM_copy_streaming));
#endif
  lb::host::options cached{};
  cached.stores = lb::host::store_mode::cached;
  lb::host::options one{};
  one.threads = 1;
  lb::host::options portable{};
  portable.simd = false;
  lb::host::options avx2_only{};
  avx2_only.avx512 = false;
  for (const lb::format f : kFormats) {
    register_dequantize<lb::bf16>(f, "/threads:1", one);
    register_dequantize<float>(f, "/threads:1", one);
    register_dequantize<lb::bf16>(f, "/cached", cached);  // ordinary stores (automatic streams here)
    register_dequantize<float>(f, "/cached", cached);
    register_dequantize<lb::bf16>(f, "/nosimd", portable);
    register_dequantize<float>(f, "/nosimd", portable);
    register_quantize<float>(f, "/threads:1", one);
    register_quantize<float>(f, "/nosimd", portable);
    register_quantize<float>(f, "/avx2", avx2_only);
    // block 4096: 64x fewer blocks, so 64x less per-block overhead (calls, table and threshold
    // set-up, horizontal reductions) for the same elements
    register_dequantize<lb::bf16>(f, "/block:4096", all, 4096);
    register_dequantize<float>(f, "/block:4096", all, 4096);
    register_quantize<float>(f, "/block:4096", all, 4096);
  }
}

// Console output plus a summary table of every row's bandwidth relative to memcpy.
class summary_reporter : public benchmark::ConsoleReporter {
 public:
  explicit summary_reporter(bool color) : ConsoleReporter(color ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.error_occurred || r.run_type != Run::RT_Iteration) continue;
      if (lowbit_bench::is_matmul_row(r.run_name.function_name)) {
        lowbit_bench::record_matmul_run(r);
        continue;
      }
      const auto bps = r.counters.find("bytes_per_second");
      if (bps == r.counters.end()) continue;
      const std::string& name = r.run_name.function_name;
      // with --benchmark_repetitions, keep the best run among those whose threads had their cores
      // (cpu% >= 90), else the best run: on a shared machine the best is the least disturbed
      row& acc = rows_[name];
      const auto cpu = r.counters.find("cpu%");
      const double cpu_percent = cpu == r.counters.end() ? 100.0 : cpu->second.value;
      const bool clean = cpu_percent >= 90.0;
      if (acc.runs == 0 || (clean && !acc.clean) || (clean == acc.clean && bps->second.value > acc.bytes_per_second)) {
        acc.bytes_per_second = bps->second.value;
        acc.cpu_percent = cpu_percent;
        acc.clean = clean;
      }
      acc.runs += 1;
      if (name == "memcpy") g_memcpy_bytes_per_second = acc.bytes_per_second;
    }
    ConsoleReporter::ReportRuns(runs);
  }

  // Prints the table; returns false if a target was missed.
  bool print_summary() const {
    const bool matmul_met = lowbit_bench::print_matmul_summary();
    if (rows_.empty()) return matmul_met;
    bool all_met = true, busy = false;
    std::printf("\nlowbit_bench summary: %" PRId64 " elements, block %" PRId64 ", %d threads, SIMD kernels: %s\n",
                kNumel, kBlock, lb::host::resolve_threads(0),
                lb::host::avx512::available() ? "AVX-512 and AVX2" : (lb::host::avx2::available() ? "AVX2" : "none"));
    std::printf("bandwidth = (bytes read + bytes written, each operand byte once) / real time; GB = 1e9 bytes;\n"
                "with repetitions, each row's best undisturbed run (try --benchmark_repetitions=3\n"
                "--benchmark_enable_random_interleaving=true on a shared machine)\n\n");
    std::printf("%-32s %8s %9s %8s %6s  %s\n", "row", "GB/s", "%memcpy", "target", "cpu%", "");
    for (const std::string& name : g_registered) {
      if (rows_.find(name) == rows_.end()) continue;  // filtered out
      const row& acc = rows_.at(name);
      const double bps = acc.bytes_per_second, cpu = acc.cpu_percent;
      busy = busy || cpu < 90.0;
      const bool diag = name.rfind("diag/", 0) == 0 || name.find("/threads:") != std::string::npos ||
                        name.find("/nosimd") != std::string::npos || name.find("/block:") != std::string::npos ||
                        name.find("/avx2") != std::string::npos ||
                        name.find("/all-or-nothing") != std::string::npos;
      double target = 0.0;
      if (!diag && name.rfind("dequantize/", 0) == 0) target = kDequantizeTarget;
      if (!diag && name.rfind("quantize/", 0) == 0) target = kQuantizeTarget;
      if (!diag && name.rfind("convert/", 0) == 0) target = kConvertTarget;
      char pct[16] = "-", tgt[16] = "";
      const char* verdict = "";
      if (g_memcpy_bytes_per_second > 0.0) {
        const double p = 100.0 * bps / g_memcpy_bytes_per_second;
        std::snprintf(pct, sizeof pct, "%.1f%%", p);
        if (target > 0.0) {
          const bool met = p >= target;
          all_met = all_met && met;
          verdict = met ? "ok" : "MISSED";
        }
      }
      if (target > 0.0) std::snprintf(tgt, sizeof tgt, ">=%.0f%%", target);
      std::printf("%-32s %8.2f %9s %8s %5.0f%%  %s\n", name.c_str(), bps / 1e9, pct, tgt, cpu, verdict);
    }
    if (g_memcpy_bytes_per_second <= 0.0) std::printf("(no memcpy row ran: no percentages)\n");
    if (busy)
      std::printf("WARNING: a row's threads got < 90%% of their cores (cpu%%): another process was competing; "
                  "numbers are not reliable.\n");
    return all_met && matmul_met;
  }

 private:
  struct row {
    double bytes_per_second = 0.0, cpu_percent = 0.0;  // of the kept run
    bool clean = false;
    int runs = 0;
  };
  std::map<std::string, row> rows_;
};

}  // namespace

namespace lowbit_bench {

void add_row(const std::string& name, std::function<void(benchmark::State&)> fn) {
  g_registered.push_back(name);
  configure(benchmark::RegisterBenchmark(name.c_str(), [fn](benchmark::State& state) { fn(state); }));
}

void time_row(benchmark::State& state, int threads, std::int64_t bytes, const std::function<bool()>& call) {
  const row_timer timer(threads);
  for (auto _ : state) {
    if (!call()) {
      state.SkipWithError("call failed");
      break;
    }
    benchmark::ClobberMemory();
  }
  timer.finish(state, bytes);
}

}  // namespace lowbit_bench

int main(int argc, char** argv) {
  bool diagnostics = false;
  bool color = isatty(STDOUT_FILENO) != 0;  // --benchmark_color: auto, or forced either way
  int kept = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--benchmark_color=", 18) == 0) {
      const std::string v = argv[i] + 18;
      if (v == "false" || v == "no" || v == "0") color = false;
      if (v == "true" || v == "yes" || v == "1") color = true;
    }
    if (std::strcmp(argv[i], "--lowbit_diagnostics") == 0) {
      diagnostics = true;
    } else if (std::strncmp(argv[i], "--lowbit_matmul_threads=", 24) == 0) {
      lowbit_bench::set_matmul_threads(std::atoi(argv[i] + 24));
    } else if (std::strncmp(argv[i], "--lowbit_int8_path=", 19) == 0) {
      if (!lowbit_bench::set_int8_path(argv[i] + 19)) {
        std::fprintf(stderr, "lowbit_bench: unknown --lowbit_int8_path=%s (automatic, portable, avx2, avx512_vnni, amx)\n", argv[i] + 19);
        return 1;
      }
    } else {
      argv[kept++] = argv[i];
    }
  }
  argc = kept;
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_all(diagnostics);
  summary_reporter reporter(color);
  const std::size_t ran = benchmark::RunSpecifiedBenchmarks(&reporter);
  if (ran > 0) reporter.print_summary();
  benchmark::Shutdown();
  return 0;
}
