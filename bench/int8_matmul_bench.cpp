// SPDX-License-Identifier: Apache-2.0
/// @file int8_matmul_bench.cpp
/// @brief lowbit_bench's matmul rows: LLM.int8 against the libraries a user would run instead.
///
/// `Y = X · Wᵀ`, X [M, K], W [N, K], rows named `matmul/<kind>/MxNxK` for M in {1, 4, 16, 64, 512}
/// and (N, K) in {(4096, 4096), (14336, 4096)}, every hardware thread, timed per call:
/// - `int8`: the whole LLM.int8 call `lowbit::int8_matmul`, float32 X in, float32 Y out,
///   threshold 6.0 (X quantized row-wise in the call, K/1024 planted outlier columns multiplied in
///   float32, int32 GEMM, epilogue); W quantized once, outside the timed loop;
/// - `int8_gemm`: lowbit's int8 GEMM alone (`host::int8_gemm`) on the pre-quantized codes;
/// - `openblas_f32`: OpenBLAS `cblas_sgemm` on the float32 X and W (the float32 baseline);
/// - `onednn_s8s8s32`: oneDNN's int8 matmul on the same int8 codes as `int8_gemm`, its
///   primitive created and W reordered into its preferred layout once, outside the timed loop;
/// - every row cycles through copies of its weight (int8 codes, float32, oneDNN's reordered
///   layout) that together hold >= 256 MiB, 8x the L3, so W comes from memory on every call;
/// - `--lowbit_matmul_threads=N` runs every row on N threads (oneDNN: set OMP_NUM_THREADS=N too);
/// - `--lowbit_int8_path=automatic|portable|avx2|avx512_vnni|amx` forces lowbit's integer kernel
///   (`int8_gemm_options::path`, `int8_matmul_options::path`) in the `int8`, `int8_gemm` and
///   `int8_weight_only` rows (default automatic); a path this CPU lacks fails its rows;
/// - with `--lowbit_diagnostics`, labelled extras: `lowbit_f32_extra` (lowbit's own blocked
///   float32 GEMM, bench/f32_gemm.hpp, which is not a baseline a user has) and
///   `int8_weight_only` (`int8_matmul` in weight_only mode).
/// Each row reports `OP/s` (2·M·N·K per call) and `wait%`: the time the process's threads spent
/// runnable but waiting for a CPU (Linux schedstat, summed over threads) as a percentage of the
/// wall time. That, not CPU time, says whether another process competed: a row's own threads may
/// idle legitimately (a serial part of a call, an M = 1 call too small to split), which made the
/// old `cpu% < 90` check fire on a quiet machine.
#include "int8_matmul_bench.hpp"

#include "baselines.hpp"
#include "f32_gemm.hpp"

#include <lowbit/host/int8_gemm.hpp>
#include <lowbit/int8/matmul.hpp>

#include <dirent.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace lowbit_bench {
namespace {

namespace lb = ::lowbit;

constexpr double kMatmulMinTime = 0.5;  // seconds per row
constexpr double kBusyWaitPercent = 10.0;
int g_threads = 0;  // set_matmul_threads
lb::host::int8_path g_path = lb::host::int8_path::automatic;  // set_int8_path

struct shape {
  std::int64_t m, n, k;
};
constexpr std::int64_t kRows[] = {1, 4, 16, 64, 512};
constexpr std::int64_t kWeights[][2] = {{4096, 4096}, {14336, 4096}};  // N, K

std::vector<shape> shapes() {
  std::vector<shape> out;
  for (const auto& w : kWeights)
    for (std::int64_t m : kRows) out.push_back({m, w[0], w[1]});
  return out;
}

std::string shape_label(const shape& s) {
  return std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
}
std::string row_name(const char* kind, const shape& s) { return "matmul/" + std::string(kind) + "/" + shape_label(s); }

// ---- run-queue wait of this process (Linux /proc/self/task/*/schedstat, field 2, ns) -----------

double runqueue_wait_seconds() {
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return -1.0;
  double total = 0.0;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string path = std::string("/proc/self/task/") + e->d_name + "/schedstat";
    if (FILE* f = std::fopen(path.c_str(), "r")) {
      unsigned long long run = 0, wait = 0;
      if (std::fscanf(f, "%llu %llu", &run, &wait) == 2) total += static_cast<double>(wait) * 1e-9;
      std::fclose(f);
    }
  }
  closedir(d);
  return total;
}

// ---- inputs -------------------------------------------------------------------------------------

// A row must read its weight from memory as an engine does, not from the 32 MiB L3 it would
// otherwise keep it in between calls (a 4096x4096 int8 weight is 16 MiB): each row cycles
// through copies of its weight operand that together hold at least 256 MiB (8x the L3).
constexpr std::size_t kRotateBytes = std::size_t{256} << 20;
std::size_t copies_for(std::size_t bytes) { return std::max<std::size_t>(1, (kRotateBytes + bytes - 1) / bytes); }

// W: normal, std 0.02, a few larger values; quantized once (CB/SCB). Shared by every M: `wf`
// holds the float32 copies (wf[0] the original), `wq` the quantized ones.
struct weights {
  std::vector<std::vector<float>> wf;
  std::vector<lb::quant_tensor> wq;
};
// X: normal (std 1) clipped to ±5.5, with 8.0 planted in every 16th row of K/1024 columns, as LLM
// activations have a few outlier feature dimensions (threshold 6: K/1024 outlier columns).
struct activations {
  std::vector<float> x;
  std::vector<std::int8_t> xq;  // threshold-0 codes, the int8 GEMM rows' A
};

const weights& weights_of(std::int64_t n, std::int64_t k) {
  static std::map<std::pair<std::int64_t, std::int64_t>, std::unique_ptr<weights>> cache;
  auto& slot = cache[{n, k}];
  if (slot) return *slot;
  slot = std::make_unique<weights>();
  std::mt19937_64 rng(0x1a8 + static_cast<std::uint64_t>(n * 31 + k));
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const auto count = static_cast<std::size_t>(n * k);
  std::vector<float> w(count);
  for (float& v : w) v = normal(rng);
  for (std::size_t i = 0; i < w.size(); i += 997) w[i] *= 8.0f;
  slot->wq.resize(copies_for(count));
  for (auto& q : slot->wq)
    if (!lb::quantize_int8_weights(w.data(), lb::dtype::f32, n, k, q)) {
      std::fprintf(stderr, "lowbit_bench: weight quantization failed\n");
      std::exit(1);
    }
  slot->wf.assign(copies_for(count * sizeof(float)), w);
  return *slot;
}

const activations& activations_of(std::int64_t m, std::int64_t k) {
  static std::map<std::pair<std::int64_t, std::int64_t>, std::unique_ptr<activations>> cache;
  auto& slot = cache[{m, k}];
  if (slot) return *slot;
  slot = std::make_unique<activations>();
  std::mt19937_64 rng(0x21 + static_cast<std::uint64_t>(m * 31 + k));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  slot->x.resize(static_cast<std::size_t>(m * k));
  for (float& v : slot->x) v = std::max(-5.5f, std::min(5.5f, normal(rng)));
  for (std::int64_t r = 0; r < m; r += 16)
    for (std::int64_t c = 7; c < k; c += 1024) slot->x[static_cast<std::size_t>(r * k + c)] = 8.0f;
  slot->xq.resize(slot->x.size());
  std::vector<float> stats(static_cast<std::size_t>(m));
  if (!lb::int8_vectorwise_quant(slot->x.data(), lb::dtype::f32, m, k, 0.0f, slot->xq.data(), stats.data(), nullptr, nullptr)) {
    std::fprintf(stderr, "lowbit_bench: activation quantization failed\n");
    std::exit(1);
  }
  return *slot;
}

// ---- rows ---------------------------------------------------------------------------------------

template <class Fn>
void timed(benchmark::State& state, const shape& s, Fn&& call) {
  call();  // first touch of the outputs, library set-up, outside the timed loop
  const auto wall0 = std::chrono::steady_clock::now();
  const double wait0 = runqueue_wait_seconds();
  for (auto _ : state) {
    if (!call()) {
      state.SkipWithError("matmul call failed");
      break;
    }
    benchmark::ClobberMemory();
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  const double wait = runqueue_wait_seconds() - wait0;
  state.counters["OP/s"] = benchmark::Counter(2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) *
                                                  static_cast<double>(s.k) * static_cast<double>(state.iterations()),
                                              benchmark::Counter::kIsRate);
  if (wall > 0.0 && wait0 >= 0.0) state.counters["wait%"] = 100.0 * wait / wall;
}

void bm_int8(benchmark::State& state, shape s, lb::int8::matmul_mode mode) {
  const weights& w = weights_of(s.n, s.k);
  const activations& a = activations_of(s.m, s.k);
  std::vector<float> y(static_cast<std::size_t>(s.m * s.n));
  lb::int8_matmul_options o;  // threshold 6.0, fastest integer path
  o.mode = mode;
  o.threads = g_threads;
  o.path = g_path;
  std::size_t i = 0;
  timed(state, s, [&] { return lb::int8_matmul(a.x.data(), lb::dtype::f32, s.m, s.k, w.wq[i++ % w.wq.size()], nullptr, y.data(), o).ok(); });
}

void bm_int8_gemm(benchmark::State& state, shape s) {
  const weights& w = weights_of(s.n, s.k);
  const activations& a = activations_of(s.m, s.k);
  std::vector<std::int32_t> c(static_cast<std::size_t>(s.m * s.n));
  lb::host::int8_gemm_options o;
  o.threads = g_threads;
  o.path = g_path;
  std::size_t i = 0;
  timed(state, s, [&] {
    const auto* cb = reinterpret_cast<const std::int8_t*>(w.wq[i++ % w.wq.size()].codes());
    return lb::host::int8_gemm(a.xq.data(), s.k, cb, s.k, c.data(), s.n, s.m, s.n, s.k, o).ok();
  });
}

void bm_lowbit_f32(benchmark::State& state, shape s) {
  const weights& w = weights_of(s.n, s.k);
  const activations& a = activations_of(s.m, s.k);
  std::vector<float> y(static_cast<std::size_t>(s.m * s.n));
  std::size_t i = 0;
  timed(state, s, [&] { return sgemm(a.x.data(), w.wf[i++ % w.wf.size()].data(), y.data(), s.m, s.n, s.k, g_threads); });
}

#if LOWBIT_BENCH_HAVE_OPENBLAS
void bm_openblas(benchmark::State& state, shape s) {
  const weights& w = weights_of(s.n, s.k);
  const activations& a = activations_of(s.m, s.k);
  std::vector<float> y(static_cast<std::size_t>(s.m * s.n));
  std::size_t i = 0;
  timed(state, s, [&] {
    openblas_sgemm_nt(s.m, s.n, s.k, a.x.data(), w.wf[i++ % w.wf.size()].data(), y.data(), lb::host::resolve_threads(g_threads));
    return true;
  });
}
#endif

#if LOWBIT_BENCH_HAVE_ONEDNN
void bm_onednn(benchmark::State& state, shape s) {
  const weights& w = weights_of(s.n, s.k);
  const activations& a = activations_of(s.m, s.k);
  std::vector<std::int32_t> c(static_cast<std::size_t>(s.m * s.n));
  // one primitive per weight copy, each holding W reordered into oneDNN's layout once
  std::vector<std::unique_ptr<onednn_int8_matmul>> mm;
  for (const auto& q : w.wq)
    mm.push_back(std::make_unique<onednn_int8_matmul>(s.m, s.n, s.k, false, a.xq.data(), reinterpret_cast<const std::int8_t*>(q.codes()), c.data()));
  state.SetLabel(mm[0]->implementation());
  std::size_t i = 0;
  timed(state, s, [&] {
    mm[i++ % mm.size()]->run();
    return true;
  });
}
#endif

// ---- results ------------------------------------------------------------------------------------

struct result {
  double seconds = 0.0, wait_percent = 0.0;  // of the best run
};
std::map<std::string, result>& results() {
  static std::map<std::string, result> r;
  return r;
}

}  // namespace

void set_matmul_threads(int threads) { g_threads = threads; }

bool set_int8_path(const std::string& name) {
  for (auto p : {lb::host::int8_path::automatic, lb::host::int8_path::portable, lb::host::int8_path::avx2,
                 lb::host::int8_path::avx512_vnni, lb::host::int8_path::amx})
    if (name == lb::host::int8_path_name(p)) {
      g_path = p;
      return true;
    }
  return false;
}

bool is_matmul_row(const std::string& name) { return name.rfind("matmul/", 0) == 0; }

void register_int8_matmul_rows(std::vector<std::string>& registered, bool extras) {
  auto add = [&](const std::string& name, auto fn, auto... args) {
    registered.push_back(name);
    benchmark::RegisterBenchmark(name.c_str(), fn, args...)->UseRealTime()->MinTime(kMatmulMinTime)->Unit(benchmark::kMillisecond);
  };
#if !LOWBIT_BENCH_HAVE_OPENBLAS
  std::printf("lowbit_bench: built without OpenBLAS (apt-get install libopenblas-dev): no matmul/openblas_f32 rows\n");
#endif
#if !LOWBIT_BENCH_HAVE_ONEDNN
  std::printf("lowbit_bench: built without oneDNN (apt-get install libdnnl-dev): no matmul/onednn_s8s8s32 rows\n");
#endif
  for (const shape& s : shapes()) {
    add(row_name("int8", s), bm_int8, s, lb::int8::matmul_mode::split);
    add(row_name("int8_gemm", s), bm_int8_gemm, s);
#if LOWBIT_BENCH_HAVE_OPENBLAS
    add(row_name("openblas_f32", s), bm_openblas, s);
#endif
#if LOWBIT_BENCH_HAVE_ONEDNN
    add(row_name("onednn_s8s8s32", s), bm_onednn, s);
#endif
    if (extras) {
      add(row_name("lowbit_f32_extra", s), bm_lowbit_f32, s);
      add(row_name("int8_weight_only", s), bm_int8, s, lb::int8::matmul_mode::weight_only);
    }
  }
}

void record_matmul_run(const benchmark::BenchmarkReporter::Run& run) {
  // one thread: the calling thread did all the work, and its CPU time is the least disturbed figure
  const double t = lb::host::resolve_threads(g_threads) == 1 ? run.GetAdjustedCPUTime() : run.GetAdjustedRealTime();
  const double seconds = t / benchmark::GetTimeUnitMultiplier(run.time_unit);
  const auto wait = run.counters.find("wait%");
  result& r = results()[run.run_name.function_name];
  if (r.seconds == 0.0 || seconds < r.seconds) {
    r.seconds = seconds;
    r.wait_percent = wait == run.counters.end() ? 0.0 : wait->second.value;
  }
}

bool print_matmul_summary() {
  if (results().empty()) return true;
  std::printf("\nmatmul summary: Y = X * W^T, MxNxK, %d threads, best run of each row, ms per call (%s).\n"
              "int8 = lowbit::int8_matmul (f32 in/out, threshold 6.0, integer path %s); gemm = lowbit's int8 GEMM alone;\n"
              "openblas = OpenBLAS sgemm (f32); onednn = oneDNN s8s8s32 on the same codes (weights prepacked once).\n"
              "targets: openblas / int8 >= 3 at M <= 16 and >= 2 at M = 512; gemm / onednn <= 1.25 at every M.\n\n",
              lb::host::resolve_threads(g_threads),
              lb::host::resolve_threads(g_threads) == 1 ? "CPU time of the calling thread" : "wall time",
              lb::host::int8_path_name(lb::host::resolve_int8_path(g_path)));
  std::printf("%-16s %9s %9s %9s %9s %9s %9s  %s\n", "MxNxK", "int8", "gemm", "openblas", "onednn", "blas/int8", "gemm/dnn", "");
  bool all_met = true, busy = false;
  for (const shape& s : shapes()) {
    auto get = [&](const char* kind) {
      const auto it = results().find(row_name(kind, s));
      return it == results().end() ? result{} : it->second;
    };
    const result i = get("int8"), g = get("int8_gemm"), b = get("openblas_f32"), d = get("onednn_s8s8s32");
    if (i.seconds == 0.0 && g.seconds == 0.0 && b.seconds == 0.0 && d.seconds == 0.0) continue;
    const double speedup = (b.seconds > 0.0 && i.seconds > 0.0) ? b.seconds / i.seconds : 0.0;
    const double vs_dnn = (g.seconds > 0.0 && d.seconds > 0.0) ? g.seconds / d.seconds : 0.0;
    const double want = s.m <= 16 ? 3.0 : (s.m >= 512 ? 2.0 : 0.0);
    std::string verdict;
    if (speedup > 0.0 && want > 0.0 && speedup < want) verdict += " int8-vs-openblas MISSED";
    if (vs_dnn > 1.25) verdict += " gemm-vs-onednn MISSED";
    all_met = all_met && verdict.empty();
    const double wait = std::max(std::max(i.wait_percent, g.wait_percent), std::max(b.wait_percent, d.wait_percent));
    if (wait > kBusyWaitPercent) {
      verdict += " (busy: wait%)";
      busy = true;
    }
    auto ms = [](const result& r) { return r.seconds * 1e3; };
    std::printf("%-16s %9.3f %9.3f %9.3f %9.3f %9.2f %9.2f %s\n", shape_label(s).c_str(), ms(i), ms(g), ms(b), ms(d), speedup, vs_dnn,
                verdict.empty() ? " ok" : verdict.c_str());
  }
  if (busy)
    std::printf("WARNING: in a row marked busy the threads spent > %.0f%% of the wall time waiting for a CPU (wait%%): "
                "another process was competing; those numbers are not reliable.\n",
                kBusyWaitPercent);
  return all_met;
}

}  // namespace lowbit_bench
