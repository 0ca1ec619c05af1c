// SPDX-License-Identifier: Apache-2.0
/// @file lowbit_cuda_bench.cu
/// @brief Throughput of the CUDA blockwise kernels against the device's memory bandwidth.
///
/// One run, on device 0, measures
/// - `memcpy`: cudaMemcpyAsync device to device of a 64M-element float32 tensor (256 MiB each way);
/// - `dequantize/<fmt>/<dtype>`: codes + scales -> bf16, f16 or f32 output;
/// - `quantize/<fmt>/<dtype>`: f32 or bf16 input -> codes + scales: the finiteness scan (which reads
///   the input once more) and the one-pass quantizer, as the launcher runs them by default;
/// - `quantize/<fmt>/<dtype>/one_read`: the same with options::untouched_on_error = false (no scan);
/// for nf4, e4m3fn and int8 (int8_absmax) at block 64, and nf4 with double quantization.
/// Each iteration is timed with CUDA events (manual time). `bytes_per_second` counts each byte of
/// the operands once (dense tensor, codes, float32 scales or nested codes), as lowbit_bench does
/// on the host; `%peak` is that bandwidth as a percentage of the theoretical peak from the
/// device attributes (2 x memory clock x bus width), `%memcpy` as a percentage of the memcpy row.
/// `%static` is what docs/cuda-kernel-budgets.md predicts for the row on this device: its roofline
/// with the kernels' budget ceilings (instructions per element), this device's SM count and clock
/// and an IPC of 2.5, each kernel of the row taking max(bytes / peak, instructions / issue rate);
/// the day a GPU runs this, `%peak` against `%static` checks the model.
///
/// Without a CUDA device it prints one line saying so and exits with 0 (nothing is measured).
#include <lowbit/cuda.cuh>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace {

namespace lb = ::lowbit;

constexpr std::int64_t kNumel = std::int64_t{1} << 26;
constexpr std::int64_t kBlock = 64;

double g_peak = 0.0;    // bytes/s
double g_memcpy = 0.0;  // bytes/s, from the memcpy row
double g_issue = 0.0;   // thread-instructions/s at the budget doc's IPC: SMs x clock x 2.5 x 32

/// One row of docs/cuda-kernel-budgets.md's budget table: the kernel pattern (the demangled name
/// without lowbit's namespace prefix), the bytes-per-element expression and the ceiling.
struct budget_row {
  std::regex kernel;
  std::string bytes;
  double ceiling;
};
std::vector<budget_row> g_budgets;

/// The budget table of docs/cuda-kernel-budgets.md (LOWBIT_SOURCE_DIR), or nothing if unreadable.
std::vector<budget_row> read_budgets() {
  std::vector<budget_row> rows;
  std::ifstream in(std::string(LOWBIT_SOURCE_DIR) + "/docs/cuda-kernel-budgets.md");
  std::string line;
  bool table = false;
  while (std::getline(in, line)) {
    if (line.find("<!-- budgets -->") != std::string::npos) table = true;
    if (line.find("<!-- /budgets -->") != std::string::npos) break;
    if (!table || line.size() < 2 || line[0] != '|' || line[2] != '`') continue;
    std::vector<std::string> cells;  // split on '|' not escaped as "\|"
    std::string cell;
    for (std::size_t i = 1; i < line.size(); ++i) {
      if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
        cell += '|';
        ++i;
      } else if (line[i] == '|') {
        cells.push_back(cell);
        cell.clear();
      } else {
        cell += line[i];
      }
    }
    if (cells.size() < 4) continue;
    std::string pat = cells[0];
    pat = pat.substr(pat.find('`') + 1);
    pat = pat.substr(0, pat.rfind('`'));
    pat = std::regex_replace(pat, std::regex("lowbit::v[0-9]+_[0-9]+::"), "");
    rows.push_back({std::regex(pat), cells[2], std::stod(cells[3])});
  }
  return rows;
}

/// Bytes per element of a budget row's expression ("T+0.5+0.0625", "2*T", ...) for elements of
/// `t` bytes.
double bytes_per_element(const std::string& expr, int t) {
  double sum = 0.0;
  std::stringstream terms(expr);
  std::string term;
  while (std::getline(terms, term, '+')) {
    term = std::regex_replace(term, std::regex("\\s+"), "");
    const auto star = term.find('*');
    if (term == "T") sum += t;
    else if (star != std::string::npos) sum += std::stod(term.substr(0, star)) * t;
    else if (!term.empty()) sum += std::stod(term);
  }
  return sum;
}

/// Seconds per element the roofline gives kernel `name` (elements of `t` bytes) on this device,
/// or a negative value when no budget row names it.
double roofline_seconds(const std::string& name, int t) {
  for (const budget_row& r : g_budgets) {
    if (!std::regex_search(name, r.kernel)) continue;
    const double mem = bytes_per_element(r.bytes, t) / g_peak, issue = r.ceiling / g_issue;
    return mem > issue ? mem : issue;
  }
  return -1.0;
}

/// The demangled name (without lowbit's namespace prefix) of the kernels a row runs.
std::string format_arg(lb::format f) { return "(format)" + std::to_string(static_cast<int>(f)); }
std::string type_arg(lb::dtype t) { return t == lb::dtype::f32 ? "float" : (t == lb::dtype::f16 ? "f16" : "bf16"); }

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "lowbit_cuda_bench: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

void check(const lb::status& s) {
  if (!s) {
    std::fprintf(stderr, "lowbit_cuda_bench: %s\n", s.message());
    std::exit(1);
  }
}

struct device_array {
  void* p = nullptr;
  explicit device_array(std::size_t bytes) { check(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc"); }
  ~device_array() { cudaFree(p); }
  device_array(device_array&& o) noexcept : p(o.p) { o.p = nullptr; }
  device_array(const device_array&) = delete;
  device_array& operator=(const device_array&) = delete;
};

/// A device tensor of kNumel values of dtype `dt`, filled with a seeded normal sample.
device_array make_input(lb::dtype dt) {
  std::vector<float> h(static_cast<std::size_t>(kNumel));
  std::uint64_t s = 0x243F6A8885A308D3ull;
  for (auto& v : h) {  // sum of 4 uniforms: roughly normal, deterministic
    float acc = 0.0f;
    for (int k = 0; k < 4; ++k) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      acc += static_cast<float>(s >> 40) / 16777216.0f - 0.5f;
    }
    v = acc;
  }
  device_array d(static_cast<std::size_t>(kNumel) * lb::dtype_size(dt));
  if (dt == lb::dtype::f32) {
    check(cudaMemcpy(d.p, h.data(), h.size() * 4, cudaMemcpyHostToDevice), "cudaMemcpy");
  } else {
    std::vector<std::uint16_t> b(h.size());
    for (std::size_t i = 0; i < h.size(); ++i)
      b[i] = dt == lb::dtype::bf16 ? lb::from_float<lb::bf16>(h[i]).bits : lb::from_float<lb::f16>(h[i]).bits;
    check(cudaMemcpy(d.p, b.data(), b.size() * 2, cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  return d;
}

/// `kernels`: (demangled name, element bytes, elements) of every kernel the row runs, for %static.
void report(benchmark::State& st, double bytes_per_iter, const std::vector<std::tuple<std::string, int, double>>& kernels) {
  double seconds = 0.0;
  for (const auto& k : kernels) {
    const double per = roofline_seconds(std::get<0>(k), std::get<1>(k));
    if (per < 0.0) {
      seconds = -1.0;
      break;
    }
    seconds += per * std::get<2>(k);
  }
  if (seconds > 0.0) st.counters["%static"] = bytes_per_iter / g_peak / seconds * 100.0;
  st.SetBytesProcessed(static_cast<std::int64_t>(bytes_per_iter * static_cast<double>(st.iterations())));
  st.counters["%peak"] = benchmark::Counter(bytes_per_iter * 100.0 / g_peak, benchmark::Counter::kIsIterationInvariantRate);
  if (g_memcpy > 0.0)
    st.counters["%memcpy"] = benchmark::Counter(bytes_per_iter * 100.0 / g_memcpy, benchmark::Counter::kIsIterationInvariantRate);
}

/// Runs fn once per iteration between two events; returns the total measured seconds.
template <class Fn>
double timed(benchmark::State& st, Fn&& fn) {
  double total = 0.0;
  cudaEvent_t a, b;
  check(cudaEventCreate(&a), "cudaEventCreate");
  check(cudaEventCreate(&b), "cudaEventCreate");
  fn();  // warm-up
  check(cudaDeviceSynchronize(), "warm-up");
  for (auto _ : st) {
    check(cudaEventRecord(a), "cudaEventRecord");
    fn();
    check(cudaEventRecord(b), "cudaEventRecord");
    check(cudaEventSynchronize(b), "cudaEventSynchronize");
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, a, b), "cudaEventElapsedTime");
    st.SetIterationTime(static_cast<double>(ms) / 1e3);
    total += static_cast<double>(ms) / 1e3;
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return total;
}

void BM_memcpy(benchmark::State& st) {
  const std::size_t bytes = static_cast<std::size_t>(kNumel) * 4;
  device_array src(bytes), dst(bytes);
  check(cudaMemset(src.p, 1, bytes), "cudaMemset");
  const double seconds =
      timed(st, [&] { check(cudaMemcpyAsync(dst.p, src.p, bytes, cudaMemcpyDeviceToDevice), "cudaMemcpyAsync"); });
  const double per_iter = 2.0 * static_cast<double>(bytes);
  report(st, per_iter, {});
  // the rate every later row is compared with (memcpy is registered, and so runs, first)
  if (seconds > 0.0) g_memcpy = per_iter * static_cast<double>(st.iterations()) / seconds;
}

void BM_dequantize(benchmark::State& st, lb::format f, lb::dtype out_dt, bool nested) {
  device_array x = make_input(lb::dtype::f32);
  lb::quantize_params p;
  p.fmt = f;
  p.gran = lb::granularity::per_block(kBlock);
  p.double_quant = nested;
  lb::quant_tensor q;
  check(lb::cuda::quantize(x.p, lb::dtype::f32, {kNumel}, p, q));
  device_array out(static_cast<std::size_t>(kNumel) * lb::dtype_size(out_dt));
  timed(st, [&] { check(lb::cuda::dequantize(q, out.p, out_dt)); });
  const int t = static_cast<int>(lb::dtype_size(out_dt));
  report(st, static_cast<double>(q.nbytes() + kNumel * lb::dtype_size(out_dt)),
         {{"dequantize_stream_kernel<" + format_arg(f) + ", " + type_arg(out_dt) + ">", t, static_cast<double>(kNumel)}});
}

void BM_quantize(benchmark::State& st, lb::format f, lb::dtype in_dt, bool nested, bool scan) {
  device_array x = make_input(in_dt);
  lb::quant_tensor q;
  check(lb::quant_tensor::allocate(f, {kNumel}, in_dt, kBlock, nested, q, lb::cuda::stream_allocator()));
  lb::quant_view v = q.view();
  const std::size_t ws_bytes = lb::cuda::quantize_workspace_size(v);
  device_array ws(ws_bytes);
  lb::cuda::options opt;
  opt.untouched_on_error = scan;
  timed(st, [&] { check(lb::cuda::quantize(x.p, in_dt, v, ws.p, ws_bytes, nullptr, opt)); });
  check(lb::cuda::input_status(ws.p));
  const int t = static_cast<int>(lb::dtype_size(in_dt));
  std::vector<std::tuple<std::string, int, double>> kernels = {
      {"quantize_stream_kernel<" + format_arg(f) + ", " + type_arg(in_dt) + ", false, " + (nested ? "true" : "false") + ", false>", t,
       static_cast<double>(kNumel)}};
  if (scan) kernels.emplace_back("finite_scan_kernel<" + type_arg(in_dt) + ">", t, static_cast<double>(kNumel));
  if (nested)
    kernels.emplace_back("quantize_stream_kernel<(format)2, float, false, false, true>", 4, static_cast<double>(kNumel / kBlock));
  report(st, static_cast<double>(kNumel * lb::dtype_size(in_dt) + q.nbytes()), kernels);
}

}  // namespace

int main(int argc, char** argv) {
  if (!lb::cuda::device_available()) {
    std::printf("lowbit_cuda_bench: no CUDA device; nothing measured (the CUDA benchmarks need a GPU)\n");
    return 0;
  }
  int dev = 0, clock_khz = 0, bus_bits = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, dev), "cudaDeviceGetAttribute");
  check(cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, dev), "cudaDeviceGetAttribute");
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  g_peak = 2.0 * static_cast<double>(clock_khz) * 1e3 * static_cast<double>(bus_bits) / 8.0;
  int sm_khz = 0;
  check(cudaDeviceGetAttribute(&sm_khz, cudaDevAttrClockRate, dev), "cudaDeviceGetAttribute");
  g_issue = static_cast<double>(prop.multiProcessorCount) * static_cast<double>(sm_khz) * 1e3 * 2.5 * 32.0;
  g_budgets = read_budgets();
  if (g_budgets.empty())
    std::printf("lowbit_cuda_bench: %s/docs/cuda-kernel-budgets.md has no budget table; no %%static column\n", LOWBIT_SOURCE_DIR);
  std::printf("lowbit_cuda_bench: %s (sm_%d%d), peak memory bandwidth %.1f GB/s (%d kHz x %d bits x 2)\n", prop.name,
              prop.major, prop.minor, g_peak / 1e9, clock_khz, bus_bits);

  benchmark::RegisterBenchmark("memcpy", BM_memcpy)->UseManualTime()->Unit(benchmark::kMillisecond);
  struct row {
    lb::format f;
    const char* name;
  };
  for (const row r : {row{lb::format::nf4, "nf4"}, row{lb::format::e4m3fn, "e4m3fn"}, row{lb::format::int8_absmax, "int8"}}) {
    for (lb::dtype dt : {lb::dtype::bf16, lb::dtype::f16, lb::dtype::f32})
      benchmark::RegisterBenchmark((std::string("dequantize/") + r.name + "/" + lb::dtype_name(dt)).c_str(), BM_dequantize, r.f,
                                   dt, false)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    for (lb::dtype dt : {lb::dtype::f32, lb::dtype::bf16}) {
      benchmark::RegisterBenchmark((std::string("quantize/") + r.name + "/" + lb::dtype_name(dt)).c_str(), BM_quantize, r.f, dt,
                                   false, true)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
      benchmark::RegisterBenchmark((std::string("quantize/") + r.name + "/" + lb::dtype_name(dt) + "/one_read").c_str(), BM_quantize,
                                   r.f, dt, false, false)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  benchmark::RegisterBenchmark("dequantize/nf4+dq/bf16", BM_dequantize, lb::format::nf4, lb::dtype::bf16, true)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("quantize/nf4+dq/f32", BM_quantize, lb::format::nf4, lb::dtype::f32, true, true)
      ->UseManualTime()
      ->Unit(benchmark::kMillisecond);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
