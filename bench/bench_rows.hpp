// SPDX-License-Identifier: Apache-2.0
/// @file bench_rows.hpp
/// @brief What lowbit_bench.cpp lends the benchmark files that add rows to it (convert_bench.cpp):
///        registering a row into the summary table, and the `%memcpy` / `cpu%` counters.
#pragma once

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <string>

namespace lowbit_bench {

/// Registers `fn` as row `name` (real time, the suite's minimum time) and lists it in the summary,
/// where rows named "convert/..." (without "/threads:" or "/nosimd") have the >= 85% target.
void add_row(const std::string& name, std::function<void(benchmark::State&)> fn);

/// Runs `call` in the timed loop of `state` (a failing call skips the row) and sets its counters:
/// bytes_per_second from `bytes` moved per call, `%memcpy` and `cpu%` for `threads` threads.
void time_row(benchmark::State& state, int threads, std::int64_t bytes, const std::function<bool()>& call);

/// Registers the rows of convert_bench.cpp (the plain conversions).
void register_convert_rows(bool diagnostics);

}  // namespace lowbit_bench
