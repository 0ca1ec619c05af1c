// SPDX-License-Identifier: Apache-2.0
/// @file int8_matmul_bench.hpp
/// @brief The matmul rows of lowbit_bench (bench/int8_matmul_bench.cpp): LLM.int8 against the
///        libraries a user would run instead, in the same run.
#pragma once

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

namespace lowbit_bench {

/// Registers the `matmul/...` rows and appends their names to `registered`. `extras` adds the
/// labelled extra rows (lowbit's own float32 GEMM, LLM.int8 weight_only); without OpenBLAS or
/// oneDNN their rows are not registered and a line says so.
void register_int8_matmul_rows(std::vector<std::string>& registered, bool extras);

/// Threads of every matmul row (0, the default: every hardware thread): lowbit's calls and OpenBLAS
/// take it; oneDNN takes OMP_NUM_THREADS from the environment (set it to the same). With 1, each
/// call runs on the benchmark's own thread, and the summary lists that thread's CPU time per call,
/// which another process competing for the cores disturbs far less than the wall time.
void set_matmul_threads(int threads);

/// The integer kernel of the `int8`, `int8_gemm` and `int8_weight_only` rows, by its
/// host::int8_path_name ("automatic", the default, "portable", "avx2", "avx512_vnni", "amx");
/// false for an unknown name.
bool set_int8_path(const std::string& name);

/// True for a row registered by register_int8_matmul_rows.
bool is_matmul_row(const std::string& name);

/// Records one finished run of a matmul row (its best run is kept).
void record_matmul_run(const benchmark::BenchmarkReporter::Run& run);

/// Prints the matmul summary table (ms per row and shape, the ratios against the targets); returns
/// false if a target was missed.
bool print_matmul_summary();

}  // namespace lowbit_bench
