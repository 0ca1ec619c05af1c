// SPDX-License-Identifier: Apache-2.0
/// @file matmul_bench.cpp
/// @brief lowbit_bench rows of the fused low-bit matmul (issue 15), registered at start-up:
///
/// - `matmul/<format>/<compute>/MxNxK`: lowbit::matmul, x and y bfloat16 (compute bf16) or float32
///   (compute f32), no bias, all hardware threads. Counters: `Wbytes/s` (the weight's stored bytes
///   per second: codes, scales, nested scales) and `OP/s` (2·M·N·K per second).
/// - `matmul/read/<format>/NxK`: the same-run baseline, a multi-threaded read of those bytes
///   (AVX2 loads summed into a register), split over lowbit's pool like the matmul.
/// - `matmul/openblas_sgemv|sgemm/MxNxK`: OpenBLAS on the dense float32 weight of the same shape
///   (when built with it; Debian's OpenBLAS has no cblas_sbgemm, so there is no bf16 row).
/// - `matmul/bnb_gemv_4bit_nf4_bf16/1xNxK`: bitsandbytes' CPU gemv_4bit_inference_cpu_nf4_bf16 on
///   the same weight in its repacked CPU layout (when $LOWBIT_BNB_CPU_LIB names its library).
/// Every row rotates over copies of its weight totalling at least 256 MiB (8x a 32 MiB L3), so
/// that each call reads its weight from memory, not from the caches.
#include "lowbit/matmul/matmul.hpp"
#include "lowbit/quant_tensor.hpp"

#include <benchmark/benchmark.h>
#include <dlfcn.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#if defined(LOWBIT_BENCH_HAVE_OPENBLAS)
#  include <cblas.h>
#endif
#if defined(__x86_64__)
#  include <immintrin.h>
#endif

namespace {

namespace lb = lowbit;

constexpr std::int64_t kRotateBytes = std::int64_t{256} << 20;

struct wkind {
  const char* name;
  lb::format fmt;
  lb::granularity gran;
  bool dq;
};
const wkind kNf4Dq{"nf4_dq", lb::format::nf4, lb::granularity::per_block(64), true};
const wkind kE4m3Row{"e4m3fn_row", lb::format::e4m3fn, lb::granularity::per_row(), false};
const wkind kInt8Row{"int8_row", lb::format::int8_absmax, lb::granularity::per_row(), false};

std::vector<float> random_dense(std::int64_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = nd(rng);
  return v;
}

// copies of one quantized weight, at least kRotateBytes in all
struct weight_set {
  std::vector<lb::quant_tensor> w;
  std::int64_t bytes = 0;  // of one weight
};
weight_set& weights(const wkind& k, std::int64_t N, std::int64_t K) {
  static std::vector<std::pair<std::string, std::unique_ptr<weight_set>>> cache;
  const std::string key = std::string(k.name) + std::to_string(N) + "x" + std::to_string(K);
  for (auto& e : cache)
    if (e.first == key) return *e.second;
  auto set = std::make_unique<weight_set>();
  const std::vector<float> dense = random_dense(N * K, 7);
  lb::quantize_params p;
  p.fmt = k.fmt;
  p.gran = k.gran;
  p.double_quant = k.dq;
  lb::quant_tensor q;
  if (!lb::quantize(dense.data(), lb::dtype::f32, {N, K}, p, q)) std::abort();
  set->bytes = q.nbytes();
  const std::int64_t copies = std::max<std::int64_t>(2, (kRotateBytes + set->bytes - 1) / set->bytes);
  for (std::int64_t i = 0; i < copies; ++i) {
    lb::quant_tensor c;
    if (!q.clone(c)) std::abort();
    set->w.push_back(std::move(c));
  }
  cache.emplace_back(key, std::move(set));
  return *cache.back().second;
}

void BM_lowbit(benchmark::State& state, wkind k, lb::matmul_compute c, std::int64_t M, std::int64_t N, std::int64_t K) {
  weight_set& ws = weights(k, N, K);
  const lb::dtype dt = c == lb::matmul_compute::bf16 ? lb::dtype::bf16 : lb::dtype::f32;
  const std::vector<float> xf = random_dense(M * K, 11);
  std::vector<std::uint8_t> x(static_cast<std::size_t>(M * K * lb::dtype_size(dt))), y(static_cast<std::size_t>(M * N * lb::dtype_size(dt)));
  for (std::int64_t i = 0; i < M * K; ++i) {
    if (dt == lb::dtype::f32) std::memcpy(x.data() + 4 * i, &xf[static_cast<std::size_t>(i)], 4);
    else {
      const std::uint16_t h = lb::float_to_bf16_bits(xf[static_cast<std::size_t>(i)]);
      std::memcpy(x.data() + 2 * i, &h, 2);
    }
  }
  lb::matmul_options o;
  o.compute = c;
  std::size_t i = 0;
  for (auto _ : state) {
    if (!lb::matmul(x.data(), dt, M, ws.w[i++ % ws.w.size()], nullptr, y.data(), dt, o)) state.SkipWithError("matmul failed");
    benchmark::ClobberMemory();
  }
  state.counters["Wbytes/s"] = benchmark::Counter(static_cast<double>(ws.bytes) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["OP/s"] = benchmark::Counter(2.0 * static_cast<double>(M * N * K) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) std::uint64_t read_bytes(const std::uint8_t* p, std::int64_t n) {
  __m256i acc = _mm256_setzero_si256();
  std::int64_t i = 0;
  for (; i + 128 <= n; i += 128) {
    const __m256i a = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)),
                                       _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    const __m256i b = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 64)),
                                       _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
    acc = _mm256_xor_si256(acc, _mm256_xor_si256(a, b));
  }
  std::uint64_t r = static_cast<std::uint64_t>(_mm256_extract_epi64(acc, 0) ^ _mm256_extract_epi64(acc, 1) ^ _mm256_extract_epi64(acc, 2) ^
                                               _mm256_extract_epi64(acc, 3));
  for (; i < n; ++i) r += p[i];
  return r;
}
#else
std::uint64_t read_bytes(const std::uint8_t* p, std::int64_t n) {
  std::uint64_t r = 0;
  for (std::int64_t i = 0; i < n; ++i) r += p[i];
  return r;
}
#endif

void BM_read(benchmark::State& state, wkind k, std::int64_t N, std::int64_t K) {
  weight_set& ws = weights(k, N, K);
  std::size_t i = 0;
  std::atomic<std::uint64_t> sink{0};
  for (auto _ : state) {
    const lb::quant_tensor& w = ws.w[i++ % ws.w.size()];
    const std::int64_t n = lb::code_bytes(w.fmt(), w.numel());
    lb::host::parallel_for(n, std::int64_t{1} << 16, 64, 0, [&](std::int64_t b, std::int64_t e) { sink += read_bytes(w.codes() + b, e - b); });
    if (w.double_quantized()) sink += read_bytes(w.nested_codes(), w.blocks());
    else sink += read_bytes(reinterpret_cast<const std::uint8_t*>(w.scales()), w.blocks() * 4);
  }
  benchmark::DoNotOptimize(sink.load());
  state.counters["Wbytes/s"] = benchmark::Counter(static_cast<double>(ws.bytes) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

#if defined(LOWBIT_BENCH_HAVE_OPENBLAS)
void BM_openblas(benchmark::State& state, std::int64_t M, std::int64_t N, std::int64_t K) {
  const std::int64_t bytes = N * K * 4;
  const std::int64_t copies = std::max<std::int64_t>(2, (kRotateBytes + bytes - 1) / bytes);
  const std::vector<float> one = random_dense(N * K, 7);
  std::vector<std::vector<float>> w(static_cast<std::size_t>(copies), one);
  const std::vector<float> x = random_dense(M * K, 11);
  std::vector<float> y(static_cast<std::size_t>(M * N));
  std::size_t i = 0;
  for (auto _ : state) {
    const float* wp = w[i++ % w.size()].data();
    if (M == 1) cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(N), static_cast<int>(K), 1.0f, wp, static_cast<int>(K), x.data(), 1, 0.0f, y.data(), 1);
    else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(M), static_cast<int>(N), static_cast<int>(K), 1.0f, x.data(),
                     static_cast<int>(K), wp, static_cast<int>(K), 0.0f, y.data(), static_cast<int>(N));
    benchmark::ClobberMemory();
  }
  state.counters["Wbytes/s"] = benchmark::Counter(static_cast<double>(bytes) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["OP/s"] = benchmark::Counter(2.0 * static_cast<double>(M * N * K) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}
#endif

using bnb_gemv_fn = void (*)(std::int64_t, std::int64_t, std::int64_t, const std::uint16_t*, const std::uint8_t*, const std::uint16_t*,
                             std::uint16_t*, std::int64_t, std::int64_t, std::int64_t);

// bitsandbytes' CPU gemv on nf4 (block 64, absmax in bf16) in its repacked layout
// (docs/bnb-cpu-packed.md; the same weight bytes as nf4 without double quantization).
void BM_bnb_gemv(benchmark::State& state, bnb_gemv_fn gemv, std::int64_t N, std::int64_t K) {
  const std::int64_t bs = 64;
  const std::int64_t bytes = N * K / 2 + N * K / bs * 2;
  const std::int64_t copies = std::max<std::int64_t>(2, (kRotateBytes + bytes - 1) / bytes);
  std::mt19937 rng(5);
  std::vector<std::uint8_t> codes(static_cast<std::size_t>(N * K / 2));
  for (auto& c : codes) c = static_cast<std::uint8_t>(rng());
  std::vector<std::uint16_t> absmax(static_cast<std::size_t>(N * K / bs), lb::float_to_bf16_bits(0.05f));
  std::vector<std::vector<std::uint8_t>> w(static_cast<std::size_t>(copies), codes);
  std::vector<std::vector<std::uint16_t>> a(static_cast<std::size_t>(copies), absmax);
  std::vector<std::uint16_t> x(static_cast<std::size_t>(K), lb::float_to_bf16_bits(0.5f)), y(static_cast<std::size_t>(N));
  std::size_t i = 0;
  for (auto _ : state) {
    const std::size_t c = i++ % w.size();
    gemv(1, N, K, x.data(), w[c].data(), a[c].data(), y.data(), bs, K, N);
    benchmark::ClobberMemory();
  }
  state.counters["Wbytes/s"] = benchmark::Counter(static_cast<double>(bytes) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["OP/s"] = benchmark::Counter(2.0 * static_cast<double>(N * K) * static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

void configure(benchmark::internal::Benchmark* b) { b->UseRealTime()->Unit(benchmark::kMillisecond)->MinTime(0.5); }

std::string shape_name(std::int64_t M, std::int64_t N, std::int64_t K) {
  return std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K);
}

struct registrar {
  registrar() {
    const std::int64_t Ms[] = {1, 4, 16, 64, 512};
    const std::pair<std::int64_t, std::int64_t> NKs[] = {{4096, 4096}, {14336, 4096}};
    bnb_gemv_fn bnb = nullptr;
    if (const char* path = std::getenv("LOWBIT_BNB_CPU_LIB"); path != nullptr && *path != '\0') {
      if (void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL)) {
        auto has = reinterpret_cast<bool (*)()>(dlsym(lib, "has_avx512bf16_cpu"));
        if (has != nullptr && has()) bnb = reinterpret_cast<bnb_gemv_fn>(dlsym(lib, "gemv_4bit_inference_cpu_nf4_bf16"));
      }
    }
    if (bnb == nullptr) std::printf("matmul rows: LOWBIT_BNB_CPU_LIB unset or without an AVX512-BF16 gemv_4bit: no bitsandbytes row\n");
#if !defined(LOWBIT_BENCH_HAVE_OPENBLAS)
    std::printf("matmul rows: built without OpenBLAS: no sgemm/sgemv rows\n");
#endif
    for (const auto& nk : NKs) {
      const std::int64_t N = nk.first, K = nk.second;
      for (const wkind& k : {kNf4Dq, kE4m3Row, kInt8Row})
        configure(benchmark::RegisterBenchmark(("matmul/read/" + std::string(k.name) + "/" + std::to_string(N) + "x" + std::to_string(K)).c_str(),
                                               BM_read, k, N, K));
      for (const std::int64_t M : Ms) {
        configure(benchmark::RegisterBenchmark(("matmul/nf4_dq/bf16/" + shape_name(M, N, K)).c_str(), BM_lowbit, kNf4Dq, lb::matmul_compute::bf16, M, N, K));
        if (M == 1 || M == 16 || M == 512)
          configure(benchmark::RegisterBenchmark(("matmul/nf4_dq/f32/" + shape_name(M, N, K)).c_str(), BM_lowbit, kNf4Dq, lb::matmul_compute::f32, M, N, K));
        if (M == 1) {
          for (const wkind& k : {kE4m3Row, kInt8Row}) {
            configure(benchmark::RegisterBenchmark(("matmul/" + std::string(k.name) + "/bf16/" + shape_name(M, N, K)).c_str(), BM_lowbit, k,
                                                   lb::matmul_compute::bf16, M, N, K));
            configure(benchmark::RegisterBenchmark(("matmul/" + std::string(k.name) + "/f32/" + shape_name(M, N, K)).c_str(), BM_lowbit, k,
                                                   lb::matmul_compute::f32, M, N, K));
          }
          if (bnb) configure(benchmark::RegisterBenchmark(("matmul/bnb_gemv_4bit_nf4_bf16/" + shape_name(M, N, K)).c_str(), BM_bnb_gemv, bnb, N, K));
        }
#if defined(LOWBIT_BENCH_HAVE_OPENBLAS)
        configure(benchmark::RegisterBenchmark(((M == 1 ? "matmul/openblas_sgemv/" : "matmul/openblas_sgemm/") + shape_name(M, N, K)).c_str(),
                                               BM_openblas, M, N, K));
#endif
      }
    }
  }
};
const registrar kRegistrar;

}  // namespace
