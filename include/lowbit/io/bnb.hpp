// SPDX-License-Identifier: Apache-2.0
/// @file bnb.hpp
/// @brief bitsandbytes' checkpoint layouts: a 4-bit `Linear4bit` weight (NF4 / FP4, optionally
///        double-quantized) and an LLM.int8 `Linear8bitLt` weight, read into a `quant_tensor` and
///        written from one, bit for bit.
///
/// @par 4-bit (reference §7; `W` is the weight's name, e.g. `model.layers.0.mlp.up_proj.weight`)
/// | tensor | dtype | shape |
/// |---|---|---|
/// | `W` | U8 | `[(numel + 1) / 2, 1]`, codes packed high nibble first |
/// | `W.absmax` | F32 `[nblocks]`, or U8 `[nblocks]` when double-quantized | |
/// | `W.quant_map` | F32 | `[16]` |
/// | `W.nested_absmax` (double quant) | F32 | `[ceil(nblocks / 256)]` |
/// | `W.nested_quant_map` (double quant) | F32 | `[256]` |
/// | `W.quant_state.bitsandbytes__nf4` or `__fp4` | U8 | `[bytes]`: `json.dumps` of {quant_type, blocksize, dtype, shape[, nested_blocksize, nested_dtype, nested_offset]} |
///
/// @par Two variants saved after a CPU forward pass (bitsandbytes 0.50.x, docs/bnb-cpu-packed.md)
/// bitsandbytes 0.50.0-0.50.2 repack a 4-bit weight for their AVX-512-BF16 CPU kernel on the first
/// forward pass in eval mode (`functional.py::_convert_weight_packed_for_cpu`) and undo it only in
/// part when the module is saved (`_convert_weight_packed_for_cpu_inverse`, called by
/// `Linear4bit._save_to_state_dict`). The codes come back in the layout above; the scales do not:
/// - without double quantization `W.absmax` stays **BF16 `[K / blocksize, N]`** for a weight of
///   shape `[N, K]`: element `[j, n]` is bf16(absmax of block `n * (K / blocksize) + j`). lowbit
///   reads it in that order, so the weight dequantizes to the values the module computed with
///   (bitsandbytes' own reload reads the tensor in memory order and misplaces the scales);
/// - with double quantization the bf16 absmax is converted to the weight's dtype T and quantized
///   again in T, and the quant_state says **`"nested_dtype": "float16"` or `"bfloat16"`**. As
///   bitsandbytes' `dequantize_4bit` does, each block's absmax is then
///   `f32(T(f32(T(f32(nested_quant_map[q] * nested_absmax[i / 256])) + nested_offset)))`.
/// lowbit resolves the block scales of both while reading (float32, as every engine uses them):
/// the tensor is an ordinary, not double-quantized, weight afterwards, and write_bnb writes it in
/// the layout above.
///
/// The tables read from a file replace lowbit's built-in ones for dequantization, so a file's
/// values decode exactly as bitsandbytes decodes them. Written tables are bitsandbytes'
/// `QuantState.code` values: for FP4 that is `get_4bit_type("fp4")`, whose code 8 is +0.0 (its
/// CUDA decoder gives -0.0 there; lowbit's built-in table follows the kernel).
///
/// @par LLM.int8 (reference §5.5)
/// `P.weight` I8 `[out, in]`, `P.SCB` F32 `[out]` (the row absmax; lowbit format int8_absmax with
/// one block per row), `P.weight_format` U8 `[]` = 0 ("row"; optional when reading).
///
/// Errors name the file, the tensor and the problem; nothing throws.
#pragma once

#include "../quant_tensor.hpp"
#include "checkpoint.hpp"

#include <cmath>
#include <unordered_map>
#include <unordered_set>

LOWBIT_NAMESPACE_BEGIN
namespace io {

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#  error "lowbit/io reads and writes little-endian data in place and needs a little-endian host"
#endif

/// Python's `repr(float(x))`: the shortest decimal that reads back as `x`, in fixed notation for
/// decimal exponents -4..15 (always with a fractional part, e.g. "6.0"), else scientific with a
/// two-digit exponent ("1e-05", "1.5e+16"); "NaN", "Infinity", "-Infinity". This is how `json.dumps`
/// writes a float, so lowbit's quant_state JSON equals bitsandbytes' byte for byte.
inline std::string python_float_repr(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x < 0 ? "-Infinity" : "Infinity";
  char buf[40];
  int prec = 1;
  for (; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  // buf = [-]d[.ddd]e[+-]XX
  std::string s(buf);
  std::string sign;
  if (s[0] == '-') sign = "-", s.erase(0, 1);
  const auto epos = s.find('e');
  const int exp = std::atoi(s.c_str() + epos + 1);
  std::string digits;
  for (std::size_t i = 0; i < epos; ++i)
    if (s[i] != '.') digits.push_back(s[i]);
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  if (exp >= -5 + 1 && exp < 16) {  // Python's repr: fixed when -4 <= exp < 16
    std::string out;
    if (exp < 0) {
      out = "0." + std::string(static_cast<std::size_t>(-exp - 1), '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exp + 1) {
      out = digits + std::string(static_cast<std::size_t>(exp + 1) - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<std::size_t>(exp + 1)) + "." + digits.substr(static_cast<std::size_t>(exp + 1));
    }
    return sign + out;
  }
  std::string mant = digits.substr(0, 1);
  if (digits.size() > 1) mant += "." + digits.substr(1);
  char e[16];
  std::snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  return sign + mant + e;
}

/// The longest text `python_float_repr` returns for a finite double: a sign, 17 significant
/// digits (always enough to read back), the point and a three-digit exponent, as in
/// "-2.2250738585072014e-308".
inline constexpr std::size_t python_float_repr_max = 24;

/// bitsandbytes' name of a 4-bit format ("nf4", "fp4"), or null for other formats.
constexpr const char* bnb_quant_type(format f) noexcept {
  return f == format::nf4 ? "nf4" : (f == format::bnb_fp4 ? "fp4" : nullptr);
}

/// What fixes the bitsandbytes layout of a quantized weight (its tensors' names, dtypes and
/// shapes and the quant_state JSON). All of it but `nested_offset` is known before the weight is
/// quantized; for a double-quantized 4-bit weight that is the mean of its blocks' absmax
/// (quant::offset_chunk order), and its decimal text fixes the quant_state tensor's length (see
/// bnb_entries_largest).
struct bnb_layout {
  format fmt = format::nf4;
  dtype source = dtype::f16;
  std::vector<std::int64_t> shape;
  std::int64_t block_size = 64;
  bool double_quant = false;
  float nested_offset = 0.0f;
  // How a file read by bnb_4bit_layout stores the block scales when a CPU forward pass left them in
  // one of the two variants of the file comment; the weight then loads with float32 block scales
  // and no double quantization (double_quant false):
  bool cpu_packed_absmax = false;   ///< `W.absmax` BF16 [K / blocksize, N]
  dtype nested_dtype = dtype::f32;  ///< float16 / bfloat16: 16-bit double quantization, with nested_offset

  std::int64_t numel() const noexcept {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

/// The layout of the host tensor `q`.
inline bnb_layout bnb_layout_of(const quant_tensor& q) {
  return {q.fmt(), q.source_dtype(), q.shape(), q.block_size(), q.double_quantized(), q.nested_offset()};
}

/// The packed quant_state JSON bitsandbytes writes for a weight of layout `l` (nf4 / bnb_fp4),
/// byte for byte.
inline std::string bnb_quant_state_json(const bnb_layout& l) {
  std::string s = "{\"quant_type\": \"";
  s += bnb_quant_type(l.fmt) ? bnb_quant_type(l.fmt) : "?";
  s += "\", \"blocksize\": " + std::to_string(l.block_size);
  s += ", \"dtype\": \"";
  s += dtype_name(l.source);
  s += "\", \"shape\": [";
  for (std::size_t i = 0; i < l.shape.size(); ++i) s += (i ? ", " : "") + std::to_string(l.shape[i]);
  s += "]";
  if (l.double_quant) {
    s += ", \"nested_blocksize\": " + std::to_string(quant::nested_block_size);
    s += ", \"nested_dtype\": \"float32\", \"nested_offset\": " + python_float_repr(static_cast<double>(l.nested_offset));
  }
  return s + "}";
}

/// The packed quant_state JSON bitsandbytes writes for `q` (nf4 / bnb_fp4), byte for byte.
inline std::string bnb_quant_state_json(const quant_tensor& q) { return bnb_quant_state_json(bnb_layout_of(q)); }

namespace detail {

/// The 16 (4-bit) or 256 (nested) float32 values written as a quant_map.
inline void bnb_table(const quant_tensor& q, bool nested, std::vector<float>& out) {
  if (nested) {
    out.resize(256);
    for (int c = 0; c < 256; ++c)
      out[static_cast<std::size_t>(c)] = q.nested_code_table() ? q.nested_code_table()[c] : codecs::bnb_dynamic8::decode(static_cast<std::uint8_t>(c));
    return;
  }
  out.resize(16);
  for (int c = 0; c < 16; ++c) {
    float v = q.code_table() ? q.code_table()[c]
                             : (q.fmt() == format::nf4 ? codecs::nf4::decode(static_cast<std::uint8_t>(c)) : codecs::bnb_fp4::decode(static_cast<std::uint8_t>(c)));
    if (!q.code_table() && q.fmt() == format::bnb_fp4 && c == 8) v = 0.0f;  // get_4bit_type("fp4")[8] is +0.0
    out[static_cast<std::size_t>(c)] = v;
  }
}

/// Finds tensor `name` and checks its dtype and shape; `what` describes the expectation.
inline status expect_tensor(const checkpoint& c, const std::string& name, st_dtype dt, const std::vector<std::int64_t>& shape,
                            checkpoint::location& loc) {
  loc = c.find(name);
  if (loc.tensor == nullptr) return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" is missing", c.path().c_str(), name.c_str());
  const char* file = loc.file->path().c_str();
  if (loc.tensor->dtype != dt)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has dtype %s, bitsandbytes' layout has %s", file, name.c_str(),
                         info(loc.tensor->dtype).name, info(dt).name);
  if (loc.tensor->shape != shape) {
    std::string want, got;
    for (auto d : shape) want += (want.empty() ? "" : ",") + std::to_string(d);
    for (auto d : loc.tensor->shape) got += (got.empty() ? "" : ",") + std::to_string(d);
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has shape [%s], expected [%s]", file, name.c_str(), got.c_str(), want.c_str());
  }
  return {};
}

// Copies tensor `l`'s bytes to `dst` (null, as a tensor of no elements has, when there are none).
inline void copy_out(const checkpoint::location& l, void* dst) {
  if (l.tensor->nbytes() > 0) std::memcpy(dst, l.file->data(*l.tensor), l.tensor->nbytes());
}

// "P." of an LLM.int8 weight "P.weight" (whose scales are "P.SCB"); `weight + "."` for a name
// that does not end in "weight".
inline std::string int8_prefix(const std::string& weight) {
  return weight.size() >= 6 && weight.compare(weight.size() - 6, 6, "weight") == 0 ? weight.substr(0, weight.size() - 6) : weight + ".";
}

/// The block scales of a weight of `rows` x (`blocks_per_row` blocks) whose absmax bitsandbytes'
/// CPU packing left as bf16 `[blocks_per_row, rows]` (little-endian bytes at `bf16_bytes`, any
/// alignment): `scales[r * blocks_per_row + j] = f32(absmax[j][r])`, exact.
inline void bnb_cpu_packed_scales(const std::uint8_t* bf16_bytes, std::int64_t rows, std::int64_t blocks_per_row, float* scales) {
  for (std::int64_t j = 0; j < blocks_per_row; ++j)
    for (std::int64_t r = 0; r < rows; ++r) {
      std::uint16_t b;
      std::memcpy(&b, bf16_bytes + 2 * (j * rows + r), 2);
      scales[r * blocks_per_row + j] = bf16_bits_to_float(b);
    }
}

/// The block scales of a double-quantized weight whose nested dtype `t` is float16 or bfloat16, as
/// bitsandbytes' `dequantize_4bit` computes them: `dequantize_blockwise` in `t` (float32 product,
/// rounded to `t`), then `absmax += offset` in `t` (float32 sum, rounded to `t`), then float32.
/// `absmax2_bytes` holds the float32 nested absmax (little-endian, any alignment).
inline void bnb_nested16_scales(const std::uint8_t* codes, std::int64_t nblocks, const std::uint8_t* absmax2_bytes, const float* table, float offset,
                                dtype t, float* scales) {
  const auto round_to = [t](float x) { return t == dtype::f16 ? to_float(from_float<f16>(x)) : to_float(from_float<bf16>(x)); };
  for (std::int64_t i = 0; i < nblocks; ++i) {
    float absmax2;
    std::memcpy(&absmax2, absmax2_bytes + 4 * (i / quant::nested_block_size), 4);
    const float v = round_to(table[codes[i]] * absmax2);
    scales[i] = round_to(v + offset);
  }
}

inline void append(std::vector<tensor_entry>& e, std::string name, st_dtype t, std::vector<std::int64_t> shape) {
  e.push_back({std::move(name), t, std::move(shape)});
}

}  // namespace detail

/// The name of `weight`'s packed quant_state tensor in `c`, or "" if it has none.
inline std::string bnb_quant_state_name(const checkpoint& c, const std::string& weight) {
  for (const char* t : {"nf4", "fp4"}) {
    const std::string n = weight + ".quant_state.bitsandbytes__" + t;
    if (c.find(n).tensor != nullptr) return n;
  }
  return "";
}

/// True if `c` holds a tensor whose name starts with `weight + ".quant_state."` (a bitsandbytes
/// 4-bit weight, perhaps of a type lowbit does not know).
inline bool has_bnb_quant_state(const checkpoint& c, const std::string& weight) { return c.has_prefix(weight + ".quant_state."); }

/// Reads the layout of the bitsandbytes 4-bit weight `weight` of `c` (see the file comment) from
/// its quant_state and checks every tensor of it (names, dtypes, shapes) without reading their
/// data: what load_bnb_4bit would load, known in advance. Errors: a missing tensor, a dtype or
/// shape other than the layout's, a quant_state that is not valid JSON or has an unknown
/// quant_type, dtype, key or value. On error `out` is unchanged.
inline status bnb_4bit_layout(const checkpoint& c, const std::string& weight, bnb_layout& out) {
  const std::string qs = bnb_quant_state_name(c, weight);
  if (qs.empty()) {
    const std::string p = weight + ".quant_state.";
    for (const auto& n : c.names())
      if (n.compare(0, p.size(), p) == 0)
        return status::error(errc::unsupported, "%s: unknown quant_type in \"%.100s\" (bitsandbytes 4-bit is bitsandbytes__nf4 or __fp4)",
                             c.find(n).file->path().c_str(), n.c_str());
    return status::error(errc::invalid_argument, "%s: weight \"%.100s\" has no quant_state tensor", c.path().c_str(), weight.c_str());
  }
  const auto qsl = c.find(qs);
  const char* file = qsl.file->path().c_str();
  const char* w = weight.c_str();
  if (qsl.tensor->dtype != st_dtype::U8 || qsl.tensor->shape.size() != 1)
    return status::error(errc::invalid_argument, "%s: \"%.100s\" must be a 1-D U8 tensor of JSON bytes", file, qs.c_str());
  const std::string text(reinterpret_cast<const char*>(qsl.file->data(*qsl.tensor)), qsl.tensor->nbytes());
  nlohmann::json j;
  LOWBIT_TRY(parse_json_text(text, qsl.file->path() + ": " + qs, j));
  if (!j.is_object()) return status::error(errc::invalid_argument, "%s: \"%.100s\": quant_state is not a JSON object", file, qs.c_str());
  for (auto it = j.begin(); it != j.end(); ++it) {
    static const char* const valid[] = {"quant_type", "blocksize", "dtype", "shape", "nested_blocksize", "nested_dtype", "nested_offset"};
    bool ok = false;
    for (const char* v : valid) ok = ok || it.key() == v;
    if (!ok) return status::error(errc::invalid_argument, "%s: \"%.100s\": unknown quant_state key \"%.40s\"", file, qs.c_str(), it.key().c_str());
  }
  const auto qt = j.find("quant_type");
  if (qt == j.end() || !qt->is_string()) return status::error(errc::invalid_argument, "%s: \"%.100s\": quant_type missing", file, qs.c_str());
  format fmt;
  if (*qt == "nf4") fmt = format::nf4;
  else if (*qt == "fp4") fmt = format::bnb_fp4;
  else return status::error(errc::unsupported, "%s: \"%.100s\": unknown quant_type \"%.20s\"", file, qs.c_str(), qt->get<std::string>().c_str());
  if (qs.substr(qs.size() - 3) != qt->get<std::string>())
    return status::error(errc::invalid_argument, "%s: \"%.100s\": quant_type \"%s\" disagrees with the tensor name", file, qs.c_str(), qt->get<std::string>().c_str());
  std::uint64_t block = 0;
  const auto bs = j.find("blocksize");
  if (bs == j.end() || !detail::json_u64(*bs, block) || block < 1 || block > (std::uint64_t{1} << 31))
    return status::error(errc::invalid_argument, "%s: \"%.100s\": blocksize must be a positive integer", file, qs.c_str());
  dtype src;
  const auto dt = j.find("dtype");
  if (dt == j.end() || !dt->is_string()) return status::error(errc::invalid_argument, "%s: \"%.100s\": dtype missing", file, qs.c_str());
  if (*dt == "float32") src = dtype::f32;
  else if (*dt == "float16") src = dtype::f16;
  else if (*dt == "bfloat16") src = dtype::bf16;
  else return status::error(errc::unsupported, "%s: \"%.100s\": dtype \"%.20s\" is not float32, float16 or bfloat16", file, qs.c_str(), dt->get<std::string>().c_str());
  const auto sh = j.find("shape");
  if (sh == j.end() || !sh->is_array()) return status::error(errc::invalid_argument, "%s: \"%.100s\": shape must be a list", file, qs.c_str());
  std::vector<std::int64_t> shape;
  std::uint64_t numel = 1;
  for (const auto& d : *sh) {
    std::uint64_t e = 0;
    if (!detail::json_u64(d, e) || e > (std::uint64_t{1} << 40) || (e != 0 && numel > (std::uint64_t{1} << 40) / e))
      return status::error(errc::invalid_argument, "%s: \"%.100s\": shape entries must be non-negative integers (at most 2^40 elements)", file, qs.c_str());
    numel *= e;
    shape.push_back(static_cast<std::int64_t>(e));
  }
  const bool nested = j.contains("nested_blocksize") || j.contains("nested_offset") || j.contains("nested_dtype");
  float offset = 0.0f;
  dtype nested_dtype = dtype::f32;
  if (nested) {
    std::uint64_t nb = 0;
    const auto nbs = j.find("nested_blocksize");
    if (nbs == j.end() || !detail::json_u64(*nbs, nb) || nb != static_cast<std::uint64_t>(quant::nested_block_size))
      return status::error(errc::unsupported, "%s: \"%.100s\": nested_blocksize must be 256", file, qs.c_str());
    const auto nd = j.find("nested_dtype");
    if (nd == j.end() || !nd->is_string() || !(*nd == "float32" || *nd == "float16" || *nd == "bfloat16"))
      return status::error(errc::unsupported, "%s: \"%.100s\": nested_dtype must be \"float32\" (or \"float16\" / \"bfloat16\", saved after a CPU forward pass)",
                           file, qs.c_str());
    nested_dtype = *nd == "float32" ? dtype::f32 : (*nd == "float16" ? dtype::f16 : dtype::bf16);
    const auto no = j.find("nested_offset");
    if (no == j.end() || !no->is_number()) return status::error(errc::invalid_argument, "%s: \"%.100s\": nested_offset must be a number", file, qs.c_str());
    offset = static_cast<float>(no->get<double>());  // torch.tensor(float(x)): one rounding to float32
  }
  const auto n = static_cast<std::int64_t>(numel);
  const std::int64_t nblocks = quant::block_count(n, static_cast<std::int64_t>(block));
  checkpoint::location lw, la, lm, lna, lnm;
  LOWBIT_TRY(detail::expect_tensor(c, weight, st_dtype::U8, {(n + 1) / 2, 1}, lw));
  // BF16 [K / blocksize, N]: the scales a CPU forward pass left behind (see the file comment).
  const auto absmax_at = c.find(weight + ".absmax");
  const bool cpu_packed = !nested && absmax_at.tensor != nullptr && absmax_at.tensor->dtype == st_dtype::BF16;
  if (cpu_packed) {
    if (shape.size() != 2 || shape[1] % static_cast<std::int64_t>(block) != 0)
      return status::error(errc::invalid_argument,
                           "%s: \"%s.absmax\" is BF16, the layout bitsandbytes' CPU packing leaves, which needs a 2-D weight whose rows are whole blocks; "
                           "the quant_state has shape %s and blocksize %llu",
                           absmax_at.file->path().c_str(), w, sh->dump().c_str(), static_cast<unsigned long long>(block));
    LOWBIT_TRY(detail::expect_tensor(c, weight + ".absmax", st_dtype::BF16, {shape[1] / static_cast<std::int64_t>(block), shape[0]}, la));
  } else {
    LOWBIT_TRY(detail::expect_tensor(c, weight + ".absmax", nested ? st_dtype::U8 : st_dtype::F32, {nblocks}, la));
  }
  LOWBIT_TRY(detail::expect_tensor(c, weight + ".quant_map", st_dtype::F32, {16}, lm));
  if (nested) {
    LOWBIT_TRY(detail::expect_tensor(c, weight + ".nested_absmax", st_dtype::F32, {quant::block_count(nblocks, quant::nested_block_size)}, lna));
    LOWBIT_TRY(detail::expect_tensor(c, weight + ".nested_quant_map", st_dtype::F32, {256}, lnm));
  } else {
    for (const char* extra : {".nested_absmax", ".nested_quant_map"})
      if (c.find(weight + extra).tensor != nullptr)
        return status::error(errc::invalid_argument, "%s: \"%s%s\" present but the quant_state has no nested keys", file, w, extra);
  }
  // Double quantization in 16 bits (saved after a CPU forward pass) is resolved to float32 scales.
  const bool keep_nested = nested && nested_dtype == dtype::f32;
  bnb_layout l{fmt, src, std::move(shape), static_cast<std::int64_t>(block), keep_nested, offset};
  l.cpu_packed_absmax = cpu_packed;
  l.nested_dtype = nested ? nested_dtype : dtype::f32;
  out = std::move(l);
  return {};
}

/// Reads the bitsandbytes 4-bit weight `weight` of `c` into `out` (see the file comment), with
/// the file's quant_map (and nested_quant_map) as decode tables. Errors: those of
/// bnb_4bit_layout. On error `out` is unchanged.
inline status load_bnb_4bit(const checkpoint& c, const std::string& weight, quant_tensor& out) {
  bnb_layout l;
  LOWBIT_TRY(bnb_4bit_layout(c, weight, l));
  // checked by bnb_4bit_layout
  const auto lw = c.find(weight), la = c.find(weight + ".absmax"), lm = c.find(weight + ".quant_map");
  const auto lna = c.find(weight + ".nested_absmax"), lnm = c.find(weight + ".nested_quant_map");
  quant_tensor t;
  LOWBIT_TRY(quant_tensor::allocate(l.fmt, l.shape, l.source, l.block_size, l.double_quant, t));
  detail::copy_out(lw, t.codes());
  float table[256];
  detail::copy_out(lm, table);
  LOWBIT_TRY(t.set_code_table(table, 16));
  if (l.cpu_packed_absmax) {
    detail::bnb_cpu_packed_scales(la.file->data(*la.tensor), l.shape[0], l.shape[1] / l.block_size, t.scales());
  } else if (l.nested_dtype != dtype::f32) {
    detail::copy_out(lnm, table);
    detail::bnb_nested16_scales(la.file->data(*la.tensor), t.blocks(), lna.file->data(*lna.tensor), table, l.nested_offset,
                                l.nested_dtype, t.scales());
  } else if (l.double_quant) {
    detail::copy_out(la, t.nested_codes());
    detail::copy_out(lna, t.nested_scales());
    detail::copy_out(lnm, table);
    LOWBIT_TRY(t.set_code_table(table, 256, true));
    LOWBIT_TRY(t.set_nested_offset(l.nested_offset));
  } else {
    detail::copy_out(la, t.scales());
  }
  out = std::move(t);
  return {};
}

/// The tensors `write_bnb` writes under `weight` ("P.weight") for a weight of layout `l`, in data
/// order: the 4-bit layout for nf4 / bnb_fp4, the LLM.int8 layout (`P.weight`, `P.SCB`,
/// `P.weight_format`) for int8_absmax with one block per row of a 2-D tensor. Error for any other
/// layout.
inline status bnb_entries(const std::string& weight, const bnb_layout& l, std::vector<tensor_entry>& out) {
  std::vector<tensor_entry> e;
  if (l.fmt == format::nf4 || l.fmt == format::bnb_fp4) {
    const std::int64_t nb = quant::block_count(l.numel(), l.block_size);
    detail::append(e, weight, st_dtype::U8, {(l.numel() + 1) / 2, 1});
    detail::append(e, weight + ".absmax", l.double_quant ? st_dtype::U8 : st_dtype::F32, {nb});
    detail::append(e, weight + ".quant_map", st_dtype::F32, {16});
    if (l.double_quant) {
      detail::append(e, weight + ".nested_absmax", st_dtype::F32, {quant::block_count(nb, quant::nested_block_size)});
      detail::append(e, weight + ".nested_quant_map", st_dtype::F32, {256});
    }
    detail::append(e, weight + ".quant_state.bitsandbytes__" + bnb_quant_type(l.fmt), st_dtype::U8,
                   {static_cast<std::int64_t>(bnb_quant_state_json(l).size())});
  } else if (l.fmt == format::int8_absmax && l.shape.size() == 2 && l.block_size == std::max<std::int64_t>(l.shape[1], 1)) {
    const std::string prefix = detail::int8_prefix(weight);
    detail::append(e, weight, st_dtype::I8, l.shape);
    detail::append(e, prefix + "SCB", st_dtype::F32, {l.shape[0]});
    detail::append(e, prefix + "weight_format", st_dtype::U8, {});
  } else {
    return status::error(errc::unsupported, "bnb layout of \"%.100s\": %s%s has no bitsandbytes checkpoint layout (nf4, bnb_fp4, or int8_absmax per row of a 2-D tensor)",
                         weight.c_str(), info(l.fmt).name, l.fmt == format::int8_absmax ? " not per row" : "");
  }
  out = std::move(e);
  return {};
}

/// The tensors of bnb_entries(weight, l, out) for any value of `l.nested_offset`, at their
/// largest: a double-quantized weight's quant_state tensor with room for python_float_repr_max
/// characters of nested offset (every other tensor's shape does not depend on it). For a file
/// whose layout is fixed before the weight is quantized (safetensors_writer::reshape).
inline status bnb_entries_largest(const std::string& weight, const bnb_layout& l, std::vector<tensor_entry>& out) {
  LOWBIT_TRY(bnb_entries(weight, l, out));
  if (l.double_quant && bnb_quant_type(l.fmt) != nullptr) {
    const std::size_t offset_chars = python_float_repr(static_cast<double>(l.nested_offset)).size();
    out.back().shape = {out.back().shape[0] + static_cast<std::int64_t>(python_float_repr_max - offset_chars)};
  }
  return {};
}

/// The tensors `write_bnb` writes for `q` under `weight`, in data order (see above). Error for a
/// tensor without a bitsandbytes layout, and for a tensor in device memory.
inline status bnb_entries(const std::string& weight, const quant_tensor& q, std::vector<tensor_entry>& out) {
  if (q.location() != memory_space::host)
    return status::error(errc::unsupported, "bnb layout of \"%.100s\": the tensor is in device memory; copy it to the host first", weight.c_str());
  return bnb_entries(weight, bnb_layout_of(q), out);
}

/// Writes the data of `q`'s tensors (bnb_entries order) to `w`, whose next tensor must be the
/// first of them. `q` must be in host memory; errors of `w` are returned (the file is then
/// abandoned).
inline status write_bnb(safetensors_writer& w, const quant_tensor& q) {
  if (q.location() != memory_space::host)
    return status::error(errc::unsupported, "write_bnb: the tensor is in device memory; copy it to the host first");
  std::vector<float> table;
  if (q.fmt() == format::nf4 || q.fmt() == format::bnb_fp4) {
    LOWBIT_TRY(w.write(q.codes(), static_cast<std::size_t>(code_bytes(q.fmt(), q.numel()))));
    const auto nb = static_cast<std::size_t>(q.blocks());
    if (q.double_quantized()) LOWBIT_TRY(w.write(q.nested_codes(), nb));
    else LOWBIT_TRY(w.write(q.scales(), nb * 4));
    detail::bnb_table(q, false, table);
    LOWBIT_TRY(w.write(table.data(), 64));
    if (q.double_quantized()) {
      LOWBIT_TRY(w.write(q.nested_scales(), static_cast<std::size_t>(quant::block_count(q.blocks(), quant::nested_block_size)) * 4));
      detail::bnb_table(q, true, table);
      LOWBIT_TRY(w.write(table.data(), 256 * 4));
    }
    const std::string js = bnb_quant_state_json(q);
    return w.write(js.data(), js.size());
  }
  std::vector<tensor_entry> e;
  LOWBIT_TRY(bnb_entries("weight", q, e));
  LOWBIT_TRY(w.write(q.codes(), static_cast<std::size_t>(q.numel())));
  LOWBIT_TRY(w.write(q.scales(), static_cast<std::size_t>(q.shape()[0]) * 4));
  const std::uint8_t row_format = 0;
  return w.write(&row_format, 1);
}

/// Checks the LLM.int8 weight `weight` ("P.weight", I8 [out, in]) with `P.SCB` (F32 [out]) and
/// gives its layout: int8_absmax with one block per row. `P.weight_format`, if present, must be a
/// U8 scalar (or [1]) equal to 0 ("row"). Reads no data but that byte. On error `out` is unchanged.
///
/// The layout records no dtype (bitsandbytes quantizes a float16 copy of the weight, whatever the
/// model's dtype). `source` becomes the layout's source dtype, the dtype its dequantization gives
/// by default: float32, as bitsandbytes' `int8_vectorwise_dequant` returns (lowbit's float32
/// values equal it bit for bit), unless the caller knows the model's dtype (transformers' config
/// `torch_dtype`, see recorded_dtype: `model.dequantize()` rounds those float32 values to it).
inline status bnb_int8_layout(const checkpoint& c, const std::string& weight, bnb_layout& out, dtype source = dtype::f32) {
  const auto lw = c.find(weight);
  if (lw.tensor == nullptr) return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" is missing", c.path().c_str(), weight.c_str());
  const char* file = lw.file->path().c_str();
  if (lw.tensor->dtype != st_dtype::I8 || lw.tensor->shape.size() != 2)
    return status::error(errc::invalid_argument, "%s: \"%.100s\": an LLM.int8 weight is a 2-D I8 tensor", file, weight.c_str());
  const std::string prefix = detail::int8_prefix(weight);
  const std::int64_t rows = lw.tensor->shape[0], cols = lw.tensor->shape[1];
  checkpoint::location ls;
  LOWBIT_TRY(detail::expect_tensor(c, prefix + "SCB", st_dtype::F32, {rows}, ls));
  const auto lf = c.find(prefix + "weight_format");
  if (lf.tensor != nullptr) {
    if (lf.tensor->dtype != st_dtype::U8 || lf.tensor->nbytes() != 1 || lf.tensor->shape.size() > 1)
      return status::error(errc::invalid_argument, "%s: \"%.100sweight_format\" must be a U8 scalar", lf.file->path().c_str(), prefix.c_str());
    if (lf.file->data(*lf.tensor)[0] != 0)
      return status::error(errc::unsupported, "%s: \"%.100sweight_format\" is %d; only 0 (row-major int8) is defined", lf.file->path().c_str(), prefix.c_str(),
                           lf.file->data(*lf.tensor)[0]);
  }
  out = bnb_layout{format::int8_absmax, source, {rows, cols}, std::max<std::int64_t>(cols, 1), false, 0.0f};
  return {};
}

/// Reads the LLM.int8 weight `weight` (see bnb_int8_layout, and for `source`) into an int8_absmax
/// tensor with one block per row. On error `out` is unchanged.
inline status load_bnb_int8(const checkpoint& c, const std::string& weight, quant_tensor& out, dtype source = dtype::f32) {
  bnb_layout l;
  LOWBIT_TRY(bnb_int8_layout(c, weight, l, source));
  quant_tensor t;
  LOWBIT_TRY(quant_tensor::allocate(l.fmt, l.shape, l.source, l.block_size, false, t));
  const std::string prefix = detail::int8_prefix(weight);
  detail::copy_out(c.find(weight), t.codes());
  detail::copy_out(c.find(prefix + "SCB"), t.scales());
  out = std::move(t);
  return {};
}

/// A tensor of a checkpoint as a reader of bitsandbytes checkpoints sees it: a dense tensor, or a
/// quantized weight with the companion tensors that hold its scales, tables and quant_state.
struct bnb_member {
  enum class kind { dense, bnb_4bit, bnb_int8 };
  std::string name;
  kind what = kind::dense;
  std::vector<std::string> companions;  ///< the quantized weight's other tensors present in the file
};

/// Sorts the tensors of `c` into dense tensors and bitsandbytes weights with their companions,
/// in `c.names()` order, companions left out of the list. A 4-bit weight is a tensor `W` with a
/// tensor `W.quant_state.<anything>` (its companions: those, and whichever of `W.absmax`,
/// `W.quant_map`, `W.nested_absmax`, `W.nested_quant_map` exist); an LLM.int8 weight is an I8
/// tensor `P.weight` with a tensor `P.SCB` (companions: `P.SCB` and `P.weight_format` if
/// present). A `.quant_state.` tensor without its weight is listed as a dense tensor. Whether
/// each weight's tensors are well formed is bnb_4bit_layout's / bnb_int8_layout's question.
/// Cost: linear in the number of tensors (a fixed number of hashed lookups per tensor).
inline void bnb_members(const checkpoint& c, std::vector<bnb_member>& out) {
  static const char* const parts[] = {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map"};
  static const std::string qs_infix = ".quant_state.";
  std::unordered_map<std::string, std::vector<std::string>> quant_states;  // weight -> its quant_state tensors
  for (const auto& n : c.names()) {
    const auto at = n.find(qs_infix);
    if (at != std::string::npos) quant_states[n.substr(0, at)].push_back(n);
  }
  std::vector<bnb_member> members;
  std::unordered_set<std::string> companion;
  for (const auto& n : c.names()) {
    bnb_member m;
    m.name = n;
    const auto qs = quant_states.find(n);
    if (qs != quant_states.end()) {
      m.what = bnb_member::kind::bnb_4bit;
      for (const char* p : parts)
        if (c.find(n + p).tensor != nullptr) m.companions.push_back(n + p);
      m.companions.insert(m.companions.end(), qs->second.begin(), qs->second.end());
    } else if (n.size() >= 6 && n.compare(n.size() - 6, 6, "weight") == 0 && c.find(n).tensor->dtype == st_dtype::I8) {
      const std::string prefix = detail::int8_prefix(n);
      if (c.find(prefix + "SCB").tensor != nullptr) {
        m.what = bnb_member::kind::bnb_int8;
        m.companions.push_back(prefix + "SCB");
        if (c.find(prefix + "weight_format").tensor != nullptr) m.companions.push_back(prefix + "weight_format");
      }
    }
    companion.insert(m.companions.begin(), m.companions.end());
    members.push_back(std::move(m));
  }
  out.clear();
  for (auto& m : members)
    if (companion.count(m.name) == 0) out.push_back(std::move(m));
}

}  // namespace io
LOWBIT_NAMESPACE_END
