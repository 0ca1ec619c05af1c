// SPDX-License-Identifier: Apache-2.0
/// @file fp8_block.hpp
/// @brief transformers' fine-grained FP8 checkpoints (`quant_method: "fp8"`,
///        `FineGrainedFP8Config`; DeepSeek-V3/R1, Qwen3 FP8): one weight read into a
///        `scaled_tensor` (fp8_e4m3_block) and written from one, with their quantization_config.
///
/// @par The layout (docs/fp8-block.md has the sources and the special values)
/// | tensor | dtype | shape |
/// |---|---|---|
/// | `X.weight` | F8_E4M3 (e4m3fn: bias 7, no Inf, 0x7F / 0xFF NaN) | `[N, K]` |
/// | `X.weight_scale_inv` | F32 (BF16 accepted on reading) | `[ceil(N / bn), ceil(K / bk)]` |
///
/// `w[n, k] = f32(w_q[n, k]) * weight_scale_inv[n / bn, k / bk]` with `[bn, bk]` the config's
/// `weight_block_size` (default [128, 128]); the tiles at the bottom and right edges may be
/// partial. config.json: `"quantization_config": {"activation_scheme": "dynamic",
/// "modules_to_not_convert": null, "quant_method": "fp8", "weight_block_size": [128, 128]}`
/// (`ignored_layers` is read as an alias of modules_to_not_convert, as transformers does).
///
/// @par Reading
/// `load_fp8_block` copies the bytes (the checkpoint may be closed afterwards) after checking:
/// the weight exists, is F8_E4M3 and 2-D; `X.weight_scale_inv` exists, is F32 or BF16 and has
/// exactly the grid's shape; unless `allow_nonfinite`, every scale is finite and no weight byte
/// is a NaN code. `check_fp8_block_layout` makes the header checks alone (no data read). Errors name the file, the tensor and what is wrong (the first bad index for
/// values); `out` is unchanged on error.
///
/// @par Writing
/// `quantize_fp8_block` is the engine's fp8_e4m3_block quantize with the config's tile
/// (`s = f32(amax / 448)`, codes `sat(x / s)`: DeepSeek-V3's rule; transformers' on-the-fly
/// quantizer rounds `1 / f32(448 / amax)` instead, see docs/fp8-block.md).
/// `fp8_block_entries` + `write_fp8_block` put a weight into a `safetensors_writer`, and
/// `write_fp8_block_config` writes config.json.
#pragma once

#include "../scaled_tensor.hpp"
#include "checkpoint.hpp"
#include "transformers.hpp"

#include <cctype>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

LOWBIT_NAMESPACE_BEGIN
namespace io {

/// The fields of transformers' FineGrainedFP8Config that describe a checkpoint.
struct fp8_block_config {
  std::int64_t block_rows = 128;  ///< weight_block_size[0] (rows of the [N, K] weight: N)
  std::int64_t block_cols = 128;  ///< weight_block_size[1] (K)
  std::string activation_scheme = "dynamic";
  /// Modules left dense; `has_modules_to_not_convert == false` writes null.
  std::vector<std::string> modules_to_not_convert;
  bool has_modules_to_not_convert = false;
  /// "float" (scales as computed) or "ue8m0" (powers of two; DeepSeek-V3.1+); "" = absent.
  /// Either way the scales are float32 values and decode the same.
  std::string scale_fmt;
};

/// The `quantization_config` object of `c` (keys sorted, as transformers writes them).
inline nlohmann::ordered_json to_json(const fp8_block_config& c) {
  nlohmann::ordered_json j;
  j["activation_scheme"] = c.activation_scheme;
  if (c.has_modules_to_not_convert) j["modules_to_not_convert"] = c.modules_to_not_convert;
  else j["modules_to_not_convert"] = nullptr;
  j["quant_method"] = "fp8";
  if (!c.scale_fmt.empty()) j["scale_fmt"] = c.scale_fmt;
  j["weight_block_size"] = {c.block_rows, c.block_cols};
  return j;
}

/// Reads a `quantization_config` object of quant_method "fp8" (`where` names it in messages).
/// Errors: not an object, another quant_method, weight_block_size not two integers >= 1, a key of
/// the wrong type, activation_scheme other than dynamic/static, scale_fmt other than float/ue8m0.
inline status from_json(const nlohmann::json& j, const std::string& where, fp8_block_config& out) {
  const char* w = where.c_str();
  if (!j.is_object()) return status::error(errc::invalid_argument, "%s: quantization_config is not an object", w);
  const auto qm = j.find("quant_method");
  if (qm == j.end() || *qm != "fp8") return status::error(errc::unsupported, "%s: quant_method is not \"fp8\"", w);
  fp8_block_config c;
  if (const auto b = j.find("weight_block_size"); b != j.end() && !b->is_null()) {
    std::uint64_t r = 0, k = 0;
    if (!b->is_array() || b->size() != 2 || !detail::json_u64((*b)[0], r) || !detail::json_u64((*b)[1], k) || r < 1 || k < 1 ||
        r > (std::uint64_t{1} << 31) || k > (std::uint64_t{1} << 31))
      return status::error(errc::invalid_argument, "%s: weight_block_size is %.40s, not two integers >= 1", w, detail::json_brief(*b).c_str());
    c.block_rows = static_cast<std::int64_t>(r);
    c.block_cols = static_cast<std::int64_t>(k);
  }
  if (const auto a = j.find("activation_scheme"); a != j.end() && !a->is_null()) {
    if (!a->is_string()) return status::error(errc::invalid_argument, "%s: activation_scheme is not a string", w);
    std::string s = a->get<std::string>();
    for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (s != "dynamic" && s != "static") return status::error(errc::unsupported, "%s: activation_scheme \"%.30s\" is not dynamic or static", w, s.c_str());
    c.activation_scheme = s;
  }
  if (const auto f = j.find("scale_fmt"); f != j.end() && !f->is_null()) {
    if (!f->is_string() || (*f != "float" && *f != "ue8m0"))
      return status::error(errc::unsupported, "%s: scale_fmt is %.40s, not \"float\" or \"ue8m0\"", w, detail::json_brief(*f).c_str());
    c.scale_fmt = f->get<std::string>();
  }
  for (const char* key : {"modules_to_not_convert", "ignored_layers"}) {
    const auto m = j.find(key);
    if (m == j.end() || m->is_null()) continue;
    if (!m->is_array()) return status::error(errc::invalid_argument, "%s: %s is not a list", w, key);
    for (const auto& s : *m) {
      if (!s.is_string()) return status::error(errc::invalid_argument, "%s: %s holds a non-string", w, key);
      c.modules_to_not_convert.push_back(s.get<std::string>());
    }
    c.has_modules_to_not_convert = true;
    break;  // modules_to_not_convert wins over its alias, as in transformers
  }
  out = std::move(c);
  return {};
}

/// Reads `path` (a config.json) and its fp8 `quantization_config`. Errors: unreadable file,
/// invalid UTF-8 or JSON, no quantization_config, or what from_json rejects.
inline status read_fp8_block_config(const std::string& path, fp8_block_config& out) {
  nlohmann::json q;
  LOWBIT_TRY(detail::read_config_quantization(path, q));
  return from_json(q, path, out);
}

/// Writes `path` atomically: the JSON object `base_text` ("" for an empty object) with
/// `quantization_config` set to `c`, keys sorted, indented by 2 (as write_config does).
inline status write_fp8_block_config(const std::string& path, const std::string& base_text, const fp8_block_config& c) {
  return detail::write_config_with(path, base_text, to_json(c));
}

/// The scale tensor's name of weight `weight`: `weight + "_scale_inv"`.
inline std::string fp8_scale_name(const std::string& weight) { return weight + "_scale_inv"; }

/// True if `weight` is an F8_E4M3 tensor of `c` with a `weight_scale_inv` beside it (the pair
/// this layout stores; says nothing about their shapes).
inline bool is_fp8_block_weight(const checkpoint& c, const std::string& weight) {
  const auto l = c.find(weight);
  return l.tensor != nullptr && l.tensor->dtype == st_dtype::F8_E4M3 && c.find(fp8_scale_name(weight)).tensor != nullptr;
}

/// Options of load_fp8_block.
struct fp8_load_options {
  /// The dtype the weight had before quantization (kept in the scaled_tensor; config.json's
  /// torch_dtype, see recorded_dtype).
  dtype source = dtype::bf16;
  /// Accept non-finite scales and NaN weight codes (they then decode by IEEE arithmetic).
  bool allow_nonfinite = false;
};

namespace detail {
inline std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string r;
  for (auto d : s) r += (r.empty() ? "" : ", ") + std::to_string(d);
  return "[" + r + "]";
}
}  // namespace detail

/// Where a checked weight and its scales are, and the weight's shape.
struct fp8_block_layout {
  checkpoint::location weight, scale;
  std::int64_t rows = 0, cols = 0;  ///< N, K
  std::int64_t grid_rows = 0, grid_cols = 0;
};

/// Checks the headers of weight `weight` and its `weight_scale_inv` in `c` against `cfg` (no data
/// read): errors as load_fp8_block's, apart from the value checks.
inline status check_fp8_block_layout(const checkpoint& c, const std::string& weight, const fp8_block_config& cfg, fp8_block_layout& out) {
  const char* name = weight.c_str();
  if (cfg.block_rows < 1 || cfg.block_cols < 1)
    return status::error(errc::invalid_argument, "%s: weight_block_size [%lld, %lld] must be two integers >= 1", c.path().c_str(),
                         static_cast<long long>(cfg.block_rows), static_cast<long long>(cfg.block_cols));
  const auto wl = c.find(weight);
  if (wl.tensor == nullptr) return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" is missing", c.path().c_str(), name);
  const char* wf = wl.file->path().c_str();
  if (wl.tensor->dtype != st_dtype::F8_E4M3)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has dtype %s; a fine-grained FP8 weight is F8_E4M3", wf, name,
                         info(wl.tensor->dtype).name);
  if (wl.tensor->shape.size() != 2)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has shape %s; a fine-grained FP8 weight is 2-D [N, K]", wf, name,
                         detail::shape_text(wl.tensor->shape).c_str());
  const std::int64_t n = wl.tensor->shape[0], k = wl.tensor->shape[1];
  const std::string sname = fp8_scale_name(weight);
  const auto sl = c.find(sname);
  if (sl.tensor == nullptr)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" (the scales of F8_E4M3 weight \"%.100s\") is missing", c.path().c_str(),
                         sname.c_str(), name);
  const char* sf = sl.file->path().c_str();
  if (sl.tensor->dtype != st_dtype::F32 && sl.tensor->dtype != st_dtype::BF16)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has dtype %s; weight_scale_inv is F32 (or BF16)", sf, sname.c_str(),
                         info(sl.tensor->dtype).name);
  const std::vector<std::int64_t> want{(n + cfg.block_rows - 1) / cfg.block_rows, (k + cfg.block_cols - 1) / cfg.block_cols};
  if (sl.tensor->shape != want)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has shape %s; weight [%lld, %lld] in %lld x %lld blocks needs %s", sf,
                         sname.c_str(), detail::shape_text(sl.tensor->shape).c_str(), static_cast<long long>(n), static_cast<long long>(k),
                         static_cast<long long>(cfg.block_rows), static_cast<long long>(cfg.block_cols), detail::shape_text(want).c_str());
  out = {wl, sl, n, k, want[0], want[1]};
  return {};
}

/// Reads weight `weight` (e.g. "model.layers.0.mlp.up_proj.weight") and its `weight_scale_inv`
/// from `c` into `out` (fp8_e4m3_block, tile cfg.block_rows x cfg.block_cols), copying the bytes.
/// Errors (naming file and tensor; `out` unchanged): a tensor missing, a wrong dtype, a weight
/// that is not 2-D, a scale shape other than [ceil(N / bn), ceil(K / bk)], a non-finite scale or a
/// NaN weight code (first index named) unless opt.allow_nonfinite.
inline status load_fp8_block(const checkpoint& c, const std::string& weight, const fp8_block_config& cfg, scaled_tensor& out,
                             const fp8_load_options& opt = {}) {
  fp8_block_layout l;
  LOWBIT_TRY(check_fp8_block_layout(c, weight, cfg, l));
  const char* name = weight.c_str();
  const std::string sname = fp8_scale_name(weight);
  const checkpoint::location wl = l.weight, sl = l.scale;
  const char* wf = wl.file->path().c_str();
  const char* sf = sl.file->path().c_str();
  const std::int64_t n = l.rows, k = l.cols;
  const std::vector<std::int64_t> want{l.grid_rows, l.grid_cols};
  scaled_params p;
  p.fmt = scaled_format::fp8_e4m3_block;
  p.gran = granularity::per_tile(cfg.block_rows, cfg.block_cols);
  scaled_tensor t;
  LOWBIT_TRY(scaled_tensor::allocate_for_overwrite({n, k}, opt.source, p, t));
  if (n * k > 0) std::memcpy(t.codes(), wl.file->data(*wl.tensor), static_cast<std::size_t>(n * k));
  const std::int64_t tiles = want[0] * want[1];
  const std::uint8_t* sb = sl.file->data(*sl.tensor);
  float* s = t.scales_f32();
  if (sl.tensor->dtype == st_dtype::F32) {
    if (tiles > 0) std::memcpy(s, sb, static_cast<std::size_t>(tiles) * 4);
  } else {
    for (std::int64_t i = 0; i < tiles; ++i) {
      const std::uint32_t bits = static_cast<std::uint32_t>(sb[2 * i] | (sb[2 * i + 1] << 8)) << 16;
      std::memcpy(&s[i], &bits, 4);
    }
  }
  if (!opt.allow_nonfinite) {
    for (std::int64_t i = 0; i < tiles; ++i)
      if (!std::isfinite(s[i]))
        return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": scale [%lld, %lld] is %s; scales must be finite", sf, sname.c_str(),
                             static_cast<long long>(i / want[1]), static_cast<long long>(i % want[1]), std::isnan(s[i]) ? "NaN" : "infinite");
    const std::uint8_t* q = t.codes();
    for (std::int64_t i = 0; i < n * k; ++i)
      if ((q[i] & 0x7F) == 0x7F)
        return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": element [%lld, %lld] is the NaN code 0x%02X", wf, name,
                             static_cast<long long>(i / k), static_cast<long long>(i % k), q[i]);
  }
  out = std::move(t);
  return {};
}

/// A zero-copy view of weight `weight` and its F32 `weight_scale_inv` in `c`'s mapping (tile
/// cfg.block_rows x cfg.block_cols), valid while `c` is open; for reading only (the mapping is
/// read-only: host::dequantize_scaled and other readers, never a quantize into it). The header
/// checks of check_fp8_block_layout apply; the values are not scanned (a NaN code or scale
/// decodes to NaN by IEEE arithmetic; load_fp8_block checks them). Errors: those checks, and BF16
/// scales (errc::unsupported: they have no float32 bytes to point at; load_fp8_block widens
/// them). `out` unchanged on error.
inline status view_fp8_block(const checkpoint& c, const std::string& weight, const fp8_block_config& cfg, host::scaled_view& out) {
  fp8_block_layout l;
  LOWBIT_TRY(check_fp8_block_layout(c, weight, cfg, l));
  if (l.scale.tensor->dtype != st_dtype::F32)
    return status::error(errc::unsupported, "%s: tensor \"%.100s\": %s scales cannot be viewed as float32; load_fp8_block widens them", l.scale.file->path().c_str(),
                         fp8_scale_name(weight).c_str(), info(l.scale.tensor->dtype).name);
  host::scaled_view v;
  v.fmt = scaled_format::fp8_e4m3_block;
  v.rows = l.rows;
  v.cols = l.cols;
  v.tile = {cfg.block_rows, cfg.block_cols};
  v.codes = const_cast<std::uint8_t*>(l.weight.file->data(*l.weight.tensor));
  v.scales = const_cast<std::uint8_t*>(l.scale.file->data(*l.scale.tensor));
  out = v;
  return {};
}

/// The engine's fp8_e4m3_block quantization of the 2-D row-major `shape` [N, K] tensor `data`
/// (dtype `dt`) with `cfg`'s block size. Errors: not 2-D, a bad block size, what quantize rejects
/// (non-finite input unless opt.allow_nonfinite). `out` unchanged on error.
inline status quantize_fp8_block(const void* data, dtype dt, const std::vector<std::int64_t>& shape, const fp8_block_config& cfg, scaled_tensor& out,
                                 const host::options& opt = {}) {
  if (shape.size() != 2) return status::error(errc::invalid_argument, "quantize_fp8_block: shape %s is not 2-D [N, K]", detail::shape_text(shape).c_str());
  if (cfg.block_rows < 1 || cfg.block_cols < 1) return status::error(errc::invalid_argument, "quantize_fp8_block: block size must be >= 1");
  scaled_params p;
  p.fmt = scaled_format::fp8_e4m3_block;
  p.gran = granularity::per_tile(cfg.block_rows, cfg.block_cols);
  p.options = opt;
  return quantize(data, dt, shape, p, out);
}

/// Checks `q` can be written in this layout: fp8_e4m3_block, 2-D.
inline status check_fp8_block_writable(const std::string& weight, const scaled_tensor& q) {
  if (q.fmt() != scaled_format::fp8_e4m3_block)
    return status::error(errc::invalid_argument, "tensor \"%.100s\": format %s is not fp8_e4m3_block", weight.c_str(), info(q.fmt()).name);
  if (q.shape().size() != 2)
    return status::error(errc::invalid_argument, "tensor \"%.100s\": shape %s is not 2-D [N, K]", weight.c_str(), detail::shape_text(q.shape()).c_str());
  return {};
}

/// Appends the entries of weight `weight` (quantized as `q`) to `out`: `weight` F8_E4M3 [N, K],
/// then `weight_scale_inv` F32 [grid rows, grid cols]. Write them with write_fp8_block.
inline status fp8_block_entries(const std::string& weight, const scaled_tensor& q, std::vector<tensor_entry>& out) {
  LOWBIT_TRY(check_fp8_block_writable(weight, q));
  out.push_back({weight, st_dtype::F8_E4M3, q.shape()});
  out.push_back({fp8_scale_name(weight), st_dtype::F32, {q.grid().grid_rows(), q.grid().grid_cols()}});
  return {};
}

/// Writes `q`'s codes then its scales (the bytes of the two entries fp8_block_entries made).
inline status write_fp8_block(safetensors_writer& w, const scaled_tensor& q) {
  LOWBIT_TRY(check_fp8_block_writable("(written)", q));
  LOWBIT_TRY(w.write(q.codes(), static_cast<std::size_t>(q.code_bytes())));
  return w.write(q.scale_bytes(), static_cast<std::size_t>(q.grid().tiles() * 4));
}

/// True if `q`'s tile is `cfg`'s block (a weight written under that config loads back as it is).
inline bool matches(const scaled_tensor& q, const fp8_block_config& cfg) noexcept {
  return q.fmt() == scaled_format::fp8_e4m3_block && q.tile().rows == cfg.block_rows && q.tile().cols == cfg.block_cols;
}

}  // namespace io
LOWBIT_NAMESPACE_END
