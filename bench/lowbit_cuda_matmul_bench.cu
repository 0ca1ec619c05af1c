// SPDX-License-Identifier: Apache-2.0
/// @file lowbit_cuda_matmul_bench.cu
/// @brief GPU benchmark of LLM.int8 (kernels/lowbit/cuda/int8.cuh) next to a float16 cuBLAS GEMM of
///        the same shape, in the same run. Without a CUDA device every row reports an error
///        ("no CUDA device") and the program exits 0.
///
/// Rows, `C = X · Wᵀ` for X [M, K], W [N, K], float16 in and out, timed with CUDA events
/// (manual time, per call), reported in OP/s (2·M·N·K / time) and, for the quantization row,
/// bytes/s:
/// - `cuda/matmul/f16/MxKxN`: cublasGemmEx, float16 inputs and output, float32 compute;
/// - `cuda/matmul/int8/MxKxN`: lowbit::cuda::int8_matmul with cuBLASLt and cuBLAS handles,
///   threshold 6.0, K/1024 planted outlier columns (includes its one stream synchronization);
/// - `cuda/matmul/int8_kernels/MxKxN`: the same with null handles (lowbit's fallback kernels only);
/// - `cuda/int8_quant/MxK`: int8_vectorwise_quant alone (bytes = input + codes + row stats).
///
/// The fused low-bit matmul (kernels/lowbit/cuda/matmul.cuh), `y = x · dequant(W)ᵀ` with x and y in
/// bfloat16, rows `cuda/fused/<weight>/<compute>/MxNxK` for M in {1, 4, 16, 64, 512} and N x K in
/// {4096 x 4096, 14336 x 4096}: bytes/s of the weight's bytes (codes, scales, nested scales), `%peak`
/// of the device's HBM bandwidth (memory clock x bus width), and `x_cublas_bf16` the speed-up
/// over cublasGemmEx on the dense bfloat16 weight of the same shape, timed in the same row,
/// interleaved call by call.
#include <lowbit/cuda.cuh>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace {

namespace lb = ::lowbit;

struct shape {
  std::int64_t m, k, n;
};
constexpr shape kShapes[] = {{1, 4096, 4096}, {64, 4096, 4096}, {512, 4096, 4096}, {4096, 4096, 4096}};

bool check(cudaError_t e, benchmark::State& state) {
  if (e == cudaSuccess) return true;
  state.SkipWithError(cudaGetErrorString(e));
  return false;
}

// Device inputs of one shape: X (f16, outliers planted), CB/SCB from the host quantizer, Y.
struct device_data {
  lb::f16* x = nullptr;
  lb::f16* w = nullptr;
  lb::f16* y = nullptr;
  std::int8_t* cb = nullptr;
  float* scb = nullptr;
  unsigned char* ws = nullptr;
  unsigned char* lt_ws = nullptr;
  std::size_t ws_bytes = 0;
  static constexpr std::size_t lt_ws_bytes = std::size_t{32} << 20;
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;

  bool init(const shape& s) {
    std::vector<lb::f16> hx(static_cast<std::size_t>(s.m * s.k)), hw(static_cast<std::size_t>(s.n * s.k));
    std::uint64_t z = 0x10B17;
    auto next = [&] {  // xorshift, roughly uniform in [-1, 1)
      z ^= z << 13;
      z ^= z >> 7;
      z ^= z << 17;
      return static_cast<float>(static_cast<std::int64_t>(z >> 11) - (std::int64_t{1} << 52)) / static_cast<float>(std::int64_t{1} << 52);
    };
    for (std::int64_t i = 0; i < s.m * s.k; ++i)
      hx[i] = lb::from_float<lb::f16>((i % s.k % 1024 == 7 && (i / s.k) % 16 == 0) ? 8.0f : 2.0f * next());
    for (auto& v : hw) v = lb::from_float<lb::f16>(0.05f * next());
    lb::quant_tensor wq;
    if (!lb::quantize_int8_weights(hw.data(), lb::dtype::f16, s.n, s.k, wq)) return false;
    ws_bytes = lb::cuda::int8_matmul_workspace_size(s.m, s.k, s.n, lb::dtype::f16);
    const std::size_t xb = hx.size() * 2, wb = hw.size() * 2, yb = static_cast<std::size_t>(s.m * s.n) * 2;
    if (cudaMalloc(&x, xb) || cudaMalloc(&w, wb) || cudaMalloc(&y, yb) || cudaMalloc(&cb, hw.size()) ||
        cudaMalloc(&scb, static_cast<std::size_t>(s.n) * 4) || cudaMalloc(&ws, ws_bytes) || cudaMalloc(&lt_ws, lt_ws_bytes))
      return false;
    if (cudaMemcpy(x, hx.data(), xb, cudaMemcpyHostToDevice) || cudaMemcpy(w, hw.data(), wb, cudaMemcpyHostToDevice) ||
        cudaMemcpy(cb, wq.codes(), hw.size(), cudaMemcpyHostToDevice) ||
        cudaMemcpy(scb, wq.scales(), static_cast<std::size_t>(s.n) * 4, cudaMemcpyHostToDevice))
      return false;
    return cublasLtCreate(&lt) == CUBLAS_STATUS_SUCCESS && cublasCreate(&blas) == CUBLAS_STATUS_SUCCESS;
  }
  ~device_data() {
    if (blas) cublasDestroy(blas);
    if (lt) cublasLtDestroy(lt);
    for (void* p : {static_cast<void*>(x), static_cast<void*>(w), static_cast<void*>(y), static_cast<void*>(cb),
                    static_cast<void*>(scb), static_cast<void*>(ws), static_cast<void*>(lt_ws)})
      if (p) cudaFree(p);
  }
};

// Times `call` with CUDA events per iteration; false from call ends the row with an error.
template <class Fn>
void timed(benchmark::State& state, double ops_per_call, double bytes_per_call, Fn&& call) {
  cudaEvent_t a, b;
  if (!check(cudaEventCreate(&a), state) || !check(cudaEventCreate(&b), state)) return;
  if (!call()) {  // warm-up, also validates
    state.SkipWithError("call failed");
    return;
  }
  for (auto _ : state) {
    cudaEventRecord(a);
    if (!call()) {
      state.SkipWithError("call failed");
      break;
    }
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, a, b);
    state.SetIterationTime(static_cast<double>(ms) * 1e-3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  if (ops_per_call > 0)
    state.counters["OP/s"] = benchmark::Counter(ops_per_call * static_cast<double>(state.iterations()), benchmark::Counter::kIsIterationInvariantRate);
  if (bytes_per_call > 0) state.SetBytesProcessed(static_cast<std::int64_t>(bytes_per_call) * state.iterations());
}

enum class kind { f16, int8, int8_kernels, quant };

void BM_cuda(benchmark::State& state, shape s, kind k) {
  if (!lb::cuda::device_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  device_data d;
  if (!d.init(s)) {
    state.SkipWithError("setup failed (allocation, copy or handle creation)");
    return;
  }
  const double ops = 2.0 * static_cast<double>(s.m * s.n * s.k);
  if (k == kind::f16) {
    const float alpha = 1.0f, beta = 0.0f;
    timed(state, ops, 0, [&] {
      return cublasGemmEx(d.blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(s.n), static_cast<int>(s.m), static_cast<int>(s.k),
                          &alpha, d.w, CUDA_R_16F, static_cast<int>(s.k), d.x, CUDA_R_16F, static_cast<int>(s.k), &beta, d.y,
                          CUDA_R_16F, static_cast<int>(s.n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
    });
    return;
  }
  if (k == kind::quant) {
    auto* codes = reinterpret_cast<std::int8_t*>(d.ws);  // scratch inside the matmul workspace
    float* stats = reinterpret_cast<float*>(d.lt_ws);                        // 4 M bytes <= 1 MiB
    std::int32_t* cols = reinterpret_cast<std::int32_t*>(d.lt_ws + (std::size_t{1} << 20));  // 4 K bytes
    unsigned char* qws = d.lt_ws + (std::size_t{2} << 20);
    timed(state, 0, static_cast<double>(s.m * s.k) * 3.0 + 4.0 * static_cast<double>(s.m), [&] {
      return lb::cuda::int8_vectorwise_quant(d.x, lb::dtype::f16, s.m, s.k, 6.0f, codes, stats, cols, qws,
                                             lb::cuda::int8_quant_workspace_size(s.m, s.k))
          .ok();
    });
    return;
  }
  lb::cuda::int8_handles h;
  if (k == kind::int8) {
    h.lt = d.lt;
    h.blas = d.blas;
    h.lt_workspace = d.lt_ws;
    h.lt_workspace_bytes = device_data::lt_ws_bytes;
  }
  const lb::cuda::int8_weights w{d.cb, d.scb, s.n, s.k};
  timed(state, ops, 0, [&] {
    return lb::cuda::int8_matmul(h, d.x, lb::dtype::f16, s.m, s.k, w, nullptr, d.y, 6.0f, d.ws, d.ws_bytes).ok();
  });
}

// ---- the fused low-bit matmul ----------------------------------------------------------------

struct fused_weight {
  const char* name;
  lb::format fmt;
  lb::granularity gran;
  bool dq;
};
const fused_weight kFused[] = {{"nf4+dq", lb::format::nf4, lb::granularity::per_block(64), true},
                               {"e4m3fn_row", lb::format::e4m3fn, lb::granularity::per_row(), false},
                               {"int8_row", lb::format::int8_absmax, lb::granularity::per_row(), false}};

double hbm_bytes_per_second() {
  int dev = 0, clock_khz = 0, bus_bits = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev) != cudaSuccess)
    return 0.0;
  return 2.0 * clock_khz * 1e3 * bus_bits / 8.0;
}

void BM_fused(benchmark::State& state, fused_weight fw, lb::matmul_compute c, std::int64_t m, std::int64_t n, std::int64_t k) {
  if (!lb::cuda::device_available()) {
    state.SkipWithError("no CUDA device");
    return;
  }
  std::vector<float> hw(static_cast<std::size_t>(n * k));
  std::uint64_t z = 0xF05ED;
  for (auto& v : hw) {
    z = z * 6364136223846793005ull + 1442695040888963407ull;
    v = 0.05f * (static_cast<float>(z >> 40) / static_cast<float>(1 << 24) - 0.5f);
  }
  lb::quantize_params p;
  p.fmt = fw.fmt;
  p.gran = fw.gran;
  p.double_quant = fw.dq;
  lb::quant_tensor hq, dq;
  if (!lb::quantize(hw.data(), lb::dtype::f32, {n, k}, p, hq) || !lb::cuda::to_device(hq, dq)) {
    state.SkipWithError("setup failed (quantize or copy)");
    return;
  }
  std::vector<lb::bf16> hb(hw.size());
  for (std::size_t i = 0; i < hw.size(); ++i) hb[i] = lb::from_float<lb::bf16>(hw[i]);
  std::vector<lb::bf16> hx(static_cast<std::size_t>(m * k), lb::from_float<lb::bf16>(0.5f));
  lb::bf16 *x = nullptr, *y = nullptr, *wd = nullptr;
  void* ws = nullptr;
  lb::matmul_options o;
  o.compute = c;
  const std::size_t ws_bytes = lb::cuda::matmul_workspace_size(lb::dtype::bf16, m, k, o);
  cublasHandle_t blas = nullptr;
  const bool ok = cudaMalloc(&x, hx.size() * 2) == cudaSuccess && cudaMalloc(&y, static_cast<std::size_t>(m * n) * 2) == cudaSuccess &&
                  cudaMalloc(&wd, hb.size() * 2) == cudaSuccess && cudaMalloc(&ws, ws_bytes) == cudaSuccess &&
                  cudaMemcpy(x, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess &&
                  cudaMemcpy(wd, hb.data(), hb.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess && cublasCreate(&blas) == CUBLAS_STATUS_SUCCESS;
  const lb::quant_view v = dq.view();
  std::size_t bytes = static_cast<std::size_t>(lb::code_bytes(v.fmt, v.numel)) + static_cast<std::size_t>(v.blocks()) * (v.nested() ? 1 : 4);
  if (v.nested()) bytes += static_cast<std::size_t>((v.blocks() + 255) / 256) * 4;
  cudaEvent_t a, b;
  double fused_s = 0.0, blas_s = 0.0;
  if (ok && cudaEventCreate(&a) == cudaSuccess && cudaEventCreate(&b) == cudaSuccess) {
    const float alpha = 1.0f, beta = 0.0f;
    auto fused = [&] { return lb::cuda::matmul(x, lb::dtype::bf16, m, n, k, v, nullptr, y, lb::dtype::bf16, o, ws, ws_bytes).ok(); };
    auto dense = [&] {
      return cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m), static_cast<int>(k), &alpha, wd, CUDA_R_16BF,
                          static_cast<int>(k), x, CUDA_R_16BF, static_cast<int>(k), &beta, y, CUDA_R_16BF, static_cast<int>(n),
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS;
    };
    auto time_one = [&](auto&& call, double& total) {
      cudaEventRecord(a);
      const bool r = call();
      cudaEventRecord(b);
      cudaEventSynchronize(b);
      float ms = 0.0f;
      cudaEventElapsedTime(&ms, a, b);
      total += ms * 1e-3;
      return r;
    };
    if (!fused() || !dense()) state.SkipWithError("call failed");
    for (auto _ : state) {
      double t = 0.0;
      if (!time_one(fused, t) || !time_one(dense, blas_s)) {
        state.SkipWithError("call failed");
        break;
      }
      fused_s += t;
      state.SetIterationTime(t);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    state.SetBytesProcessed(static_cast<std::int64_t>(bytes) * state.iterations());
    const double peak = hbm_bytes_per_second();
    if (fused_s > 0 && peak > 0)
      state.counters["%peak"] = 100.0 * static_cast<double>(bytes) * static_cast<double>(state.iterations()) / fused_s / peak;
    if (fused_s > 0) state.counters["x_cublas_bf16"] = blas_s / fused_s;
  } else {
    state.SkipWithError("setup failed (allocation, copy or handle creation)");
  }
  if (blas) cublasDestroy(blas);
  for (void* q : {static_cast<void*>(x), static_cast<void*>(y), static_cast<void*>(wd), ws})
    if (q) cudaFree(q);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (!lb::cuda::device_available()) std::printf("lowbit_cuda_bench: no CUDA device; every row is skipped\n");
  for (const shape& s : kShapes) {
    const std::string dims = std::to_string(s.m) + "x" + std::to_string(s.k) + "x" + std::to_string(s.n);
    for (auto [name, k] : {std::pair<const char*, kind>{"cuda/matmul/f16/", kind::f16}, {"cuda/matmul/int8/", kind::int8},
                           {"cuda/matmul/int8_kernels/", kind::int8_kernels}}) {
      if (k == kind::int8_kernels && s.m * s.n * s.k > (std::int64_t{1} << 33)) continue;  // the fallback GEMM is slow
      benchmark::RegisterBenchmark((name + dims).c_str(), BM_cuda, s, k)->UseManualTime()->Unit(benchmark::kMillisecond);
    }
    const std::string q = "cuda/int8_quant/" + std::to_string(s.m) + "x" + std::to_string(s.k);
    benchmark::RegisterBenchmark(q.c_str(), BM_cuda, s, kind::quant)->UseManualTime()->Unit(benchmark::kMicrosecond);
  }
  for (const fused_weight& fw : kFused)
    for (lb::matmul_compute c : {lb::matmul_compute::f32, lb::matmul_compute::bf16})
      for (std::int64_t m : {1, 4, 16, 64, 512})
        for (std::int64_t n : {4096, 14336}) {
          const std::string name = std::string("cuda/fused/") + fw.name + (c == lb::matmul_compute::f32 ? "/f32/" : "/bf16/") +
                                   std::to_string(m) + "x" + std::to_string(n) + "x4096";
          benchmark::RegisterBenchmark(name.c_str(), BM_fused, fw, c, m, n, std::int64_t{4096})->UseManualTime()->Unit(benchmark::kMicrosecond);
        }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
