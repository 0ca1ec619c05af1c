// SPDX-License-Identifier: Apache-2.0
/// @file mxfp4.hpp
/// @brief MXFP4 checkpoints as gpt-oss stores them (transformers `quant_method: "mxfp4"`,
///        `Mxfp4Config`; openai/gpt-oss `original/` weights): a `X_blocks` / `X_scales` pair read
///        into one `scaled_tensor` (mxfp4, tile 1 x 32) and written from one, with their
///        quantization_config.
///
/// @par The layout (docs/mxfp4-gptoss.md has the sources and the special values)
/// | tensor | dtype | shape |
/// |---|---|---|
/// | `X_blocks` | U8: two e2m1 codes a byte, element 2j in the low nibble | `[E, rows, K / 32, 16]` (or `[rows, K / 32, 16]`) |
/// | `X_scales` | U8: e8m0, `2^(s - 127)` | `[E, rows, K / 32]` (or `[rows, K / 32]`) |
///
/// `w[e, r, 32 g + 2 j + h] = FP4[(X_blocks[e, r, g, j] >> 4 h) & 15] * 2^(X_scales[e, r, g] - 127)`
/// with FP4 = {0, .5, 1, 1.5, 2, 3, 4, 6, -0, -.5, -1, -1.5, -2, -3, -4, -6}: the weight
/// `[E, rows, K]` in the orientation of the file (transformers transposes its dequantized experts
/// to `[E, K, rows]` afterwards; this header does not). openai's own `original/` checkpoint names
/// the pair `X.blocks` / `X.scales` (mxfp4_naming::openai). config.json:
/// `"quantization_config": {"modules_to_not_convert": [...], "quant_method": "mxfp4"}`.
///
/// These bytes are exactly lowbit's mxfp4 `scaled_tensor` of shape `[E, rows, K]` (E * rows
/// matrix rows, tile 1 x 32, codes packed row-major low nibble first, scales row-major): reading
/// and writing copy them unchanged. The whole expert stack is one scaled_tensor; mxfp4_expert
/// copies one expert out as a 2-D `[rows, K]` tensor.
///
/// @par Semantics (every function below)
/// - NaN scale (0xFF): an error when reading unless `allow_nan_scale`; then, as OCP MX v1.0
///   defines it and the engine decodes it, all 32 elements of the block are NaN (transformers'
///   and openai's `torch.ldexp` give ±Inf, or NaN for a zero code, instead).
/// - Zero blocks: any code times any scale; +0 and -0 codes decode to ±0.
/// - Partial blocks: impossible in this layout (K = 32 * groups); the writer refuses a K that is
///   not a multiple of 32 (pad the weight first).
/// - Overflow: dequantizing gives ±Inf where `FP4[code] * 2^(s - 127)` exceeds FLT_MAX (s = 254
///   with |FP4[code]| >= 2), in float32 and bf16 alike (every other product is exact in both);
///   f16 overflows from 2^16 and rounds below 2^-14. gpt-oss's own dequantizers overflow the same
///   way. Quantizing never produces such a block from finite input.
/// - NaN/Inf input to the writer: an error unless `engine.allow_nonfinite` (then the block's scale
///   is 0xFF, which the reader refuses by default).
/// Errors name the file, the tensor and what is wrong; outputs are unchanged on error.
#pragma once

#include "../scaled_tensor.hpp"
#include "checkpoint.hpp"
#include "transformers.hpp"

#include <cstring>
#include <string>
#include <vector>

LOWBIT_NAMESPACE_BEGIN
namespace io {

/// The fields of transformers' Mxfp4Config that describe a checkpoint.
struct mxfp4_config {
  /// Modules left dense; `has_modules_to_not_convert == false` writes null.
  std::vector<std::string> modules_to_not_convert;
  bool has_modules_to_not_convert = false;
};

/// The `quantization_config` object of `c` (keys sorted; the two keys Mxfp4Config.to_dict writes).
inline nlohmann::ordered_json to_json(const mxfp4_config& c) {
  nlohmann::ordered_json j;
  if (c.has_modules_to_not_convert) j["modules_to_not_convert"] = c.modules_to_not_convert;
  else j["modules_to_not_convert"] = nullptr;
  j["quant_method"] = "mxfp4";
  return j;
}

/// Reads a `quantization_config` object of quant_method "mxfp4" (`where` names it in messages).
/// `dequantize` (a loading option of Mxfp4Config) is accepted if boolean and otherwise ignored.
/// Errors: not an object, another quant_method, modules_to_not_convert not a list of strings,
/// dequantize not a boolean.
inline status from_json(const nlohmann::json& j, const std::string& where, mxfp4_config& out) {
  const char* w = where.c_str();
  if (!j.is_object()) return status::error(errc::invalid_argument, "%s: quantization_config is not an object", w);
  const auto qm = j.find("quant_method");
  if (qm == j.end() || *qm != "mxfp4") return status::error(errc::unsupported, "%s: quant_method is not \"mxfp4\"", w);
  mxfp4_config c;
  if (const auto d = j.find("dequantize"); d != j.end() && !d->is_null() && !d->is_boolean())
    return status::error(errc::invalid_argument, "%s: dequantize is %.40s, not a boolean", w, detail::json_brief(*d).c_str());
  if (const auto m = j.find("modules_to_not_convert"); m != j.end() && !m->is_null()) {
    if (!m->is_array()) return status::error(errc::invalid_argument, "%s: modules_to_not_convert is not a list", w);
    for (const auto& s : *m) {
      if (!s.is_string()) return status::error(errc::invalid_argument, "%s: modules_to_not_convert holds a non-string", w);
      c.modules_to_not_convert.push_back(s.get<std::string>());
    }
    c.has_modules_to_not_convert = true;
  }
  out = std::move(c);
  return {};
}

/// Reads `path` (a config.json) and its mxfp4 `quantization_config`. Errors: unreadable file,
/// invalid UTF-8 or JSON, no quantization_config, or what from_json rejects.
inline status read_mxfp4_config(const std::string& path, mxfp4_config& out) {
  nlohmann::json q;
  LOWBIT_TRY(detail::read_config_quantization(path, q));
  return from_json(q, path, out);
}

/// Writes `path` atomically: the JSON object `base_text` ("" for an empty object) with
/// `quantization_config` set to `c`, keys sorted, indented by 2 (as write_config does).
inline status write_mxfp4_config(const std::string& path, const std::string& base_text, const mxfp4_config& c) {
  return detail::write_config_with(path, base_text, to_json(c));
}

/// How the two tensors of a weight are named.
enum class mxfp4_naming : std::uint8_t {
  transformers,  ///< `X_blocks`, `X_scales` (the Hugging Face checkpoints, e.g. gpt-oss-20b)
  openai,        ///< `X.blocks`, `X.scales` (openai/gpt-oss `original/` checkpoints)
};

/// The blocks tensor's name of weight `base` (e.g. "model.layers.0.mlp.experts.gate_up_proj").
inline std::string mxfp4_blocks_name(const std::string& base, mxfp4_naming n = mxfp4_naming::transformers) {
  return base + (n == mxfp4_naming::transformers ? "_blocks" : ".blocks");
}
/// The scales tensor's name of weight `base`.
inline std::string mxfp4_scales_name(const std::string& base, mxfp4_naming n = mxfp4_naming::transformers) {
  return base + (n == mxfp4_naming::transformers ? "_scales" : ".scales");
}

/// If `tensor` is named like the blocks tensor of a weight (ends in `_blocks` / `.blocks`), sets
/// `base` to the weight's name and returns true (says nothing about the tensors themselves).
inline bool mxfp4_base_of(const std::string& tensor, std::string& base, mxfp4_naming n = mxfp4_naming::transformers) {
  const std::string suffix = n == mxfp4_naming::transformers ? "_blocks" : ".blocks";
  if (tensor.size() <= suffix.size() || tensor.compare(tensor.size() - suffix.size(), suffix.size(), suffix) != 0) return false;
  base = tensor.substr(0, tensor.size() - suffix.size());
  return true;
}

/// True if `c` holds a U8 `base` blocks tensor and a U8 scales tensor beside it (the pair this
/// layout stores; says nothing about their shapes).
inline bool is_mxfp4_pair(const checkpoint& c, const std::string& base, mxfp4_naming n = mxfp4_naming::transformers) {
  const auto b = c.find(mxfp4_blocks_name(base, n));
  const auto s = c.find(mxfp4_scales_name(base, n));
  return b.tensor != nullptr && b.tensor->dtype == st_dtype::U8 && s.tensor != nullptr && s.tensor->dtype == st_dtype::U8;
}

/// Options of load_mxfp4 and dequantize_mxfp4.
struct mxfp4_load_options {
  mxfp4_naming naming = mxfp4_naming::transformers;
  /// The dtype the weight had before quantization (kept in the scaled_tensor; gpt-oss: bf16).
  dtype source = dtype::bf16;
  /// If not empty, the dense shape the weight must have (e.g. {num_local_experts,
  /// 2 * intermediate_size, hidden_size} from config.json); a mismatch is an error.
  std::vector<std::int64_t> expect_shape;
  /// Accept e8m0 NaN scales (0xFF); their blocks then decode to NaN.
  bool allow_nan_scale = false;
};

namespace detail {
inline std::string mx_shape_text(const std::vector<std::int64_t>& s) {
  std::string r;
  for (auto d : s) r += (r.empty() ? "" : ", ") + std::to_string(d);
  return "[" + r + "]";
}
}  // namespace detail

/// Where a checked pair is, and the dense weight's shape `[E, rows, K]` or `[rows, K]`.
struct mxfp4_layout {
  checkpoint::location blocks, scales;
  std::vector<std::int64_t> shape;
  std::int64_t groups = 0;  ///< K / 32
};

/// Checks the headers of weight `base`'s blocks and scales in `c` (no data read): both exist and
/// are U8; blocks are `[E, rows, G, 16]` or `[rows, G, 16]`; scales are exactly blocks' shape
/// without its last dimension (so E, rows and G match); the dense shape (K = 32 G) equals
/// `opt.expect_shape` if given; K is at most 2^58. Errors name the file, the tensor and the mismatch.
inline status check_mxfp4_layout(const checkpoint& c, const std::string& base, mxfp4_layout& out, const mxfp4_load_options& opt = {}) {
  const std::string bname = mxfp4_blocks_name(base, opt.naming), sname = mxfp4_scales_name(base, opt.naming);
  const auto bl = c.find(bname);
  if (bl.tensor == nullptr) return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" (the MXFP4 blocks of \"%.100s\") is missing", c.path().c_str(), bname.c_str(), base.c_str());
  const auto sl = c.find(sname);
  if (sl.tensor == nullptr) return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" (the MXFP4 scales of \"%.100s\") is missing", c.path().c_str(), sname.c_str(), base.c_str());
  const char* bf = bl.file->path().c_str();
  const char* sf = sl.file->path().c_str();
  if (bl.tensor->dtype != st_dtype::U8)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has dtype %s; MXFP4 blocks are U8 (two e2m1 codes a byte)", bf, bname.c_str(), info(bl.tensor->dtype).name);
  const auto& bs = bl.tensor->shape;
  if (bs.size() != 3 && bs.size() != 4)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has shape %s; MXFP4 blocks are [E, rows, K/32, 16] or [rows, K/32, 16]", bf, bname.c_str(),
                         detail::mx_shape_text(bs).c_str());
  if (bs.back() != 16)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has shape %s; its last dimension must be 16 (bytes of a 32-element block)", bf, bname.c_str(),
                         detail::mx_shape_text(bs).c_str());
  if (sl.tensor->dtype != st_dtype::U8)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has dtype %s; MXFP4 scales are U8 (e8m0)", sf, sname.c_str(), info(sl.tensor->dtype).name);
  const std::vector<std::int64_t> want(bs.begin(), bs.end() - 1);
  if (sl.tensor->shape != want)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has shape %s; blocks %s need scales %s (one per 32 elements)", sf, sname.c_str(),
                         detail::mx_shape_text(sl.tensor->shape).c_str(), detail::mx_shape_text(bs).c_str(), detail::mx_shape_text(want).c_str());
  // With a zero dimension the file holds no bytes whatever G is (the reader allows dimensions up
  // to 2^62): bound K = 32 G by the engine's 2^58 elements before multiplying.
  if (want.back() > (std::int64_t{1} << 53))
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has shape %s; %lld groups of 32 is more than the 2^58 elements a row may have", bf,
                         bname.c_str(), detail::mx_shape_text(bs).c_str(), static_cast<long long>(want.back()));
  std::vector<std::int64_t> shape(want);
  shape.back() = want.back() * 32;
  if (!opt.expect_shape.empty() && opt.expect_shape != shape)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" holds a weight of shape %s; expected %s", bf, bname.c_str(),
                         detail::mx_shape_text(shape).c_str(), detail::mx_shape_text(opt.expect_shape).c_str());
  out = {bl, sl, std::move(shape), want.back()};
  return {};
}

/// The parameters of gpt-oss's MXFP4: lowbit's mxfp4, tile 1 x 32, `rule`.
inline scaled_params mxfp4_params(quant::mx_scale_rule rule = quant::mx_scale_rule::rceil) {
  scaled_params p;
  p.fmt = scaled_format::mxfp4;
  p.gran = granularity::per_tile(1, 32);
  p.mx_rule = rule;
  return p;
}

/// Reads weight `base` (its blocks and scales) from `c` into `out`: an mxfp4 scaled_tensor of
/// the dense shape `[E, rows, K]` (or `[rows, K]`), tile 1 x 32, whose codes and scales are the
/// file's bytes unchanged (the checkpoint may be closed afterwards). Errors (naming file and
/// tensor; `out` unchanged): what check_mxfp4_layout rejects, and a NaN scale 0xFF (its
/// [e, row, group] index named) unless opt.allow_nan_scale. Zero blocks, ±0 codes and scales
/// whose blocks overflow float32 are read as they are (see the file comment).
inline status load_mxfp4(const checkpoint& c, const std::string& base, scaled_tensor& out, const mxfp4_load_options& opt = {}) {
  mxfp4_layout l;
  LOWBIT_TRY(check_mxfp4_layout(c, base, l, opt));
  const std::uint8_t* sb = l.scales.file->data(*l.scales.tensor);
  const std::int64_t nscales = l.scales.tensor->numel();
  if (!opt.allow_nan_scale)
    for (std::int64_t i = 0; i < nscales; ++i)
      if (sb[i] == 0xFF) {
        const auto& ss = l.scales.tensor->shape;
        std::string at;
        std::int64_t rest = i;
        for (std::size_t d = ss.size(); d-- > 0;) {
          at = std::to_string(ss[d] > 0 ? rest % ss[d] : 0) + (at.empty() ? "" : ", ") + at;
          rest = ss[d] > 0 ? rest / ss[d] : 0;
        }
        return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": scale [%s] is 0xFF, the e8m0 NaN (allow_nan_scale accepts it)",
                             l.scales.file->path().c_str(), mxfp4_scales_name(base, opt.naming).c_str(), at.c_str());
      }
  scaled_tensor t;
  LOWBIT_TRY(scaled_tensor::allocate_for_overwrite(l.shape, opt.source, mxfp4_params(), t));
  // t's codes are (E * rows * K) / 2 bytes, its scales E * rows * G: the tensors' sizes, which
  // the safetensors reader checked against their shapes.
  if (t.code_bytes() != static_cast<std::int64_t>(l.blocks.tensor->nbytes()) || t.grid().tiles() != nscales)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": %lld code bytes and %lld scales do not fit an mxfp4 tensor of shape %s", l.blocks.file->path().c_str(),
                         mxfp4_blocks_name(base, opt.naming).c_str(), static_cast<long long>(l.blocks.tensor->nbytes()), static_cast<long long>(nscales),
                         detail::mx_shape_text(l.shape).c_str());
  if (t.code_bytes() > 0) std::memcpy(t.codes(), l.blocks.file->data(*l.blocks.tensor), static_cast<std::size_t>(t.code_bytes()));
  if (nscales > 0) std::memcpy(t.scale_bytes(), sb, static_cast<std::size_t>(nscales));
  out = std::move(t);
  return {};
}

/// The dense values of weight `base` of `c`: `out` gets `numel * size(dt)` bytes, row-major in
/// the file's orientation `[E, rows, K]` (transformers' dense `gate_up_proj` / `down_proj`
/// parameters are this transposed to `[E, K, rows]`), `shape` the shape. `dt` is f32, bf16 or
/// f16; each element is `FP4[code] * 2^(s - 127)` rounded once to `dt` (exact in f32 and bf16
/// unless it overflows: ±Inf; f16 overflows sooner and rounds small values). Zero blocks give ±0.
/// NaN scales: as load_mxfp4 (then NaN). Errors: load_mxfp4's and dequantize's; outputs
/// unchanged on error.
inline status dequantize_mxfp4(const checkpoint& c, const std::string& base, dtype dt, std::vector<std::uint8_t>& out, std::vector<std::int64_t>& shape,
                               const mxfp4_load_options& opt = {}) {
  if (dt != dtype::f32 && dt != dtype::bf16 && dt != dtype::f16)
    return status::error(errc::invalid_argument, "dequantize_mxfp4: \"%.100s\": output dtype must be f32, bf16 or f16", base.c_str());
  scaled_tensor q;
  LOWBIT_TRY(load_mxfp4(c, base, q, opt));
  std::vector<std::uint8_t> v(static_cast<std::size_t>(q.numel()) * (dt == dtype::f32 ? 4 : 2));
  LOWBIT_TRY(dequantize(q, v.data(), dt));
  out = std::move(v);
  shape = q.shape();
  return {};
}

/// A zero-copy view of weight `base`'s blocks and scales in `c`'s mapping: mxfp4, tile 1 x 32,
/// E * rows matrix rows of K (the file's orientation), the rule `rule` recorded (it does not
/// change decoding). Valid while `c` is open; for reading only (the mapping is read-only). The
/// header checks of check_mxfp4_layout apply; the scales are not scanned (a 0xFF scale decodes to
/// NaN; load_mxfp4 refuses it by default). `out` unchanged on error.
inline status view_mxfp4(const checkpoint& c, const std::string& base, host::scaled_view& out, const mxfp4_load_options& opt = {},
                         quant::mx_scale_rule rule = quant::mx_scale_rule::rceil) {
  mxfp4_layout l;
  LOWBIT_TRY(check_mxfp4_layout(c, base, l, opt));
  host::scaled_view v;
  v.fmt = scaled_format::mxfp4;
  v.cols = l.shape.back();
  v.rows = 1;
  for (std::size_t i = 0; i + 1 < l.shape.size(); ++i) v.rows *= l.shape[i];
  v.tile = {1, 32};
  v.mx_rule = rule;
  v.codes = const_cast<std::uint8_t*>(l.blocks.file->data(*l.blocks.tensor));
  v.scales = const_cast<std::uint8_t*>(l.scales.file->data(*l.scales.tensor));
  out = v;
  return {};
}

/// Copies expert `e` of the 3-D mxfp4 tensor `q` (`[E, rows, K]`, tile 1 x 32) into `out` as a
/// 2-D `[rows, K]` tensor (same codes and scales). Errors: `q` not such a tensor, `e` outside
/// [0, E). `out` unchanged on error.
inline status mxfp4_expert(const scaled_tensor& q, std::int64_t e, scaled_tensor& out) {
  if (q.fmt() != scaled_format::mxfp4 || q.tile().rows != 1 || q.tile().cols != 32 || q.shape().size() != 3 || q.shape()[2] % 32 != 0)
    return status::error(errc::invalid_argument, "mxfp4_expert: tensor is %s %s, not mxfp4 [E, rows, K] with 1 x 32 tiles and K a multiple of 32",
                         info(q.fmt()).name, detail::mx_shape_text(q.shape()).c_str());
  if (e < 0 || e >= q.shape()[0])
    return status::error(errc::invalid_argument, "mxfp4_expert: expert %lld is outside [0, %lld)", static_cast<long long>(e), static_cast<long long>(q.shape()[0]));
  const std::int64_t rows = q.shape()[1], k = q.shape()[2];
  scaled_params p = mxfp4_params(q.mx_rule());
  scaled_tensor t;
  LOWBIT_TRY(scaled_tensor::allocate_for_overwrite({rows, k}, q.source_dtype(), p, t));
  if (t.code_bytes() > 0) std::memcpy(t.codes(), q.codes() + e * t.code_bytes(), static_cast<std::size_t>(t.code_bytes()));
  if (t.grid().tiles() > 0) std::memcpy(t.scale_bytes(), q.scale_bytes() + e * t.grid().tiles(), static_cast<std::size_t>(t.grid().tiles()));
  out = std::move(t);
  return {};
}

/// Options of quantize_mxfp4.
struct mxfp4_quantize_options {
  /// The e8m0 scale rule. rceil (the default) is triton_kernels' downcast_to_mxfp with its default
  /// DequantScaleRoundingMode.ROUND_UP, which gpt-oss (gpt_oss/triton/moe.py quantize_mx4) and
  /// transformers (integrations/mxfp4.py quantize_to_mxfp4) quantize with: equal for every block
  /// with amax >= 6 * 2^-126 (checked over every float32 amax); below it triton stores scale 1 for
  /// any nonzero block where rceil may store 0. floor is OCP MX v1.0's rule.
  quant::mx_scale_rule rule = quant::mx_scale_rule::rceil;
  host::options engine{};
};

/// The engine's mxfp4 quantization (tile 1 x 32 along the last dimension) of the row-major
/// `shape` tensor `data` (dtype `dt`), `[rows, K]` or `[E, rows, K]`. gpt-oss and transformers
/// cast to bf16 before quantizing: pass bf16 data to reproduce their bytes. Element codes are
/// round-to-nearest-even of `x * 2^(127 - s)` saturated to ±6; a zero block stores scale 0 and +0
/// codes (-0 for negative zeros). Errors: not 2-D or 3-D, K not a multiple of 32 (the layout has
/// no partial blocks), NaN/Inf input unless opt.engine.allow_nonfinite (then scale 0xFF). `out`
/// unchanged on error.
inline status quantize_mxfp4(const void* data, dtype dt, const std::vector<std::int64_t>& shape, scaled_tensor& out, const mxfp4_quantize_options& opt = {}) {
  if (shape.size() != 2 && shape.size() != 3)
    return status::error(errc::invalid_argument, "quantize_mxfp4: shape %s is not [rows, K] or [E, rows, K]", detail::mx_shape_text(shape).c_str());
  if (shape.back() % 32 != 0)
    return status::error(errc::invalid_argument, "quantize_mxfp4: K = %lld is not a multiple of 32; gpt-oss's layout has no partial blocks (pad the weight)",
                         static_cast<long long>(shape.back()));
  scaled_params p = mxfp4_params(opt.rule);
  p.options = opt.engine;
  return quantize(data, dt, shape, p, out);
}

/// Checks `q` can be written in this layout: mxfp4, tile 1 x 32, 2-D or 3-D, K a multiple of 32.
inline status check_mxfp4_writable(const std::string& base, const scaled_tensor& q) {
  if (q.fmt() != scaled_format::mxfp4 || q.tile().rows != 1 || q.tile().cols != 32)
    return status::error(errc::invalid_argument, "tensor \"%.100s\": format %s with %lld x %lld tiles is not mxfp4 with 1 x 32 tiles", base.c_str(), info(q.fmt()).name,
                         static_cast<long long>(q.tile().rows), static_cast<long long>(q.tile().cols));
  if ((q.shape().size() != 2 && q.shape().size() != 3) || q.shape().back() % 32 != 0)
    return status::error(errc::invalid_argument, "tensor \"%.100s\": shape %s is not [rows, K] or [E, rows, K] with K a multiple of 32", base.c_str(),
                         detail::mx_shape_text(q.shape()).c_str());
  return {};
}

/// Appends the entries of weight `base` (quantized as `q`) to `out`: blocks U8
/// `[.., rows, K / 32, 16]`, then scales U8 `[.., rows, K / 32]`. Write them with write_mxfp4.
/// Errors: check_mxfp4_writable's (`out` unchanged).
inline status mxfp4_entries(const std::string& base, const scaled_tensor& q, std::vector<tensor_entry>& out, mxfp4_naming n = mxfp4_naming::transformers) {
  LOWBIT_TRY(check_mxfp4_writable(base, q));
  std::vector<std::int64_t> scales(q.shape());
  scales.back() /= 32;
  std::vector<std::int64_t> blocks(scales);
  blocks.push_back(16);
  out.push_back({mxfp4_blocks_name(base, n), st_dtype::U8, blocks});
  out.push_back({mxfp4_scales_name(base, n), st_dtype::U8, scales});
  return {};
}

/// Writes `q`'s codes then its scales (the bytes of the two entries mxfp4_entries made).
inline status write_mxfp4(safetensors_writer& w, const scaled_tensor& q) {
  LOWBIT_TRY(check_mxfp4_writable("(written)", q));
  LOWBIT_TRY(w.write(q.codes(), static_cast<std::size_t>(q.code_bytes())));
  return w.write(q.scale_bytes(), static_cast<std::size_t>(q.grid().tiles()));
}

}  // namespace io
LOWBIT_NAMESPACE_END
