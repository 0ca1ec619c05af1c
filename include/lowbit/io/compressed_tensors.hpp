// SPDX-License-Identifier: Apache-2.0
/// @file compressed_tensors.hpp
/// @brief compressed-tensors (llm-compressor, vLLM) checkpoints: the `quantization_config`
///        (`quant_method: "compressed-tensors"`), which config group applies to a module, and the
///        weights of the `float-quantized` (FP8 E4M3) and `nvfp4-pack-quantized` layouts, read
///        into a `scaled_tensor` and written from one, and of `pack-quantized` (int1..int8, with
///        zero points when asymmetric) and `int-quantized` (int8 codes as I8), read into a
///        `ct_int_weight`. docs/compressed-tensors.md has the sources (compressed-tensors
///        0.12.2-23-g52792be0), the tables and what is not supported.
///
/// @par float-quantized (weights `type: "float"`, `num_bits: 8`, symmetric)
/// | tensor | dtype | shape |
/// |---|---|---|
/// | `X.weight` | F8_E4M3 (e4m3fn) | `[N, K]` |
/// | `X.weight_scale` | F32, BF16 or F16 | tensor `[1]` (or `[]`), channel `[N, 1]`, group `[N, ceil(K / g)]`, block `[ceil(N / bn), ceil(K / bk)]` |
///
/// `w[n, k] = f32(w_q[n, k]) * weight_scale[...]`, read as fp8_e4m3_block with tile N x K (tensor),
/// 1 x K (channel), 1 x g (group) or bn x bk (block).
///
/// @par nvfp4-pack-quantized (weights `type: "float"`, `num_bits: 4`, `strategy: "tensor_group"`, group 16)
/// | tensor | dtype | shape |
/// |---|---|---|
/// | `X.weight_packed` | U8, two e2m1 codes a byte, element 2j in the low nibble | `[N, K / 2]` |
/// | `X.weight_scale` | F8_E4M3 | `[N, ceil(K / 16)]` |
/// | `X.weight_global_scale` | F32 | `[1]` |
///
/// `w[n, k] = e2m1(q) * f32(e4m3(scale) / global_scale)`: byte for byte lowbit's nvfp4 with
/// nvfp4_global::inverse and a 1 x 16 tile, so reading is a copy.
///
/// @par pack-quantized (weights `type: "int"`, `num_bits` 1..8, tensor / channel / group)
/// | tensor | dtype | shape |
/// |---|---|---|
/// | `X.weight_packed` | I32: `32 / b` codes a word, code i in bits [i b, (i + 1) b), stored `q + 2^(b-1)` | `[N, ceil(K / (32 / b))]` |
/// | `X.weight_scale` | F32, BF16 or F16 | `[1]`, `[N, 1]` or `[N, ceil(K / g)]` |
/// | `X.weight_zero_point` (asymmetric) | I32 packed the same way along dim 0 (I8 `[1]` per tensor) | `[ceil(N / (32 / b)), groups]` |
/// | `X.weight_shape` | I64 (I32 accepted) | `[2]` = N, K |
///
/// `w[n, k] = (q - z) * s`. int-quantized stores the same codes unpacked: `X.weight` I8 [N, K],
/// `X.weight_scale` as above, `X.weight_zero_point` (asymmetric) I8 of the scale's shape.
///
/// @par Special values, on reading
/// A weight with a zero dimension is an error. Partial last groups / blocks (K or N not a multiple
/// of the group / block; compressed-tensors' own quantize refuses them) are read with the scale of
/// their group. Unless `allow_nonfinite`: a non-finite scale, a NaN weight code (e4m3 0x7F / 0xFF),
/// a NaN e4m3 scale code, and a global scale that is not finite and > 0 are errors naming the
/// first bad index; with it they decode by IEEE arithmetic. Every loader leaves `out` unchanged
/// on error.
#pragma once

#include "../scaled_tensor.hpp"
#include "checkpoint.hpp"
#include "fp8_block.hpp"
#include "transformers.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>
#include <regex>
#include <string>
#include <utility>
#include <vector>

LOWBIT_NAMESPACE_BEGIN
namespace io {

/// One `QuantizationArgs` object (weights, input_activations, output_activations or
/// kv_cache_scheme). Keys compressed-tensors defines are typed; any other key is kept verbatim
/// in `extra` (newer releases add keys) and written back.
struct ct_quant_args {
  int num_bits = 8;
  std::string type = "int";        ///< "int" or "float"
  bool symmetric = true;
  std::string strategy = "tensor"; ///< tensor, channel, group, block, token, tensor_group, attn_head
  /// group_size: > 0 for group / tensor_group, -1 (channel) or absent (0 here, null on disk).
  std::int64_t group_size = 0;
  std::int64_t block_rows = 0, block_cols = 0;  ///< block_structure; 0 x 0 = absent
  std::string dynamic = "false";   ///< "false", "true" or "local" (JSON false / true / "local")
  nlohmann::ordered_json actorder;  ///< null, a string or a bool, as written
  nlohmann::ordered_json observer;  ///< null or a string
  nlohmann::ordered_json observer_kwargs = nlohmann::ordered_json::object();
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  ///< unknown keys, verbatim
};

/// One config group (`QuantizationScheme`).
struct ct_scheme {
  std::vector<std::string> targets;
  bool has_weights = false, has_input_activations = false, has_output_activations = false;
  ct_quant_args weights, input_activations, output_activations;
  std::string format;  ///< per-group format (mixed-precision checkpoints); "" = the config's
};

/// The `quantization_config` of a compressed-tensors checkpoint.
struct ct_config {
  /// The groups, sorted by name (nlohmann::json keeps object keys sorted; compressed-tensors
  /// keeps the file's order, which matters only for a target listed by two groups: see ct_group_of).
  std::vector<std::pair<std::string, ct_scheme>> config_groups;
  std::string format = "fakequant";          ///< e.g. float-quantized, nvfp4-pack-quantized
  std::string quantization_status = "compressed";
  std::vector<std::string> ignore;
  bool has_kv_cache_scheme = false;
  ct_quant_args kv_cache_scheme;
  nlohmann::ordered_json extra = nlohmann::ordered_json::object();  ///< unknown keys (sparsity_config, version, ...), verbatim
};

namespace detail {

/// `j` as an ordered_json (keys in j's order: sorted, as nlohmann::json keeps them). Invalid UTF-8
/// in a string (only possible for JSON built in code; parsed text is checked) becomes U+FFFD.
inline nlohmann::ordered_json to_ordered(const nlohmann::json& j) {
  return nlohmann::ordered_json::parse(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

inline std::string lower(std::string s) {
  for (auto& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

inline status ct_int(const nlohmann::json& v, const std::string& where, const char* key, std::int64_t lo, std::int64_t hi, std::int64_t& out) {
  if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(hi)) || v.get<std::int64_t>() < lo ||
      v.get<std::int64_t>() > hi)
    return status::error(errc::invalid_argument, "%s: %s is %.40s, not an integer in [%lld, %lld]", where.c_str(), key, json_brief(v).c_str(),
                         static_cast<long long>(lo), static_cast<long long>(hi));
  out = v.get<std::int64_t>();
  return {};
}

inline status ct_strings(const nlohmann::json& v, const std::string& where, const char* key, std::vector<std::string>& out) {
  if (!v.is_array()) return status::error(errc::invalid_argument, "%s: %s is %.40s, not a list of strings", where.c_str(), key, json_brief(v).c_str());
  std::vector<std::string> r;
  for (const auto& s : v) {
    if (!s.is_string()) return status::error(errc::invalid_argument, "%s: %s holds %.40s, not a string", where.c_str(), key, json_brief(s).c_str());
    r.push_back(s.get<std::string>());
  }
  out = std::move(r);
  return {};
}

}  // namespace detail

/// Reads one QuantizationArgs object (`where` names it in messages, e.g. "config.json:
/// config_groups.group_0.weights"), with compressed-tensors' validation: num_bits in [1, 64],
/// type int / float, strategy one of the seven (inferred from group_size when absent: none ->
/// tensor, > 0 -> group, -1 -> channel), group / tensor_group need group_size > 0 and no other
/// strategy takes one > 0, block needs block_structure ([r, c] or "rxc", both >= 1) and only block
/// takes it, dynamic false / true / "local" (local only with tensor_group; true only with token,
/// tensor, tensor_group or group; token only with true), actorder only with group. Errors name
/// the key; `out` is unchanged on error.
inline status from_json(const nlohmann::json& j, const std::string& where, ct_quant_args& out) {
  const char* w = where.c_str();
  if (!j.is_object()) return status::error(errc::invalid_argument, "%s: is %.40s, not an object", w, detail::json_brief(j).c_str());
  ct_quant_args a;
  bool has_strategy = false, has_group = false;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const nlohmann::json& v = it.value();
    if (k == "num_bits") {
      std::int64_t b = 0;
      LOWBIT_TRY(detail::ct_int(v, where, "num_bits", 1, 64, b));
      a.num_bits = static_cast<int>(b);
    } else if (k == "type") {
      if (!v.is_string() || (detail::lower(v.get<std::string>()) != "int" && detail::lower(v.get<std::string>()) != "float"))
        return status::error(errc::invalid_argument, "%s: type is %.40s, not \"int\" or \"float\"", w, detail::json_brief(v).c_str());
      a.type = detail::lower(v.get<std::string>());
    } else if (k == "symmetric") {
      if (!v.is_boolean()) return status::error(errc::invalid_argument, "%s: symmetric is %.40s, not a bool", w, detail::json_brief(v).c_str());
      a.symmetric = v.get<bool>();
    } else if (k == "strategy") {
      if (v.is_null()) continue;
      static const char* const known[] = {"tensor", "channel", "group", "block", "token", "tensor_group", "attn_head"};
      const std::string s = v.is_string() ? detail::lower(v.get<std::string>()) : std::string();
      if (std::find_if(std::begin(known), std::end(known), [&](const char* x) { return s == x; }) == std::end(known))
        return status::error(errc::invalid_argument, "%s: strategy is %.40s, not one of tensor, channel, group, block, token, tensor_group, attn_head", w,
                             detail::json_brief(v).c_str());
      a.strategy = s;
      has_strategy = true;
    } else if (k == "group_size") {
      if (v.is_null()) continue;
      LOWBIT_TRY(detail::ct_int(v, where, "group_size", -1, std::int64_t{1} << 40, a.group_size));
      if (a.group_size == 0) return status::error(errc::invalid_argument, "%s: group_size is 0; use > 0 for group, -1 for channel", w);
      has_group = true;
    } else if (k == "block_structure") {
      if (v.is_null()) continue;
      std::int64_t r = 0, c = 0;
      bool ok = false;
      if (v.is_array() && v.size() == 2 && v[0].is_number_integer() && v[1].is_number_integer()) {
        r = v[0].get<std::int64_t>();
        c = v[1].get<std::int64_t>();
        ok = true;
      } else if (v.is_string()) {  // "128x128", accepted by compressed-tensors for old configs
        const std::string s = v.get<std::string>();
        const auto x = s.find('x');
        const auto digits = [](const std::string& t) { return !t.empty() && t.size() <= 10 && std::all_of(t.begin(), t.end(), [](char ch) { return ch >= '0' && ch <= '9'; }); };
        if (x != std::string::npos && digits(s.substr(0, x)) && digits(s.substr(x + 1))) {
          r = std::stoll(s.substr(0, x));
          c = std::stoll(s.substr(x + 1));
          ok = true;
        }
      }
      if (!ok || r < 1 || c < 1 || r > (std::int64_t{1} << 31) || c > (std::int64_t{1} << 31))
        return status::error(errc::invalid_argument, "%s: block_structure is %.40s, not two integers >= 1", w, detail::json_brief(v).c_str());
      a.block_rows = r;
      a.block_cols = c;
    } else if (k == "dynamic") {
      if (v.is_boolean()) a.dynamic = v.get<bool>() ? "true" : "false";
      else if (v.is_string() && detail::lower(v.get<std::string>()) == "local") a.dynamic = "local";
      else return status::error(errc::invalid_argument, "%s: dynamic is %.40s, not true, false or \"local\"", w, detail::json_brief(v).c_str());
    } else if (k == "actorder") {
      if (!v.is_null() && !v.is_boolean() && !v.is_string())
        return status::error(errc::invalid_argument, "%s: actorder is %.40s, not null, a bool or a string", w, detail::json_brief(v).c_str());
      if (v.is_string()) {
        const std::string s = detail::lower(v.get<std::string>());
        if (s != "group" && s != "weight" && s != "dynamic" && s != "static")
          return status::error(errc::invalid_argument, "%s: actorder is %.40s, not group, weight, dynamic or static", w, detail::json_brief(v).c_str());
      }
      a.actorder = detail::to_ordered(v);
    } else if (k == "observer") {
      if (!v.is_null() && !v.is_string()) return status::error(errc::invalid_argument, "%s: observer is %.40s, not a string", w, detail::json_brief(v).c_str());
      a.observer = detail::to_ordered(v);
    } else if (k == "observer_kwargs") {
      if (!v.is_object()) return status::error(errc::invalid_argument, "%s: observer_kwargs is %.40s, not an object", w, detail::json_brief(v).c_str());
      a.observer_kwargs = detail::to_ordered(v);
    } else {
      a.extra[k] = detail::to_ordered(v);
    }
  }
  if (!has_strategy) a.strategy = !has_group ? "tensor" : a.group_size > 0 ? "group" : "channel";
  const bool grouped = a.strategy == "group" || a.strategy == "tensor_group";
  if (grouped && a.group_size <= 0) return status::error(errc::invalid_argument, "%s: strategy %s needs group_size > 0", w, a.strategy.c_str());
  if (!grouped && a.group_size > 0) return status::error(errc::invalid_argument, "%s: group_size %lld needs strategy group or tensor_group, not %s", w,
                                                        static_cast<long long>(a.group_size), a.strategy.c_str());
  if ((a.strategy == "block") != (a.block_rows > 0))
    return status::error(errc::invalid_argument, "%s: %s", w, a.strategy == "block" ? "strategy block needs block_structure" : "block_structure needs strategy block");
  if (a.dynamic == "local" && a.strategy != "tensor_group") return status::error(errc::invalid_argument, "%s: dynamic \"local\" needs strategy tensor_group", w);
  if (a.strategy == "token" && a.dynamic == "false") return status::error(errc::invalid_argument, "%s: strategy token needs dynamic true", w);
  if (a.dynamic == "true" && a.strategy != "token" && a.strategy != "tensor" && a.strategy != "tensor_group" && a.strategy != "group")
    return status::error(errc::invalid_argument, "%s: dynamic true needs strategy token, tensor, tensor_group or group, not %s", w, a.strategy.c_str());
  if (!a.actorder.is_null() && !(a.actorder.is_boolean() && !a.actorder.get<bool>()) && a.strategy != "group")
    return status::error(errc::invalid_argument, "%s: actorder needs strategy group", w);
  out = std::move(a);
  return {};
}

/// The JSON object of `a`, keys in compressed-tensors' field order.
inline nlohmann::ordered_json to_json(const ct_quant_args& a) {
  nlohmann::ordered_json j;
  j["num_bits"] = a.num_bits;
  j["type"] = a.type;
  j["symmetric"] = a.symmetric;
  if (a.group_size != 0) j["group_size"] = a.group_size;
  else j["group_size"] = nullptr;
  j["strategy"] = a.strategy;
  if (a.block_rows > 0) j["block_structure"] = {a.block_rows, a.block_cols};
  else j["block_structure"] = nullptr;
  if (a.dynamic == "local") j["dynamic"] = "local";
  else j["dynamic"] = a.dynamic == "true";
  j["actorder"] = a.actorder;
  j["observer"] = a.observer;
  j["observer_kwargs"] = a.observer_kwargs;
  for (auto it = a.extra.begin(); it != a.extra.end(); ++it) j[it.key()] = it.value();
  return j;
}

/// Reads a `quantization_config` object of quant_method "compressed-tensors" (`where` names it).
/// Errors (naming the key): not an object, another quant_method, config_groups missing or not an
/// object, a group given as a preset name list (not expanded; lowbit has no preset table), a
/// group with no targets or a target that is not a string, bad QuantizationArgs (see above), a
/// format / quantization_status that is not a string (the status must be initialized,
/// calibration, frozen or compressed), ignore not a list of strings. Unknown keys are kept.
inline status from_json(const nlohmann::json& j, const std::string& where, ct_config& out) {
  const char* w = where.c_str();
  if (!j.is_object()) return status::error(errc::invalid_argument, "%s: quantization_config is not an object", w);
  const auto qm = j.find("quant_method");
  if (qm == j.end() || *qm != "compressed-tensors")
    return status::error(errc::unsupported, "%s: quant_method is %.40s, not \"compressed-tensors\"", w, qm == j.end() ? "absent" : detail::json_brief(*qm).c_str());
  ct_config c;
  const auto groups = j.find("config_groups");
  if (groups == j.end() || !groups->is_object())
    return status::error(errc::invalid_argument, "%s: config_groups is %.40s, not an object", w, groups == j.end() ? "absent" : detail::json_brief(*groups).c_str());
  for (auto g = groups->begin(); g != groups->end(); ++g) {
    const std::string gw = where + ": config_groups." + g.key();
    if (g.value().is_array())
      return status::error(errc::unsupported, "%s is a preset scheme's target list; lowbit reads expanded schemes only", gw.c_str());
    if (!g.value().is_object()) return status::error(errc::invalid_argument, "%s is %.40s, not an object", gw.c_str(), detail::json_brief(g.value()).c_str());
    ct_scheme s;
    for (auto it = g.value().begin(); it != g.value().end(); ++it) {
      const std::string& k = it.key();
      const nlohmann::json& v = it.value();
      if (k == "targets") {
        LOWBIT_TRY(detail::ct_strings(v, gw, "targets", s.targets));
      } else if (k == "weights" || k == "input_activations" || k == "output_activations") {
        if (v.is_null()) continue;
        ct_quant_args& a = k == "weights" ? s.weights : k == "input_activations" ? s.input_activations : s.output_activations;
        LOWBIT_TRY(from_json(v, gw + "." + k, a));
        (k == "weights" ? s.has_weights : k == "input_activations" ? s.has_input_activations : s.has_output_activations) = true;
      } else if (k == "format") {
        if (v.is_null()) continue;
        if (!v.is_string()) return status::error(errc::invalid_argument, "%s: format is %.40s, not a string", gw.c_str(), detail::json_brief(v).c_str());
        s.format = v.get<std::string>();
      } else {
        return status::error(errc::invalid_argument, "%s: unknown key \"%.60s\"", gw.c_str(), k.c_str());
      }
    }
    if (s.targets.empty()) return status::error(errc::invalid_argument, "%s: targets is missing or empty", gw.c_str());
    c.config_groups.emplace_back(g.key(), std::move(s));
  }
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const nlohmann::json& v = it.value();
    if (k == "config_groups" || k == "quant_method") continue;
    if (k == "format") {
      if (!v.is_string()) return status::error(errc::invalid_argument, "%s: format is %.40s, not a string", w, detail::json_brief(v).c_str());
      c.format = v.get<std::string>();
    } else if (k == "quantization_status") {
      const std::string s = v.is_string() ? v.get<std::string>() : std::string();
      if (s != "initialized" && s != "calibration" && s != "frozen" && s != "compressed")
        return status::error(errc::invalid_argument, "%s: quantization_status is %.40s, not initialized, calibration, frozen or compressed", w,
                             detail::json_brief(v).c_str());
      c.quantization_status = s;
    } else if (k == "ignore") {
      if (!v.is_null()) LOWBIT_TRY(detail::ct_strings(v, where, "ignore", c.ignore));
    } else if (k == "kv_cache_scheme") {
      if (v.is_null()) continue;
      LOWBIT_TRY(from_json(v, where + ": kv_cache_scheme", c.kv_cache_scheme));
      c.has_kv_cache_scheme = true;
    } else {
      c.extra[k] = detail::to_ordered(v);
    }
  }
  out = std::move(c);
  return {};
}

/// The `quantization_config` object of `c` (keys in compressed-tensors' order, then the kept ones).
inline nlohmann::ordered_json to_json(const ct_config& c) {
  nlohmann::ordered_json j;
  nlohmann::ordered_json groups = nlohmann::ordered_json::object();
  for (const auto& g : c.config_groups) {
    nlohmann::ordered_json s;
    s["targets"] = g.second.targets;
    s["weights"] = g.second.has_weights ? to_json(g.second.weights) : nlohmann::ordered_json();
    s["input_activations"] = g.second.has_input_activations ? to_json(g.second.input_activations) : nlohmann::ordered_json();
    s["output_activations"] = g.second.has_output_activations ? to_json(g.second.output_activations) : nlohmann::ordered_json();
    if (g.second.format.empty()) s["format"] = nullptr;
    else s["format"] = g.second.format;
    groups[g.first] = s;
  }
  j["config_groups"] = groups;
  j["quant_method"] = "compressed-tensors";
  j["kv_cache_scheme"] = c.has_kv_cache_scheme ? to_json(c.kv_cache_scheme) : nlohmann::ordered_json();
  j["format"] = c.format;
  j["quantization_status"] = c.quantization_status;
  j["ignore"] = c.ignore;
  for (auto it = c.extra.begin(); it != c.extra.end(); ++it) j[it.key()] = it.value();
  return j;
}

/// Reads `path` (a config.json) and its compressed-tensors `quantization_config` (also accepted
/// under the older key `compression_config`). Errors: unreadable file, invalid UTF-8 or JSON, no
/// quantization_config, or what from_json rejects.
inline status read_ct_config(const std::string& path, ct_config& out) {
  std::string text;
  LOWBIT_TRY(read_text_file(path, text));
  nlohmann::json j;
  LOWBIT_TRY(parse_json_text(text, path, j));
  if (!j.is_object()) return status::error(errc::invalid_argument, "%s: not a JSON object", path.c_str());
  for (const char* key : {"quantization_config", "compression_config"})
    if (j.contains(key)) return from_json(j[key], path, out);
  return status::error(errc::invalid_argument, "%s: no quantization_config", path.c_str());
}

/// Writes `path` atomically: the JSON object `base_text` ("" for an empty object) with
/// `quantization_config` set to `c`, indented by 2.
inline status write_ct_config(const std::string& path, const std::string& base_text, const ct_config& c) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!base_text.empty()) {
    nlohmann::json b;
    LOWBIT_TRY(parse_json_text(base_text, path + " (base config)", b));
    if (!b.is_object()) return status::error(errc::invalid_argument, "%s: base config is not a JSON object", path.c_str());
    j = detail::to_ordered(b);
  }
  j["quantization_config"] = to_json(c);
  return write_file_atomic(path, j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");
}

namespace detail {
/// A target that names a module class (an identifier starting with an upper-case letter).
inline bool ct_is_class_name(const std::string& t) {
  if (t.empty() || !std::isupper(static_cast<unsigned char>(t[0]))) return false;
  return std::all_of(t.begin(), t.end(), [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_'; });
}

/// 1: `target` matches module `name` by name (exact, or "re:" regex matched at the start as
/// Python's re.match does); 2: by class ("Linear"); 0: no match. Errors: a regex std::regex
/// (ECMAScript) cannot compile, or a class name other than Linear.
inline status ct_match(const std::string& name, const std::string& target, int& out) {
  out = 0;
  if (target.rfind("re:", 0) == 0) {
    try {
      const std::regex re(target.substr(3), std::regex::ECMAScript);
      if (std::regex_search(name, re, std::regex_constants::match_continuous)) out = 1;
    } catch (const std::exception&) {
      return status::error(errc::unsupported, "target \"%.100s\": lowbit cannot compile this regex (ECMAScript syntax; Python-only syntax is not supported)",
                           target.c_str());
    }
    return {};
  }
  if (target == name) out = 1;
  else if (target == "Linear") out = 2;
  else if (ct_is_class_name(target))
    return status::error(errc::unsupported, "target \"%.100s\" names a module class; a checkpoint does not say which modules are of it (lowbit decides Linear only)",
                         target.c_str());
  return {};
}
}  // namespace detail

/// The config group that applies to module `module` (e.g. "model.layers.0.mlp.up_proj"), as
/// compressed-tensors' apply_quantization_config decides it: "" (and true) if a target in
/// `ignore` matches the module, or no group's target does; else the group of the most specific
/// matching target (exact name, then "re:" regexes in sorted order, then "Linear"). A target
/// listed by two groups is an errc::unsupported error (compressed-tensors gives it to the later
/// group in the file, and the parsed config does not keep the file's order). Matching: "re:P"
/// matches if P (ECMAScript) matches at the start of the name (Python re.match); "Linear"
/// matches every module asked about (lowbit asks only for modules whose weight is stored in a
/// quantized layout, i.e. linear layers); another target is an exact module name, unless it looks
/// like a class name (identifier starting upper-case), which lowbit cannot decide from a
/// checkpoint: that, and a regex std::regex cannot compile, is an errc::unsupported error when it
/// is consulted. `out` is unchanged on error.
inline status ct_group_of(const ct_config& c, const std::string& module, std::string& out) {
  for (const auto& t : c.ignore) {
    int m = 0;
    LOWBIT_TRY(detail::ct_match(module, t, m));
    if (m != 0) {
      out.clear();
      return {};
    }
  }
  std::map<std::string, std::size_t> owner;  // target -> group index
  for (std::size_t g = 0; g < c.config_groups.size(); ++g)
    for (const auto& t : c.config_groups[g].second.targets) {
      const auto ins = owner.emplace(t, g);
      if (!ins.second && ins.first->second != g)
        return status::error(errc::unsupported, "target \"%.100s\" is listed by config groups %.60s and %.60s; compressed-tensors gives it to the later one in the file, an order lowbit does not keep",
                             t.c_str(), c.config_groups[ins.first->second].first.c_str(), c.config_groups[g].first.c_str());
    }
  std::vector<std::string> order;  // non-regex first, then regex, each sorted (python's key)
  for (const auto& kv : owner) order.push_back(kv.first);
  std::stable_sort(order.begin(), order.end(), [](const std::string& a, const std::string& b) {
    const bool ra = a.find("re:") != std::string::npos, rb = b.find("re:") != std::string::npos;
    return ra != rb ? !ra : a < b;
  });
  std::string best;
  int best_kind = 0;
  for (const auto& t : order) {
    int m = 0;
    LOWBIT_TRY(detail::ct_match(module, t, m));
    if (m == 1 && best_kind != 1) best = t, best_kind = 1;
    else if (m == 2 && best_kind == 0) best = t, best_kind = 2;
  }
  out = best_kind == 0 ? std::string() : c.config_groups[owner[best]].first;
  return {};
}

/// The group named `name` in `c`, or null.
inline const ct_scheme* ct_find_scheme(const ct_config& c, const std::string& name) noexcept {
  for (const auto& g : c.config_groups)
    if (g.first == name) return &g.second;
  return nullptr;
}

/// The storage format of `group` in `c`: the group's own, else the config's.
inline const std::string& ct_group_format(const ct_config& c, const ct_scheme& s) noexcept { return s.format.empty() ? c.format : s.format; }

/// Options of the loaders.
struct ct_load_options {
  dtype source = dtype::bf16;  ///< the dtype before quantization, kept in the scaled_tensor
  bool allow_nonfinite = false;  ///< accept non-finite scales and NaN codes (IEEE decoding)
};

/// Where a checked weight's tensors are.
struct ct_layout {
  checkpoint::location weight, scale, global_scale, zero_point;  ///< absent ones null
  std::int64_t rows = 0, cols = 0;  ///< N, K
  tile_shape tile{};                ///< the scale tile of the scaled_tensor it reads into
};

namespace detail {

inline status ct_tile_of(const ct_quant_args& a, std::int64_t n, std::int64_t k, const std::string& where, tile_shape& t) {
  if (((a.strategy == "group" || a.strategy == "tensor_group") && (a.group_size < 1 || a.group_size > (std::int64_t{1} << 40))) ||
      (a.strategy == "block" && (a.block_rows < 1 || a.block_cols < 1 || a.block_rows > (std::int64_t{1} << 31) || a.block_cols > (std::int64_t{1} << 31))))
    return status::error(errc::invalid_argument, "%s: strategy %s with group_size %lld, block_structure [%lld, %lld]: the group / block must be >= 1", where.c_str(),
                         a.strategy.c_str(), static_cast<long long>(a.group_size), static_cast<long long>(a.block_rows), static_cast<long long>(a.block_cols));
  if (a.strategy == "tensor") t = {n, k};
  else if (a.strategy == "channel") t = {1, k};
  else if (a.strategy == "group" || a.strategy == "tensor_group") t = {1, a.group_size};
  else if (a.strategy == "block") t = {a.block_rows, a.block_cols};
  else return status::error(errc::unsupported, "%s: weight strategy %s is not one lowbit stores", where.c_str(), a.strategy.c_str());
  return {};
}

inline status ct_need(const checkpoint& c, const std::string& name, const std::string& weight, checkpoint::location& out) {
  out = c.find(name);
  if (out.tensor == nullptr)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" (of weight \"%.100s\") is missing", c.path().c_str(), name.c_str(), weight.c_str());
  return {};
}

inline status ct_shape_is(const checkpoint::location& l, const std::vector<std::int64_t>& want, const char* what) {
  if (l.tensor->shape != want)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has shape %s; %s needs %s", l.file->path().c_str(), l.tensor->name.c_str(),
                         shape_text(l.tensor->shape).c_str(), what, shape_text(want).c_str());
  return {};
}

inline status ct_dtype_in(const checkpoint::location& l, std::initializer_list<st_dtype> ok, const char* what) {
  for (auto d : ok)
    if (l.tensor->dtype == d) return {};
  std::string names;
  for (auto d : ok) names += (names.empty() ? "" : " or ") + std::string(info(d).name);
  return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has dtype %s; %s is %s", l.file->path().c_str(), l.tensor->name.c_str(),
                       info(l.tensor->dtype).name, what, names.c_str());
}

/// Element `i` of an F32 / BF16 / F16 tensor as float32 (exact).
inline float ct_float_at(const checkpoint::location& l, std::int64_t i) {
  const std::uint8_t* p = l.file->data(*l.tensor);
  if (l.tensor->dtype == st_dtype::F32) {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
  const std::uint16_t h = static_cast<std::uint16_t>(p[2 * i] | (p[2 * i + 1] << 8));
  if (l.tensor->dtype == st_dtype::BF16) return bits_float(static_cast<std::uint32_t>(h) << 16);
  return f16_bits_to_float(h);
}

inline status ct_check_weight_2d(const checkpoint::location& l, const char* what) {
  if (l.tensor->shape.size() != 2 || l.tensor->shape[0] < 1 || l.tensor->shape[1] < 1)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has shape %s; %s is 2-D with no zero dimension", l.file->path().c_str(),
                         l.tensor->name.c_str(), shape_text(l.tensor->shape).c_str(), what);
  return {};
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// float-quantized: FP8 E4M3 weights with a float scale per tensor / channel / group / block.
// ---------------------------------------------------------------------------------------------

/// Checks `a` describes a float-quantized weight lowbit reads: type float, 8 bits, symmetric,
/// strategy tensor, channel, group or block, not dynamic.
inline status check_ct_fp8_args(const ct_quant_args& a, const std::string& where) {
  if (a.type != "float" || a.num_bits != 8 || !a.symmetric || a.dynamic != "false")
    return status::error(errc::unsupported, "%s: weights are %s%d%s%s; float-quantized FP8 weights are static symmetric float 8-bit", where.c_str(),
                         a.type.c_str(), a.num_bits, a.symmetric ? "" : " asymmetric", a.dynamic != "false" ? " dynamic" : "");
  if (a.strategy != "tensor" && a.strategy != "channel" && a.strategy != "group" && a.strategy != "block")
    return status::error(errc::unsupported, "%s: weight strategy %s; lowbit reads FP8 weights per tensor, channel, group or block", where.c_str(), a.strategy.c_str());
  return {};
}

/// Checks the headers of module `module`'s float-quantized weight against `a` (no data read):
/// `module.weight` F8_E4M3 [N, K] (N, K >= 1), `module.weight_scale` F32 / BF16 / F16 of the
/// strategy's shape (tensor: [1] or []; channel: [N, 1]; group: [N, ceil(K / g)]; block:
/// [ceil(N / bn), ceil(K / bk)]), and `module.weight_zero_point`, if present, of the scale's
/// element count (its values are checked to be 0 by the loader). Errors name file and tensor.
inline status check_ct_fp8_layout(const checkpoint& c, const std::string& module, const ct_quant_args& a, ct_layout& out) {
  const std::string weight = module + ".weight";
  LOWBIT_TRY(check_ct_fp8_args(a, c.path() + ": weight \"" + weight + "\""));
  ct_layout l;
  LOWBIT_TRY(detail::ct_need(c, weight, weight, l.weight));
  LOWBIT_TRY(detail::ct_dtype_in(l.weight, {st_dtype::F8_E4M3}, "a float-quantized weight"));
  LOWBIT_TRY(detail::ct_check_weight_2d(l.weight, "a float-quantized weight"));
  l.rows = l.weight.tensor->shape[0];
  l.cols = l.weight.tensor->shape[1];
  LOWBIT_TRY(detail::ct_tile_of(a, l.rows, l.cols, weight, l.tile));
  LOWBIT_TRY(detail::ct_need(c, module + ".weight_scale", weight, l.scale));
  LOWBIT_TRY(detail::ct_dtype_in(l.scale, {st_dtype::F32, st_dtype::BF16, st_dtype::F16}, "weight_scale"));
  const std::int64_t gr = (l.rows + l.tile.rows - 1) / l.tile.rows, gc = (l.cols + l.tile.cols - 1) / l.tile.cols;
  if (a.strategy == "tensor") {
    if (l.scale.tensor->shape != std::vector<std::int64_t>{1} && !l.scale.tensor->shape.empty())
      LOWBIT_TRY(detail::ct_shape_is(l.scale, {1}, "a per-tensor weight_scale"));
  } else {
    LOWBIT_TRY(detail::ct_shape_is(l.scale, {gr, gc}, a.strategy == "channel" ? "a per-channel weight_scale" : a.strategy == "group" ? "a per-group weight_scale"
                                                                                                                                     : "a per-block weight_scale"));
  }
  l.zero_point = c.find(module + ".weight_zero_point");
  if (l.zero_point.tensor != nullptr && l.zero_point.tensor->numel() != l.scale.tensor->numel())
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" has %lld elements; the weight has %lld scales", l.zero_point.file->path().c_str(),
                         l.zero_point.tensor->name.c_str(), static_cast<long long>(l.zero_point.tensor->numel()),
                         static_cast<long long>(l.scale.tensor->numel()));
  out = l;
  return {};
}

/// Reads module `module`'s float-quantized weight into `out` (fp8_e4m3_block with the strategy's
/// tile, float32 scales; the codes are copied, BF16 / F16 scales widened exactly). Errors (naming
/// file and tensor; `out` unchanged): what check_ct_fp8_layout rejects, a weight_zero_point with a
/// nonzero byte (lowbit reads symmetric FP8 only), and unless opt.allow_nonfinite a non-finite
/// scale or a NaN weight code (first index named). A zero scale decodes its elements to ±0.
inline status load_ct_fp8(const checkpoint& c, const std::string& module, const ct_quant_args& a, scaled_tensor& out, const ct_load_options& opt = {}) {
  ct_layout l;
  LOWBIT_TRY(check_ct_fp8_layout(c, module, a, l));
  if (l.zero_point.tensor != nullptr) {
    const std::uint8_t* z = l.zero_point.file->data(*l.zero_point.tensor);
    for (std::uint64_t i = 0; i < l.zero_point.tensor->nbytes(); ++i)
      if (z[i] != 0)
        return status::error(errc::unsupported, "%s: tensor \"%.100s\" holds a nonzero zero point; lowbit reads symmetric FP8 only", l.zero_point.file->path().c_str(),
                             l.zero_point.tensor->name.c_str());
  }
  scaled_params p;
  p.fmt = scaled_format::fp8_e4m3_block;
  p.gran = granularity::per_tile(l.tile.rows, l.tile.cols);
  scaled_tensor t;
  LOWBIT_TRY(scaled_tensor::allocate_for_overwrite({l.rows, l.cols}, opt.source, p, t));
  std::memcpy(t.codes(), l.weight.file->data(*l.weight.tensor), static_cast<std::size_t>(l.rows * l.cols));
  const std::int64_t tiles = t.grid().tiles();
  float* s = t.scales_f32();
  for (std::int64_t i = 0; i < tiles; ++i) s[i] = detail::ct_float_at(l.scale, i);
  if (!opt.allow_nonfinite) {
    for (std::int64_t i = 0; i < tiles; ++i)
      if (!std::isfinite(s[i]))
        return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": scale %lld is %s; scales must be finite", l.scale.file->path().c_str(),
                             l.scale.tensor->name.c_str(), static_cast<long long>(i), std::isnan(s[i]) ? "NaN" : "infinite");
    const std::uint8_t* q = t.codes();
    for (std::int64_t i = 0; i < l.rows * l.cols; ++i)
      if ((q[i] & 0x7F) == 0x7F)
        return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": element [%lld, %lld] is the NaN code 0x%02X", l.weight.file->path().c_str(),
                             l.weight.tensor->name.c_str(), static_cast<long long>(i / l.cols), static_cast<long long>(i % l.cols), q[i]);
  }
  out = std::move(t);
  return {};
}

/// The engine's fp8_e4m3_block quantization of the row-major [N, K] tensor `data` (dtype `dt`)
/// with the tile of `a`'s strategy: per tile `s = f32(amax / 448)`, codes `sat(x / s)` (RNE).
/// compressed-tensors computes the same `amax / 448` but clamps it to >= 2^-23 (only tiles with
/// amax below about 5.3e-5 differ) and stores it in the model's dtype; lowbit stores float32. A
/// zero tile stores scale 0 (codes +0). Errors: not 2-D or a zero dimension, `a` not FP8,
/// non-finite input unless opt.allow_nonfinite. `out` unchanged on error.
inline status quantize_ct_fp8(const void* data, dtype dt, const std::vector<std::int64_t>& shape, const ct_quant_args& a, scaled_tensor& out,
                              const host::options& opt = {}) {
  if (shape.size() != 2 || shape[0] < 1 || shape[1] < 1)
    return status::error(errc::invalid_argument, "quantize_ct_fp8: shape %s is not 2-D [N, K] with N, K >= 1", detail::shape_text(shape).c_str());
  LOWBIT_TRY(check_ct_fp8_args(a, "quantize_ct_fp8"));
  tile_shape t;
  LOWBIT_TRY(detail::ct_tile_of(a, shape[0], shape[1], "quantize_ct_fp8", t));
  scaled_params p;
  p.fmt = scaled_format::fp8_e4m3_block;
  p.gran = granularity::per_tile(t.rows, t.cols);
  p.options = opt;
  return quantize(data, dt, shape, p, out);
}

namespace detail {
inline status ct_fp8_writable(const std::string& module, const scaled_tensor& q, const ct_quant_args& a) {
  LOWBIT_TRY(check_ct_fp8_args(a, "tensor \"" + module + ".weight\""));
  if (q.fmt() != scaled_format::fp8_e4m3_block || q.shape().size() != 2 || q.rows() < 1 || q.cols() < 1)
    return status::error(errc::invalid_argument, "tensor \"%.100s.weight\": a %s tensor of shape %s is not a 2-D fp8_e4m3_block weight", module.c_str(),
                         info(q.fmt()).name, shape_text(q.shape()).c_str());
  tile_shape t;
  LOWBIT_TRY(ct_tile_of(a, q.rows(), q.cols(), module, t));
  if (q.tile().rows != t.rows || q.tile().cols != t.cols)
    return status::error(errc::invalid_argument, "tensor \"%.100s.weight\": tile %lld x %lld is not the %s strategy's %lld x %lld", module.c_str(),
                         static_cast<long long>(q.tile().rows), static_cast<long long>(q.tile().cols), a.strategy.c_str(), static_cast<long long>(t.rows),
                         static_cast<long long>(t.cols));
  return {};
}
}  // namespace detail

/// Appends the entries of module `module`'s weight `q` under `a` to `out`: `module.weight`
/// F8_E4M3 [N, K], then `module.weight_scale` F32 ([1] per tensor, else the scale grid). Errors:
/// `q` not a 2-D fp8_e4m3_block tensor whose tile is `a`'s strategy's, `a` not FP8.
inline status ct_fp8_entries(const std::string& module, const scaled_tensor& q, const ct_quant_args& a, std::vector<tensor_entry>& out) {
  LOWBIT_TRY(detail::ct_fp8_writable(module, q, a));
  out.push_back({module + ".weight", st_dtype::F8_E4M3, q.shape()});
  if (a.strategy == "tensor") out.push_back({module + ".weight_scale", st_dtype::F32, {1}});
  else out.push_back({module + ".weight_scale", st_dtype::F32, {q.grid().grid_rows(), q.grid().grid_cols()}});
  return {};
}

/// Writes `q`'s codes then its scales (the bytes of the entries ct_fp8_entries made).
inline status write_ct_fp8(safetensors_writer& w, const scaled_tensor& q) {
  if (q.fmt() != scaled_format::fp8_e4m3_block) return status::error(errc::invalid_argument, "write_ct_fp8: format %s is not fp8_e4m3_block", info(q.fmt()).name);
  LOWBIT_TRY(w.write(q.codes(), static_cast<std::size_t>(q.code_bytes())));
  return w.write(q.scale_bytes(), static_cast<std::size_t>(q.grid().tiles() * 4));
}

// ---------------------------------------------------------------------------------------------
// nvfp4-pack-quantized: e2m1 pairs in bytes, e4m3 scale per 1 x 16, float32 global scale.
// ---------------------------------------------------------------------------------------------

/// Checks `a` describes an NVFP4 weight: type float, 4 bits, symmetric, tensor_group with
/// group_size 16 (the group strategy with 16 is accepted too), not fully dynamic.
inline status check_ct_nvfp4_args(const ct_quant_args& a, const std::string& where) {
  if (a.type != "float" || a.num_bits != 4 || !a.symmetric || (a.strategy != "tensor_group" && a.strategy != "group") || a.group_size != 16 ||
      a.dynamic == "true")
    return status::error(errc::unsupported, "%s: weights are %s%d %s group %lld%s; nvfp4-pack-quantized weights are symmetric float 4-bit tensor_group 16",
                         where.c_str(), a.type.c_str(), a.num_bits, a.strategy.c_str(), static_cast<long long>(a.group_size), a.dynamic == "true" ? " dynamic" : "");
  return {};
}

/// Checks the headers of module `module`'s NVFP4 weight (no data read): `module.weight_packed` U8
/// [N, K / 2] (N, K / 2 >= 1), `module.weight_scale` F8_E4M3 [N, ceil(K / 16)],
/// `module.weight_global_scale` F32 [1] (or []). Errors name file and tensor.
inline status check_ct_nvfp4_layout(const checkpoint& c, const std::string& module, const ct_quant_args& a, ct_layout& out) {
  const std::string weight = module + ".weight_packed";
  LOWBIT_TRY(check_ct_nvfp4_args(a, c.path() + ": weight \"" + weight + "\""));
  ct_layout l;
  LOWBIT_TRY(detail::ct_need(c, weight, weight, l.weight));
  LOWBIT_TRY(detail::ct_dtype_in(l.weight, {st_dtype::U8}, "an nvfp4 weight_packed"));
  LOWBIT_TRY(detail::ct_check_weight_2d(l.weight, "an nvfp4 weight_packed"));
  l.rows = l.weight.tensor->shape[0];
  l.cols = l.weight.tensor->shape[1] * 2;
  l.tile = {1, 16};
  LOWBIT_TRY(detail::ct_need(c, module + ".weight_scale", weight, l.scale));
  LOWBIT_TRY(detail::ct_dtype_in(l.scale, {st_dtype::F8_E4M3}, "an nvfp4 weight_scale"));
  LOWBIT_TRY(detail::ct_shape_is(l.scale, {l.rows, (l.cols + 15) / 16}, "an nvfp4 weight_scale"));
  LOWBIT_TRY(detail::ct_need(c, module + ".weight_global_scale", weight, l.global_scale));
  LOWBIT_TRY(detail::ct_dtype_in(l.global_scale, {st_dtype::F32}, "weight_global_scale"));
  if (!l.global_scale.tensor->shape.empty()) LOWBIT_TRY(detail::ct_shape_is(l.global_scale, {1}, "weight_global_scale"));
  out = l;
  return {};
}

/// Reads module `module`'s NVFP4 weight into `out` (nvfp4, nvfp4_global::inverse, tile 1 x 16: a
/// copy of the three tensors). Errors (naming file and tensor; `out` unchanged): what
/// check_ct_nvfp4_layout rejects and, unless opt.allow_nonfinite, an e4m3 scale holding the NaN
/// code (first index named) or a global scale that is not finite and > 0. A zero tile scale
/// decodes its elements to ±0.
inline status load_ct_nvfp4(const checkpoint& c, const std::string& module, const ct_quant_args& a, scaled_tensor& out, const ct_load_options& opt = {}) {
  ct_layout l;
  LOWBIT_TRY(check_ct_nvfp4_layout(c, module, a, l));
  scaled_params p;
  p.fmt = scaled_format::nvfp4;
  p.gran = granularity::per_tile(1, 16);
  p.nvfp4 = quant::nvfp4_global::inverse;
  scaled_tensor t;
  LOWBIT_TRY(scaled_tensor::allocate_for_overwrite({l.rows, l.cols}, opt.source, p, t));
  std::memcpy(t.codes(), l.weight.file->data(*l.weight.tensor), static_cast<std::size_t>(l.rows * l.cols / 2));
  const std::int64_t tiles = t.grid().tiles();
  std::memcpy(t.scale_bytes(), l.scale.file->data(*l.scale.tensor), static_cast<std::size_t>(tiles));
  const float g = detail::ct_float_at(l.global_scale, 0);
  if (!opt.allow_nonfinite) {
    if (!(std::isfinite(g) && g > 0.0f))
      return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" is %g; the global scale must be finite and > 0", l.global_scale.file->path().c_str(),
                           l.global_scale.tensor->name.c_str(), static_cast<double>(g));
    const std::uint8_t* s = t.scale_bytes();
    for (std::int64_t i = 0; i < tiles; ++i)
      if ((s[i] & 0x7F) == 0x7F)
        return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": scale [%lld, %lld] is the NaN code 0x%02X", l.scale.file->path().c_str(),
                             l.scale.tensor->name.c_str(), static_cast<long long>(i / t.grid().grid_cols()), static_cast<long long>(i % t.grid().grid_cols()), s[i]);
  }
  t.set_global_scale(g);
  out = std::move(t);
  return {};
}

/// A zero-copy view of module `module`'s weight in `c`'s mapping, for the layouts whose bytes are
/// usable as they are: nvfp4-pack-quantized (codes and e4m3 scales pointed at, the global scale
/// copied into the view) and float-quantized with F32 scales (fp8_e4m3_block with the strategy's
/// tile). Valid while `c` is open; for reading only (the mapping is read-only). The header checks
/// of check_ct_nvfp4_layout / check_ct_fp8_layout apply; the values are not scanned (NaN codes and
/// scales decode to NaN by IEEE arithmetic; the load_ct_* functions check them). Errors: those
/// checks; BF16 / F16 FP8 scales and a weight_zero_point (errc::unsupported: load_ct_fp8 widens
/// and checks them); `a` of another layout. `out` unchanged on error.
inline status view_ct_weight(const checkpoint& c, const std::string& module, const ct_quant_args& a, host::scaled_view& out) {
  ct_layout l;
  host::scaled_view v;
  if (a.type == "float" && a.num_bits == 4) {
    LOWBIT_TRY(check_ct_nvfp4_layout(c, module, a, l));
    v.fmt = scaled_format::nvfp4;
    v.nvfp4 = quant::nvfp4_global::inverse;
    v.global_scale = detail::ct_float_at(l.global_scale, 0);
  } else {
    LOWBIT_TRY(check_ct_fp8_layout(c, module, a, l));
    if (l.scale.tensor->dtype != st_dtype::F32 || l.zero_point.tensor != nullptr)
      return status::error(errc::unsupported, "%s: module \"%.100s\": %s weight_scale%s cannot be viewed as it is; load_ct_fp8 reads it", c.path().c_str(),
                           module.c_str(), info(l.scale.tensor->dtype).name, l.zero_point.tensor != nullptr ? " with a weight_zero_point" : "");
    v.fmt = scaled_format::fp8_e4m3_block;
  }
  v.rows = l.rows;
  v.cols = l.cols;
  v.tile = l.tile;
  v.codes = const_cast<std::uint8_t*>(l.weight.file->data(*l.weight.tensor));
  v.scales = const_cast<std::uint8_t*>(l.scale.file->data(*l.scale.tensor));
  out = v;
  return {};
}

/// The engine's NVFP4 quantization (nvfp4_global::inverse, tile 1 x 16) of the row-major [N, K]
/// tensor `data`: `g = 2688 / amax_tensor` (1 for an all-zero tensor), tile scale
/// `b = e4m3(clamp(f32(amax / 6) * g, 2^-6, 448))`, codes `sat(x * f32(g / b))` in e2m1 (RNE).
/// compressed-tensors' rule differs only at the edges: it clamps the tile scale to [-448, 448]
/// without a lower end (a zero tile stores 0.125, a tiny one an e4m3 subnormal; lowbit 2^-6), its
/// all-zero tensor gets g = Inf, and it divides `x / f32(b / g)` where lowbit multiplies. Errors:
/// not 2-D, K odd, a zero dimension, `a` not NVFP4, non-finite input unless opt.allow_nonfinite.
inline status quantize_ct_nvfp4(const void* data, dtype dt, const std::vector<std::int64_t>& shape, const ct_quant_args& a, scaled_tensor& out,
                                const host::options& opt = {}) {
  if (shape.size() != 2 || shape[0] < 1 || shape[1] < 2 || shape[1] % 2 != 0)
    return status::error(errc::invalid_argument, "quantize_ct_nvfp4: shape %s is not 2-D [N, K] with N >= 1 and K even >= 2", detail::shape_text(shape).c_str());
  LOWBIT_TRY(check_ct_nvfp4_args(a, "quantize_ct_nvfp4"));
  scaled_params p;
  p.fmt = scaled_format::nvfp4;
  p.gran = granularity::per_tile(1, 16);
  p.nvfp4 = quant::nvfp4_global::inverse;
  p.options = opt;
  return quantize(data, dt, shape, p, out);
}

/// Appends module `module`'s NVFP4 entries to `out`: `weight_packed` U8 [N, K / 2],
/// `weight_scale` F8_E4M3 [N, ceil(K / 16)], `weight_global_scale` F32 [1]. Errors: `q` not a 2-D
/// nvfp4 tensor with tile 1 x 16 and the inverse convention.
inline status ct_nvfp4_entries(const std::string& module, const scaled_tensor& q, std::vector<tensor_entry>& out) {
  if (q.fmt() != scaled_format::nvfp4 || q.shape().size() != 2 || q.rows() < 1 || q.cols() < 2 || q.cols() % 2 != 0 || q.tile().rows != 1 ||
      q.tile().cols != 16 || q.nvfp4_convention() != quant::nvfp4_global::inverse)
    return status::error(errc::invalid_argument, "tensor \"%.100s.weight\": a %s tensor of shape %s (tile %lld x %lld) is not a 2-D nvfp4 weight with 1 x 16 tiles and the inverse global scale",
                         module.c_str(), info(q.fmt()).name, detail::shape_text(q.shape()).c_str(), static_cast<long long>(q.tile().rows),
                         static_cast<long long>(q.tile().cols));
  out.push_back({module + ".weight_packed", st_dtype::U8, {q.rows(), q.cols() / 2}});
  out.push_back({module + ".weight_scale", st_dtype::F8_E4M3, {q.grid().grid_rows(), q.grid().grid_cols()}});
  out.push_back({module + ".weight_global_scale", st_dtype::F32, {1}});
  return {};
}

/// Writes `q`'s codes, tile scales and global scale (the bytes of ct_nvfp4_entries' entries).
inline status write_ct_nvfp4(safetensors_writer& w, const scaled_tensor& q) {
  if (q.fmt() != scaled_format::nvfp4) return status::error(errc::invalid_argument, "write_ct_nvfp4: format %s is not nvfp4", info(q.fmt()).name);
  LOWBIT_TRY(w.write(q.codes(), static_cast<std::size_t>(q.code_bytes())));
  LOWBIT_TRY(w.write(q.scale_bytes(), static_cast<std::size_t>(q.grid().tiles())));
  const float g = q.global_scale();
  return w.write(&g, 4);
}

/// A weight ready to be written: its entries and the bytes of each, in order.
struct ct_encoded {
  std::vector<tensor_entry> entries;
  std::vector<std::vector<std::uint8_t>> data;  ///< data[i] holds entries[i].nbytes() bytes
};

// ---------------------------------------------------------------------------------------------
// pack-quantized: signed integer codes of 1..8 bits packed into int32 words, a scale per
// tensor / channel / group, and (asymmetric) packed zero points. lowbit's engine has no
// integer-with-zero-point format, so these read into ct_int_weight.
// ---------------------------------------------------------------------------------------------

/// An integer weight of the pack-quantized or int-quantized layout, unpacked: `w[n, k] = (q[n, k]
/// - z[n, j]) * s[n, j]` with `j = k / group_cols` (one scale per tensor: row 0, and every row
/// uses it).
struct ct_int_weight {
  std::int64_t rows = 0, cols = 0;   ///< N, K
  int num_bits = 4;
  std::string strategy = "group";    ///< tensor, channel or group
  std::int64_t group_cols = 0;       ///< columns a scale covers: K (tensor, channel) or group_size
  std::vector<std::int8_t> codes;    ///< row-major [N, K], each in [-2^(b-1), 2^(b-1) - 1]
  std::vector<float> scales;         ///< row-major [scale_rows, groups]: [1, 1], [N, 1] or [N, ceil(K / g)]
  std::vector<std::int8_t> zero_points;  ///< same count as scales; empty = symmetric (all 0)
  st_dtype scale_dtype = st_dtype::BF16;  ///< what the file holds / what the writer stores
  std::int64_t scale_rows() const noexcept { return strategy == "tensor" ? 1 : rows; }
  std::int64_t groups() const noexcept { return strategy == "tensor" || strategy == "channel" ? 1 : (cols + group_cols - 1) / group_cols; }
};

/// Checks `a` describes a pack-quantized weight lowbit reads: type int, 1..8 bits, strategy
/// tensor, channel or group, not dynamic.
inline status check_ct_int_args(const ct_quant_args& a, const std::string& where) {
  if (a.type != "int" || a.num_bits < 1 || a.num_bits > 8 || a.dynamic != "false")
    return status::error(errc::unsupported, "%s: weights are %s%d%s; pack-quantized weights are static int with 1 to 8 bits", where.c_str(), a.type.c_str(),
                         a.num_bits, a.dynamic != "false" ? " dynamic" : "");
  if (a.strategy != "tensor" && a.strategy != "channel" && a.strategy != "group")
    return status::error(errc::unsupported, "%s: weight strategy %s; lowbit reads integer weights per tensor, channel or group", where.c_str(), a.strategy.c_str());
  if (a.strategy == "group" && (a.group_size < 1 || a.group_size > (std::int64_t{1} << 40)))
    return status::error(errc::invalid_argument, "%s: group_size %lld must be >= 1", where.c_str(), static_cast<long long>(a.group_size));
  return {};
}

namespace detail {
/// Signed codes from compressed-tensors' pack_to_int32: `32 / bits` codes a little-endian word,
/// code i of a word in bits [i * bits, (i + 1) * bits), stored as `q + 2^(bits - 1)`.
inline std::int8_t ct_unpack(const std::uint8_t* words, std::int64_t word, int index, int bits) {
  const std::uint8_t* p = words + 4 * word;
  const std::uint32_t v = static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 | static_cast<std::uint32_t>(p[2]) << 16 |
                          static_cast<std::uint32_t>(p[3]) << 24;
  const std::uint32_t u = (v >> (index * bits)) & ((1u << bits) - 1u);
  return static_cast<std::int8_t>(static_cast<int>(u) - (1 << (bits - 1)));
}
inline void ct_pack(std::uint8_t* words, std::int64_t word, int index, int bits, int q) {
  const std::uint32_t u = static_cast<std::uint32_t>(q + (1 << (bits - 1))) << (index * bits);
  std::uint8_t* p = words + 4 * word;
  for (int b = 0; b < 4; ++b) p[b] = static_cast<std::uint8_t>(p[b] | static_cast<std::uint8_t>(u >> (8 * b)));
}
/// torch.round: to nearest, ties to even (independent of the floating-point environment).
inline double round_half_even(double x) {
  double r = std::floor(x + 0.5);
  if (r - x == 0.5 && std::fmod(r, 2.0) != 0.0) r -= 1.0;
  return r;
}
}  // namespace detail

/// Checks the headers of module `module`'s pack-quantized weight against `a` (no data read):
/// `weight_shape` I64 / I32 [2]; `weight_packed` I32 [N, ceil(K / (32 / b))]; `weight_scale`
/// F32 / BF16 / F16 of [1] (or []), [N, 1] or [N, ceil(K / g)]; for asymmetric channel / group
/// weights `weight_zero_point` I32 [ceil(N / (32 / b)), groups] (packed along dim 0), for
/// asymmetric tensor weights I8 [1]; no `weight_g_idx` (activation-order permutations are not
/// supported). Reads the two weight_shape values (N, K >= 1). Errors name file and tensor.
inline status check_ct_packed_layout(const checkpoint& c, const std::string& module, const ct_quant_args& a, ct_layout& out) {
  const std::string weight = module + ".weight_packed";
  LOWBIT_TRY(check_ct_int_args(a, c.path() + ": weight \"" + weight + "\""));
  ct_layout l;
  checkpoint::location shp;
  LOWBIT_TRY(detail::ct_need(c, module + ".weight_shape", weight, shp));
  LOWBIT_TRY(detail::ct_dtype_in(shp, {st_dtype::I64, st_dtype::I32}, "weight_shape"));
  LOWBIT_TRY(detail::ct_shape_is(shp, {2}, "weight_shape"));
  std::int64_t nk[2];
  for (int i = 0; i < 2; ++i) {
    const std::uint8_t* p = shp.file->data(*shp.tensor) + (shp.tensor->dtype == st_dtype::I64 ? 8 : 4) * i;
    if (shp.tensor->dtype == st_dtype::I64) std::memcpy(&nk[i], p, 8);
    else {
      std::int32_t v;
      std::memcpy(&v, p, 4);
      nk[i] = v;
    }
    if (nk[i] < 1 || nk[i] > (std::int64_t{1} << 40))
      return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": dimension %d is %lld, not in [1, 2^40]", shp.file->path().c_str(), shp.tensor->name.c_str(), i,
                           static_cast<long long>(nk[i]));
  }
  l.rows = nk[0];
  l.cols = nk[1];
  const std::int64_t pf = 32 / a.num_bits;
  LOWBIT_TRY(detail::ct_need(c, weight, weight, l.weight));
  LOWBIT_TRY(detail::ct_dtype_in(l.weight, {st_dtype::I32}, "a pack-quantized weight_packed"));
  LOWBIT_TRY(detail::ct_shape_is(l.weight, {l.rows, (l.cols + pf - 1) / pf}, "weight_shape's [N, K] packed 32 / num_bits a word"));
  LOWBIT_TRY(detail::ct_tile_of(a, l.rows, l.cols, weight, l.tile));
  LOWBIT_TRY(detail::ct_need(c, module + ".weight_scale", weight, l.scale));
  LOWBIT_TRY(detail::ct_dtype_in(l.scale, {st_dtype::F32, st_dtype::BF16, st_dtype::F16}, "weight_scale"));
  const std::int64_t groups = a.strategy == "group" ? (l.cols + a.group_size - 1) / a.group_size : 1;
  if (a.strategy == "tensor") {
    if (!l.scale.tensor->shape.empty()) LOWBIT_TRY(detail::ct_shape_is(l.scale, {1}, "a per-tensor weight_scale"));
  } else {
    LOWBIT_TRY(detail::ct_shape_is(l.scale, {l.rows, groups}, a.strategy == "channel" ? "a per-channel weight_scale" : "a per-group weight_scale"));
  }
  if (const auto g = c.find(module + ".weight_g_idx"); g.tensor != nullptr)
    return status::error(errc::unsupported, "%s: tensor \"%.100s\": activation-order group indices are not supported", g.file->path().c_str(), g.tensor->name.c_str());
  l.zero_point = c.find(module + ".weight_zero_point");
  if (!a.symmetric) {
    if (l.zero_point.tensor == nullptr)
      return status::error(errc::invalid_argument, "%s: tensor \"%.100s.weight_zero_point\" (asymmetric weight \"%.100s\") is missing", c.path().c_str(), module.c_str(),
                           weight.c_str());
    if (a.strategy == "tensor") {
      LOWBIT_TRY(detail::ct_dtype_in(l.zero_point, {st_dtype::I8}, "a per-tensor weight_zero_point"));
      if (!l.zero_point.tensor->shape.empty()) LOWBIT_TRY(detail::ct_shape_is(l.zero_point, {1}, "a per-tensor weight_zero_point"));
    } else {
      LOWBIT_TRY(detail::ct_dtype_in(l.zero_point, {st_dtype::I32}, "a packed weight_zero_point"));
      LOWBIT_TRY(detail::ct_shape_is(l.zero_point, {(l.rows + pf - 1) / pf, groups}, "a weight_zero_point packed along dim 0"));
    }
  } else if (l.zero_point.tensor != nullptr) {
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": a symmetric weight has no zero point", l.zero_point.file->path().c_str(),
                         l.zero_point.tensor->name.c_str());
  }
  out = l;
  return {};
}

/// Reads module `module`'s pack-quantized weight into `out`, unpacked (codes and zero points
/// signed, scales widened to float32 exactly). Errors (naming file and tensor; `out` unchanged):
/// what check_ct_packed_layout rejects, a zero point outside [-2^(b-1), 2^(b-1) - 1] (I8 per
/// tensor), and unless opt.allow_nonfinite a non-finite scale (first index named). Padding bits
/// past K (and past N for zero points) are ignored. A zero scale decodes its group to zeros.
inline status load_ct_packed(const checkpoint& c, const std::string& module, const ct_quant_args& a, ct_int_weight& out, const ct_load_options& opt = {}) {
  ct_layout l;
  LOWBIT_TRY(check_ct_packed_layout(c, module, a, l));
  ct_int_weight w;
  w.rows = l.rows;
  w.cols = l.cols;
  w.num_bits = a.num_bits;
  w.strategy = a.strategy;
  w.group_cols = a.strategy == "group" ? a.group_size : l.cols;
  w.scale_dtype = l.scale.tensor->dtype;
  const int pf = 32 / a.num_bits;
  const std::int64_t words = l.weight.tensor->shape[1];
  const std::uint8_t* pw = l.weight.file->data(*l.weight.tensor);
  w.codes.resize(static_cast<std::size_t>(w.rows * w.cols));
  for (std::int64_t n = 0; n < w.rows; ++n)
    for (std::int64_t k = 0; k < w.cols; ++k)
      w.codes[static_cast<std::size_t>(n * w.cols + k)] = detail::ct_unpack(pw, n * words + k / pf, static_cast<int>(k % pf), a.num_bits);
  const std::int64_t ns = w.scale_rows() * w.groups();
  w.scales.resize(static_cast<std::size_t>(ns));
  for (std::int64_t i = 0; i < ns; ++i) w.scales[static_cast<std::size_t>(i)] = detail::ct_float_at(l.scale, i);
  if (!a.symmetric) {
    w.zero_points.resize(static_cast<std::size_t>(ns));
    const std::uint8_t* pz = l.zero_point.file->data(*l.zero_point.tensor);
    if (a.strategy == "tensor") {
      w.zero_points[0] = static_cast<std::int8_t>(pz[0]);
      const int lim = 1 << (a.num_bits - 1);
      if (w.zero_points[0] < -lim || w.zero_points[0] >= lim)
        return status::error(errc::invalid_argument, "%s: tensor \"%.100s\" is %d, outside the %d-bit range", l.zero_point.file->path().c_str(),
                             l.zero_point.tensor->name.c_str(), w.zero_points[0], a.num_bits);
    } else {
      const std::int64_t g = w.groups();
      for (std::int64_t n = 0; n < w.rows; ++n)
        for (std::int64_t j = 0; j < g; ++j)
          w.zero_points[static_cast<std::size_t>(n * g + j)] = detail::ct_unpack(pz, (n / pf) * g + j, static_cast<int>(n % pf), a.num_bits);
    }
  }
  if (!opt.allow_nonfinite)
    for (std::int64_t i = 0; i < ns; ++i)
      if (!std::isfinite(w.scales[static_cast<std::size_t>(i)]))
        return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": scale %lld is %s; scales must be finite", l.scale.file->path().c_str(),
                             l.scale.tensor->name.c_str(), static_cast<long long>(i), std::isnan(w.scales[static_cast<std::size_t>(i)]) ? "NaN" : "infinite");
  out = std::move(w);
  return {};
}

/// Reads module `module`'s int-quantized weight (compressed-tensors' naive integer layout, W8A8
/// INT8 checkpoints) into `out`: `module.weight` I8 [N, K] holding the signed codes as they are,
/// `module.weight_scale` F32 / BF16 / F16 of [1] (or []), [N, 1] or [N, ceil(K / g)], and for
/// asymmetric weights `module.weight_zero_point` I8 of the scale's shape (not packed); no
/// `weight_g_idx`. Errors (naming file and tensor; `out` unchanged): a tensor missing, a wrong
/// dtype or shape, a weight with a zero dimension, a code or zero point outside the b-bit range
/// (compressed-tensors clamps to it), a zero point on a symmetric weight, and unless
/// opt.allow_nonfinite a non-finite scale. `dequantize` gives `f32(q - z) * s`.
inline status load_ct_int_quantized(const checkpoint& c, const std::string& module, const ct_quant_args& a, ct_int_weight& out, const ct_load_options& opt = {}) {
  const std::string weight = module + ".weight";
  LOWBIT_TRY(check_ct_int_args(a, c.path() + ": weight \"" + weight + "\""));
  checkpoint::location wl, sl;
  LOWBIT_TRY(detail::ct_need(c, weight, weight, wl));
  LOWBIT_TRY(detail::ct_dtype_in(wl, {st_dtype::I8}, "an int-quantized weight"));
  LOWBIT_TRY(detail::ct_check_weight_2d(wl, "an int-quantized weight"));
  ct_int_weight w;
  w.rows = wl.tensor->shape[0];
  w.cols = wl.tensor->shape[1];
  w.num_bits = a.num_bits;
  w.strategy = a.strategy;
  w.group_cols = a.strategy == "group" ? a.group_size : w.cols;
  const std::int64_t g = w.groups();
  LOWBIT_TRY(detail::ct_need(c, module + ".weight_scale", weight, sl));
  LOWBIT_TRY(detail::ct_dtype_in(sl, {st_dtype::F32, st_dtype::BF16, st_dtype::F16}, "weight_scale"));
  const std::vector<std::int64_t> sshape = a.strategy == "tensor" ? std::vector<std::int64_t>{1} : std::vector<std::int64_t>{w.rows, g};
  if (!(a.strategy == "tensor" && sl.tensor->shape.empty())) LOWBIT_TRY(detail::ct_shape_is(sl, sshape, "this strategy's weight_scale"));
  w.scale_dtype = sl.tensor->dtype;
  if (const auto gi = c.find(module + ".weight_g_idx"); gi.tensor != nullptr)
    return status::error(errc::unsupported, "%s: tensor \"%.100s\": activation-order group indices are not supported", gi.file->path().c_str(), gi.tensor->name.c_str());
  const auto zl = c.find(module + ".weight_zero_point");
  if (a.symmetric && zl.tensor != nullptr)
    return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": a symmetric weight has no zero point", zl.file->path().c_str(), zl.tensor->name.c_str());
  if (!a.symmetric) {
    if (zl.tensor == nullptr)
      return status::error(errc::invalid_argument, "%s: tensor \"%.100s.weight_zero_point\" (asymmetric weight \"%.100s\") is missing", c.path().c_str(), module.c_str(),
                           weight.c_str());
    LOWBIT_TRY(detail::ct_dtype_in(zl, {st_dtype::I8}, "an int-quantized weight_zero_point"));
    if (!(a.strategy == "tensor" && zl.tensor->shape.empty())) LOWBIT_TRY(detail::ct_shape_is(zl, sshape, "this strategy's weight_zero_point"));
  }
  const int lim = 1 << (a.num_bits - 1);
  const auto* q = reinterpret_cast<const std::int8_t*>(wl.file->data(*wl.tensor));
  w.codes.assign(q, q + w.rows * w.cols);
  for (std::int64_t i = 0; i < w.rows * w.cols; ++i)
    if (q[i] < -lim || q[i] >= lim)
      return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": element [%lld, %lld] is %d, outside the %d-bit range", wl.file->path().c_str(),
                           wl.tensor->name.c_str(), static_cast<long long>(i / w.cols), static_cast<long long>(i % w.cols), q[i], a.num_bits);
  const std::int64_t ns = (a.strategy == "tensor" ? 1 : w.rows) * g;
  w.scales.resize(static_cast<std::size_t>(ns));
  for (std::int64_t i = 0; i < ns; ++i) w.scales[static_cast<std::size_t>(i)] = detail::ct_float_at(sl, i);
  if (!a.symmetric) {
    const auto* z = reinterpret_cast<const std::int8_t*>(zl.file->data(*zl.tensor));
    w.zero_points.assign(z, z + ns);
    for (std::int64_t i = 0; i < ns; ++i)
      if (z[i] < -lim || z[i] >= lim)
        return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": zero point %lld is %d, outside the %d-bit range", zl.file->path().c_str(),
                             zl.tensor->name.c_str(), static_cast<long long>(i), z[i], a.num_bits);
  }
  if (!opt.allow_nonfinite)
    for (std::int64_t i = 0; i < ns; ++i)
      if (!std::isfinite(w.scales[static_cast<std::size_t>(i)]))
        return status::error(errc::invalid_argument, "%s: tensor \"%.100s\": scale %lld is %s; scales must be finite", sl.file->path().c_str(), sl.tensor->name.c_str(),
                             static_cast<long long>(i), std::isnan(w.scales[static_cast<std::size_t>(i)]) ? "NaN" : "infinite");
  out = std::move(w);
  return {};
}

/// `w` as float32, row-major [N, K]: `f32(q - z) * s` (exact before the one rounding of the
/// product; compressed-tensors computes in the scale's dtype, i.e. rounds that product to BF16
/// / F16 when the scales are). Non-finite scales give IEEE results. Error: `w`'s sizes disagree.
inline status dequantize(const ct_int_weight& w, std::vector<float>& out) {
  if (w.rows < 1 || w.cols < 1 || w.group_cols < 1 || w.codes.size() != static_cast<std::size_t>(w.rows * w.cols) ||
      w.scales.size() != static_cast<std::size_t>(w.scale_rows() * w.groups()) || (!w.zero_points.empty() && w.zero_points.size() != w.scales.size()))
    return status::error(errc::invalid_argument, "ct_int_weight: %lld x %lld with %zu codes, %zu scales, %zu zero points do not agree", static_cast<long long>(w.rows),
                         static_cast<long long>(w.cols), w.codes.size(), w.scales.size(), w.zero_points.size());
  std::vector<float> v(w.codes.size());
  const std::int64_t g = w.groups();
  for (std::int64_t n = 0; n < w.rows; ++n)
    for (std::int64_t k = 0; k < w.cols; ++k) {
      const std::size_t si = static_cast<std::size_t>((w.strategy == "tensor" ? 0 : n * g) + (g == 1 ? 0 : k / w.group_cols));
      const int z = w.zero_points.empty() ? 0 : w.zero_points[si];
      v[static_cast<std::size_t>(n * w.cols + k)] = static_cast<float>(w.codes[static_cast<std::size_t>(n * w.cols + k)] - z) * w.scales[si];
    }
  out = std::move(v);
  return {};
}

/// compressed-tensors' integer quantization (calculate_qparams + _quantize with a min-max
/// observer) of the float32 row-major [N, K] `data` under `a`, in float32 with the scales rounded
/// to `scale_dtype` (F32, BF16 or F16) before the codes are computed (so the stored scale is the
/// one that dequantizes them). Per group of `a`'s strategy, `lo = min(min x, 0)`, `hi = max(max
/// x, 0)`, `qmin = -2^(b-1)`, `qmax = 2^(b-1) - 1`:
/// - symmetric: `s = max(-lo, hi) / ((2^b - 1) / 2)` (amax / 7.5 for 4 bits), `z = 0`;
/// - asymmetric: `s = (hi - lo) / (2^b - 1)`, `z = round(clamp(qmin - lo / s, qmin, qmax))`;
/// then `s = max(s, 2^-23)` (a zero group gets 2^-23, float32 eps; for asymmetric weights the
/// clamp comes before z, as in compressed-tensors) and `q = round(clamp(x / s + z, qmin, qmax))`,
/// round = half to even (torch.round). compressed-tensors computes these in the model's dtype
/// (usually BF16), so a BF16 model may differ from this float32 arithmetic at rounding ties. A
/// partial last group (K not a multiple of group_size; compressed-tensors refuses it) uses its
/// own columns. Errors: not 2-D or a zero dimension, `a` not an int weight of a supported
/// strategy, a scale dtype other than the three, non-finite input (errc::non_finite, first
/// index named), a scale that overflows F16. `out` unchanged on error.
inline status quantize_ct_int(const float* data, const std::vector<std::int64_t>& shape, const ct_quant_args& a, st_dtype scale_dtype, ct_int_weight& out) {
  if (shape.size() != 2 || shape[0] < 1 || shape[1] < 1)
    return status::error(errc::invalid_argument, "quantize_ct_int: shape %s is not 2-D [N, K] with N, K >= 1", detail::shape_text(shape).c_str());
  LOWBIT_TRY(check_ct_int_args(a, "quantize_ct_int"));
  if (scale_dtype != st_dtype::F32 && scale_dtype != st_dtype::BF16 && scale_dtype != st_dtype::F16)
    return status::error(errc::invalid_argument, "quantize_ct_int: scale dtype %s is not F32, BF16 or F16", info(scale_dtype).name);
  ct_int_weight w;
  w.rows = shape[0];
  w.cols = shape[1];
  w.num_bits = a.num_bits;
  w.strategy = a.strategy;
  w.group_cols = a.strategy == "group" ? a.group_size : w.cols;
  w.scale_dtype = scale_dtype;
  for (std::int64_t i = 0; i < w.rows * w.cols; ++i)
    if (!std::isfinite(data[i]))
      return status::error(errc::non_finite, "quantize_ct_int: element [%lld, %lld] is not finite", static_cast<long long>(i / w.cols), static_cast<long long>(i % w.cols));
  const std::int64_t g = w.groups(), sr = w.scale_rows();
  const float qmin = -static_cast<float>(1 << (a.num_bits - 1)), qmax = static_cast<float>((1 << (a.num_bits - 1)) - 1);
  const float range = static_cast<float>((1 << a.num_bits) - 1);
  w.scales.resize(static_cast<std::size_t>(sr * g));
  if (!a.symmetric) w.zero_points.resize(w.scales.size());
  w.codes.resize(static_cast<std::size_t>(w.rows * w.cols));
  const auto to_dtype = [&](float s) {
    if (scale_dtype == st_dtype::BF16) return bf16_bits_to_float(float_to_bf16_bits(s));
    if (scale_dtype == st_dtype::F16) return f16_bits_to_float(float_to_f16_bits(s));
    return s;
  };
  for (std::int64_t r = 0; r < sr; ++r)
    for (std::int64_t j = 0; j < g; ++j) {
      const std::int64_t r0 = a.strategy == "tensor" ? 0 : r, r1 = a.strategy == "tensor" ? w.rows : r + 1;
      const std::int64_t c0 = j * w.group_cols, c1 = std::min(w.cols, c0 + w.group_cols);
      float lo = 0.0f, hi = 0.0f;
      for (std::int64_t n = r0; n < r1; ++n)
        for (std::int64_t k = c0; k < c1; ++k) {
          lo = std::min(lo, data[n * w.cols + k]);
          hi = std::max(hi, data[n * w.cols + k]);
        }
      float s = a.symmetric ? std::max(-lo, hi) / (range / 2.0f) : (hi - lo) / range;
      s = std::max(s, 1.1920929e-07f);
      s = to_dtype(s);
      if (!std::isfinite(s)) return status::error(errc::invalid_argument, "quantize_ct_int: scale %lld overflows %s", static_cast<long long>(r * g + j), info(scale_dtype).name);
      float z = 0.0f;
      if (!a.symmetric) {
        z = qmin - lo / s;
        z = static_cast<float>(detail::round_half_even(std::min(std::max(z, qmin), qmax)));
        w.zero_points[static_cast<std::size_t>(r * g + j)] = static_cast<std::int8_t>(z);
      }
      w.scales[static_cast<std::size_t>(r * g + j)] = s;
      for (std::int64_t n = r0; n < r1; ++n)
        for (std::int64_t k = c0; k < c1; ++k) {
          float v = data[n * w.cols + k] / s + z;
          v = std::min(std::max(v, qmin), qmax);
          w.codes[static_cast<std::size_t>(n * w.cols + k)] = static_cast<std::int8_t>(detail::round_half_even(v));
        }
    }
  out = std::move(w);
  return {};
}

/// Appends module `module`'s pack-quantized entries and bytes to `out`: `weight_packed` I32 [N,
/// ceil(K / (32 / b))], `weight_scale` (w.scale_dtype) [1] / [N, 1] / [N, groups], for
/// asymmetric weights `weight_zero_point` (I32 packed along dim 0, or I8 [1] per tensor), and
/// `weight_shape` I64 [2] (the order compressed-tensors' compressor produces them in). Errors:
/// `w`'s sizes disagree, a code or zero point outside the b-bit range, a scale dtype other than
/// F32 / BF16 / F16 (scales that the dtype cannot hold exactly are rounded to it).
inline status ct_packed_entries(const std::string& module, const ct_int_weight& w, ct_encoded& out) {
  std::vector<float> probe;
  LOWBIT_TRY(dequantize(w, probe));  // checks the sizes
  if (w.num_bits < 1 || w.num_bits > 8 || (w.scale_dtype != st_dtype::F32 && w.scale_dtype != st_dtype::BF16 && w.scale_dtype != st_dtype::F16))
    return status::error(errc::invalid_argument, "module \"%.100s\": %d bits with %s scales is not a pack-quantized weight", module.c_str(), w.num_bits,
                         info(w.scale_dtype).name);
  const int lim = 1 << (w.num_bits - 1);
  for (std::size_t i = 0; i < w.codes.size(); ++i)
    if (w.codes[i] < -lim || w.codes[i] >= lim)
      return status::error(errc::invalid_argument, "module \"%.100s\": code %zu is %d, outside the %d-bit range", module.c_str(), i, w.codes[i], w.num_bits);
  for (std::size_t i = 0; i < w.zero_points.size(); ++i)
    if (w.zero_points[i] < -lim || w.zero_points[i] >= lim)
      return status::error(errc::invalid_argument, "module \"%.100s\": zero point %zu is %d, outside the %d-bit range", module.c_str(), i, w.zero_points[i], w.num_bits);
  const int pf = 32 / w.num_bits;
  const std::int64_t words = (w.cols + pf - 1) / pf, g = w.groups();
  ct_encoded e;
  e.entries.push_back({module + ".weight_packed", st_dtype::I32, {w.rows, words}});
  std::vector<std::uint8_t> packed(static_cast<std::size_t>(w.rows * words * 4), 0);
  for (std::int64_t n = 0; n < w.rows; ++n)
    for (std::int64_t k = 0; k < w.cols; ++k) detail::ct_pack(packed.data(), n * words + k / pf, static_cast<int>(k % pf), w.num_bits, w.codes[static_cast<std::size_t>(n * w.cols + k)]);
  e.data.push_back(std::move(packed));
  e.entries.push_back({module + ".weight_scale", w.scale_dtype, w.strategy == "tensor" ? std::vector<std::int64_t>{1} : std::vector<std::int64_t>{w.rows, g}});
  std::vector<std::uint8_t> sb(static_cast<std::size_t>(info(w.scale_dtype).size) * w.scales.size());
  for (std::size_t i = 0; i < w.scales.size(); ++i) {
    if (w.scale_dtype == st_dtype::F32) {
      std::memcpy(&sb[4 * i], &w.scales[i], 4);
    } else {
      const std::uint16_t h = w.scale_dtype == st_dtype::BF16 ? float_to_bf16_bits(w.scales[i]) : float_to_f16_bits(w.scales[i]);
      sb[2 * i] = static_cast<std::uint8_t>(h);
      sb[2 * i + 1] = static_cast<std::uint8_t>(h >> 8);
    }
  }
  e.data.push_back(std::move(sb));
  if (!w.zero_points.empty()) {
    if (w.strategy == "tensor") {
      e.entries.push_back({module + ".weight_zero_point", st_dtype::I8, {1}});
      e.data.push_back({static_cast<std::uint8_t>(w.zero_points[0])});
    } else {
      const std::int64_t zr = (w.rows + pf - 1) / pf;
      e.entries.push_back({module + ".weight_zero_point", st_dtype::I32, {zr, g}});
      std::vector<std::uint8_t> zb(static_cast<std::size_t>(zr * g * 4), 0);
      for (std::int64_t n = 0; n < w.rows; ++n)
        for (std::int64_t j = 0; j < g; ++j) detail::ct_pack(zb.data(), (n / pf) * g + j, static_cast<int>(n % pf), w.num_bits, w.zero_points[static_cast<std::size_t>(n * g + j)]);
      e.data.push_back(std::move(zb));
    }
  }
  e.entries.push_back({module + ".weight_shape", st_dtype::I64, {2}});
  std::vector<std::uint8_t> shp(16);
  std::memcpy(&shp[0], &w.rows, 8);
  std::memcpy(&shp[8], &w.cols, 8);
  e.data.push_back(std::move(shp));
  for (std::size_t i = 0; i < e.entries.size(); ++i) {
    out.entries.push_back(std::move(e.entries[i]));
    out.data.push_back(std::move(e.data[i]));
  }
  return {};
}

/// Appends module `module`'s int-quantized entries and bytes to `out`: `weight` I8 [N, K] (the
/// codes), `weight_scale` (w.scale_dtype) [1] / [N, 1] / [N, groups] and, for asymmetric weights,
/// `weight_zero_point` I8 of the scale's shape. Errors as ct_packed_entries.
inline status ct_int_quantized_entries(const std::string& module, const ct_int_weight& w, ct_encoded& out) {
  ct_encoded p;
  LOWBIT_TRY(ct_packed_entries(module, w, p));  // validates w, and makes the scale bytes
  ct_encoded e;
  e.entries.push_back({module + ".weight", st_dtype::I8, {w.rows, w.cols}});
  e.data.emplace_back(reinterpret_cast<const std::uint8_t*>(w.codes.data()), reinterpret_cast<const std::uint8_t*>(w.codes.data()) + w.codes.size());
  e.entries.push_back(p.entries[1]);
  e.data.push_back(std::move(p.data[1]));
  if (!w.zero_points.empty()) {
    e.entries.push_back({module + ".weight_zero_point", st_dtype::I8, p.entries[1].shape});
    e.data.emplace_back(reinterpret_cast<const std::uint8_t*>(w.zero_points.data()), reinterpret_cast<const std::uint8_t*>(w.zero_points.data()) + w.zero_points.size());
  }
  for (std::size_t i = 0; i < e.entries.size(); ++i) {
    out.entries.push_back(std::move(e.entries[i]));
    out.data.push_back(std::move(e.data[i]));
  }
  return {};
}

// ---------------------------------------------------------------------------------------------
// By module name: what the tool's inspect / dequantize / convert use.
// ---------------------------------------------------------------------------------------------

namespace detail {
/// The scheme of module `module` and its storage format; errors if it is ignored, in no group or
/// quantizes no weights.
inline status ct_module_scheme(const checkpoint& c, const ct_config& cfg, const std::string& module, const ct_scheme*& s, std::string& format) {
  std::string group;
  LOWBIT_TRY(ct_group_of(cfg, module, group));
  s = group.empty() ? nullptr : ct_find_scheme(cfg, group);
  if (s == nullptr) return status::error(errc::invalid_argument, "%s: module \"%.100s\" is ignored or in no config group", c.path().c_str(), module.c_str());
  if (!s->has_weights)
    return status::error(errc::invalid_argument, "%s: config group %.60s of module \"%.100s\" quantizes no weights", c.path().c_str(), group.c_str(), module.c_str());
  format = ct_group_format(cfg, *s);
  return {};
}
}  // namespace detail

/// Reads module `module`'s weight into `out` in lowbit's representation, after deciding its group
/// (ct_group_of) and layout (the group's format, else the config's): float-quantized (also
/// naive-quantized, its alias for FP8 weights) or nvfp4-pack-quantized. Errors: the module is
/// ignored or in no group, the group has no weights, pack-quantized (no scaled_tensor holds it:
/// use load_ct_packed), another format, and what the layout's loader rejects.
inline status load_ct_weight(const checkpoint& c, const ct_config& cfg, const std::string& module, scaled_tensor& out, const ct_load_options& opt = {}) {
  const ct_scheme* s = nullptr;
  std::string f;
  LOWBIT_TRY(detail::ct_module_scheme(c, cfg, module, s, f));
  if (f == "float-quantized" || f == "naive-quantized") return load_ct_fp8(c, module, s->weights, out, opt);
  if (f == "nvfp4-pack-quantized") return load_ct_nvfp4(c, module, s->weights, out, opt);
  return status::error(errc::unsupported, "%s: module \"%.100s\": format \"%.60s\" has no scaled_tensor form (float-quantized and nvfp4-pack-quantized do; pack-quantized reads with load_ct_packed)",
                       c.path().c_str(), module.c_str(), f.c_str());
}

/// Module `module`'s weight as float32, row-major [N, K], into `values` (and `shape`), for the
/// formats float-quantized, nvfp4-pack-quantized, pack-quantized and int-quantized (and
/// naive-quantized with FP8 or integer weights): `f32(q) * s` (FP8; BF16 /
/// F16 scales widened exactly, so each value is the exact product, which compressed-tensors then
/// rounds to the scale dtype), `e2m1(q) * f32(b / g)` (NVFP4, the same float32 arithmetic as
/// compressed-tensors), `f32(q - z) * s` (integers). Errors as load_ct_weight, load_ct_packed or
/// load_ct_int_quantized; `values` and `shape` unchanged on error.
inline status dequantize_ct_weight(const checkpoint& c, const ct_config& cfg, const std::string& module, std::vector<float>& values,
                                   std::vector<std::int64_t>& shape, const ct_load_options& opt = {}) {
  const ct_scheme* s = nullptr;
  std::string f;
  LOWBIT_TRY(detail::ct_module_scheme(c, cfg, module, s, f));
  if (f == "pack-quantized" || f == "int-quantized" || (f == "naive-quantized" && s->weights.type == "int")) {
    ct_int_weight w;
    if (f == "pack-quantized") LOWBIT_TRY(load_ct_packed(c, module, s->weights, w, opt));
    else LOWBIT_TRY(load_ct_int_quantized(c, module, s->weights, w, opt));
    LOWBIT_TRY(dequantize(w, values));
    shape = {w.rows, w.cols};
    return {};
  }
  scaled_tensor q;
  LOWBIT_TRY(load_ct_weight(c, cfg, module, q, opt));
  std::vector<float> v(static_cast<std::size_t>(q.numel()));
  LOWBIT_TRY(dequantize(q, v.data(), dtype::f32));
  values = std::move(v);
  shape = q.shape();
  return {};
}

/// Quantizes the float32 row-major [N, K] `values` of module `module` under `args` into the
/// entries of `format`, appended to `out`: float-quantized (quantize_ct_fp8, F32 scales),
/// nvfp4-pack-quantized (quantize_ct_nvfp4), pack-quantized or int-quantized (quantize_ct_int
/// with scales of `int_scale_dtype`, BF16 by default as llm-compressor stores them for a BF16
/// model). Errors:
/// another format, what the quantizer rejects (non-finite input unless opt.allow_nonfinite; the
/// integer quantizer always rejects it). `out` unchanged on error.
inline status ct_encode_weight(const std::string& module, const float* values, const std::vector<std::int64_t>& shape, const ct_quant_args& args,
                               const std::string& format, ct_encoded& out, const host::options& opt = {}, st_dtype int_scale_dtype = st_dtype::BF16) {
  scaled_tensor q;
  std::vector<tensor_entry> e;
  std::vector<std::vector<std::uint8_t>> d;
  const auto bytes = [](const void* p, std::int64_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    return std::vector<std::uint8_t>(b, b + n);
  };
  if (format == "float-quantized") {
    LOWBIT_TRY(quantize_ct_fp8(values, dtype::f32, shape, args, q, opt));
    LOWBIT_TRY(ct_fp8_entries(module, q, args, e));
    d.push_back(bytes(q.codes(), q.code_bytes()));
    d.push_back(bytes(q.scale_bytes(), q.grid().tiles() * 4));
  } else if (format == "nvfp4-pack-quantized") {
    LOWBIT_TRY(quantize_ct_nvfp4(values, dtype::f32, shape, args, q, opt));
    LOWBIT_TRY(ct_nvfp4_entries(module, q, e));
    const float g = q.global_scale();
    d.push_back(bytes(q.codes(), q.code_bytes()));
    d.push_back(bytes(q.scale_bytes(), q.grid().tiles()));
    d.push_back(bytes(&g, 4));
  } else if (format == "pack-quantized" || format == "int-quantized") {
    ct_int_weight w;
    LOWBIT_TRY(quantize_ct_int(values, shape, args, int_scale_dtype, w));
    ct_encoded p;
    if (format == "pack-quantized") LOWBIT_TRY(ct_packed_entries(module, w, p));
    else LOWBIT_TRY(ct_int_quantized_entries(module, w, p));
    e = std::move(p.entries);
    d = std::move(p.data);
  } else {
    return status::error(errc::unsupported, "module \"%.100s\": format \"%.60s\" is not one lowbit writes (float-quantized, nvfp4-pack-quantized, pack-quantized, int-quantized)",
                         module.c_str(), format.c_str());
  }
  for (std::size_t i = 0; i < e.size(); ++i) {
    out.entries.push_back(std::move(e[i]));
    out.data.push_back(std::move(d[i]));
  }
  return {};
}

/// Writes every tensor of `e` (in order) to `w`, opened with `e.entries` (or a list holding them
/// in the same order at its current position).
inline status write_ct_encoded(safetensors_writer& w, const ct_encoded& e) {
  for (const auto& d : e.data) LOWBIT_TRY(w.write(d.data(), d.size()));
  return {};
}

}  // namespace io
LOWBIT_NAMESPACE_END
