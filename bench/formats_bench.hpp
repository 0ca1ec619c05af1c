// SPDX-License-Identifier: Apache-2.0
/// @file formats_bench.hpp
/// @brief The few pieces of lowbit_bench.cpp that the block-scaled format rows
///        (formats_bench.cpp) use, passed in so that the rows share its memcpy baseline, timing,
///        summary and input values.
#pragma once

#include <lowbit/status.hpp>

#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <string>

namespace lowbit_bench {

struct hooks {
  /// Registers a row under `name` (configured and listed in the summary like lowbit_bench's own).
  std::function<void(const std::string& name, std::function<void(benchmark::State&)> row)> add;
  /// Times `body` in the row's loop and reports `bytes` moved per call (lowbit_bench's row_timer).
  std::function<void(benchmark::State&, std::int64_t bytes, const std::function<lowbit::status()>& body)> timed;
  /// lowbit_bench's deterministic weight-like value of element i.
  float (*weight)(std::int64_t i) = nullptr;
};

/// Registers the block-scaled format rows (formats_bench.cpp).
void register_format_rows(const hooks& h);

}  // namespace lowbit_bench
