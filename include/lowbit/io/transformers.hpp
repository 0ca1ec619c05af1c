// SPDX-License-Identifier: Apache-2.0
/// @file transformers.hpp
/// @brief transformers' `config.json` `quantization_config` for bitsandbytes (the keys
///        `BitsAndBytesConfig.to_dict()` writes), read and written.
///
/// Written keys, sorted as transformers writes them: `_load_in_4bit`, `_load_in_8bit`,
/// `bnb_4bit_compute_dtype`, `bnb_4bit_quant_storage`, `bnb_4bit_quant_type`,
/// `bnb_4bit_use_double_quant`, `llm_int8_enable_fp32_cpu_offload`, `llm_int8_has_fp16_weight`,
/// `llm_int8_skip_modules`, `llm_int8_threshold`, `load_in_4bit`, `load_in_8bit`, `quant_method`.
/// Reading requires `quant_method == "bitsandbytes"` and exactly one of load_in_4bit / load_in_8bit
/// (the underscored spellings are accepted too); absent keys take transformers' defaults.
#pragma once

#include "checkpoint.hpp"

LOWBIT_NAMESPACE_BEGIN
namespace io {

/// The fields of transformers' BitsAndBytesConfig that describe a checkpoint.
struct bnb_quantization_config {
  bool load_in_4bit = true;
  bool load_in_8bit = false;
  std::string bnb_4bit_quant_type = "nf4";      ///< "nf4" or "fp4"
  bool bnb_4bit_use_double_quant = true;
  std::string bnb_4bit_compute_dtype = "bfloat16";  ///< "float32", "float16" or "bfloat16"
  std::string bnb_4bit_quant_storage = "uint8";
  double llm_int8_threshold = 6.0;
  bool llm_int8_has_fp16_weight = false;
  bool llm_int8_enable_fp32_cpu_offload = false;
  /// Modules left unquantized; `has_skip_modules == false` writes null.
  std::vector<std::string> llm_int8_skip_modules;
  bool has_skip_modules = false;
};

/// The `quantization_config` object of `c`.
inline nlohmann::ordered_json to_json(const bnb_quantization_config& c) {
  nlohmann::ordered_json j;
  j["_load_in_4bit"] = c.load_in_4bit;
  j["_load_in_8bit"] = c.load_in_8bit;
  j["bnb_4bit_compute_dtype"] = c.bnb_4bit_compute_dtype;
  j["bnb_4bit_quant_storage"] = c.bnb_4bit_quant_storage;
  j["bnb_4bit_quant_type"] = c.bnb_4bit_quant_type;
  j["bnb_4bit_use_double_quant"] = c.bnb_4bit_use_double_quant;
  j["llm_int8_enable_fp32_cpu_offload"] = c.llm_int8_enable_fp32_cpu_offload;
  j["llm_int8_has_fp16_weight"] = c.llm_int8_has_fp16_weight;
  if (c.has_skip_modules) j["llm_int8_skip_modules"] = c.llm_int8_skip_modules;
  else j["llm_int8_skip_modules"] = nullptr;
  j["llm_int8_threshold"] = c.llm_int8_threshold;
  j["load_in_4bit"] = c.load_in_4bit;
  j["load_in_8bit"] = c.load_in_8bit;
  j["quant_method"] = "bitsandbytes";
  return j;
}

/// Reads a `quantization_config` object (`where` names it in messages). Errors: not an object,
/// quant_method other than "bitsandbytes", both or neither of 4-bit / 8-bit, a key of the wrong
/// type, an unknown quant type, compute dtype or storage.
inline status from_json(const nlohmann::json& j, const std::string& where, bnb_quantization_config& out) {
  const char* w = where.c_str();
  if (!j.is_object()) return status::error(errc::invalid_argument, "%s: quantization_config is not an object", w);
  bnb_quantization_config c;
  const auto qm = j.find("quant_method");
  if (qm == j.end() || *qm != "bitsandbytes") return status::error(errc::unsupported, "%s: quant_method is not \"bitsandbytes\"", w);
  auto get_bool = [&](const char* k, const char* alt, bool& v) -> status {
    for (const char* key : {k, alt}) {
      if (key == nullptr) continue;
      const auto it = j.find(key);
      if (it == j.end() || it->is_null()) continue;
      if (!it->is_boolean()) return status::error(errc::invalid_argument, "%s: %s is not true/false", w, key);
      v = it->get<bool>();
      return {};
    }
    return {};
  };
  auto get_string = [&](const char* k, std::string& v, std::initializer_list<const char*> allowed) -> status {
    const auto it = j.find(k);
    if (it == j.end() || it->is_null()) return {};
    if (!it->is_string()) return status::error(errc::invalid_argument, "%s: %s is not a string", w, k);
    for (const char* a : allowed)
      if (*it == a) return v = a, status{};
    return status::error(errc::unsupported, "%s: %s \"%.30s\" is not supported", w, k, it->get<std::string>().c_str());
  };
  c.load_in_4bit = false;
  LOWBIT_TRY(get_bool("load_in_4bit", "_load_in_4bit", c.load_in_4bit));
  LOWBIT_TRY(get_bool("load_in_8bit", "_load_in_8bit", c.load_in_8bit));
  if (c.load_in_4bit == c.load_in_8bit) return status::error(errc::invalid_argument, "%s: exactly one of load_in_4bit and load_in_8bit must be true", w);
  c.bnb_4bit_quant_type = "fp4";  // transformers' default
  c.bnb_4bit_use_double_quant = false;
  c.bnb_4bit_compute_dtype = "float32";
  LOWBIT_TRY(get_string("bnb_4bit_quant_type", c.bnb_4bit_quant_type, {"nf4", "fp4"}));
  LOWBIT_TRY(get_bool("bnb_4bit_use_double_quant", nullptr, c.bnb_4bit_use_double_quant));
  LOWBIT_TRY(get_string("bnb_4bit_compute_dtype", c.bnb_4bit_compute_dtype, {"float32", "float16", "bfloat16"}));
  LOWBIT_TRY(get_string("bnb_4bit_quant_storage", c.bnb_4bit_quant_storage, {"uint8"}));
  LOWBIT_TRY(get_bool("llm_int8_has_fp16_weight", nullptr, c.llm_int8_has_fp16_weight));
  LOWBIT_TRY(get_bool("llm_int8_enable_fp32_cpu_offload", nullptr, c.llm_int8_enable_fp32_cpu_offload));
  if (const auto t = j.find("llm_int8_threshold"); t != j.end() && !t->is_null()) {
    if (!t->is_number()) return status::error(errc::invalid_argument, "%s: llm_int8_threshold is not a number", w);
    c.llm_int8_threshold = t->get<double>();
  }
  if (const auto s = j.find("llm_int8_skip_modules"); s != j.end() && !s->is_null()) {
    if (!s->is_array()) return status::error(errc::invalid_argument, "%s: llm_int8_skip_modules is not a list", w);
    for (const auto& m : *s) {
      if (!m.is_string()) return status::error(errc::invalid_argument, "%s: llm_int8_skip_modules holds a non-string", w);
      c.llm_int8_skip_modules.push_back(m.get<std::string>());
    }
    c.has_skip_modules = true;
  }
  out = std::move(c);
  return {};
}

/// The quantization method a parsed config.json object `config` names, as transformers'
/// `AutoQuantizationConfig.from_dict` decides it: no `quantization_config` (or null) → "" (a
/// dense checkpoint); `load_in_4bit` or `load_in_8bit` true → "bitsandbytes" (old bitsandbytes
/// configs have no `quant_method`); else the `quant_method` string. Errors (naming `where`): a
/// quantization_config that is not an object, or whose quant_method is missing or not a string.
inline status quantization_method(const nlohmann::json& config, const std::string& where, std::string& out) {
  const char* w = where.c_str();
  if (!config.is_object()) return status::error(errc::invalid_argument, "%s: not a JSON object", w);
  const auto qc = config.find("quantization_config");
  if (qc == config.end() || qc->is_null()) return out.clear(), status{};
  if (!qc->is_object()) return status::error(errc::invalid_argument, "%s: quantization_config is not an object", w);
  for (const char* k : {"load_in_4bit", "load_in_8bit"}) {
    const auto it = qc->find(k);
    if (it != qc->end() && it->is_boolean() && it->get<bool>()) return out = "bitsandbytes", status{};
  }
  const auto qm = qc->find("quant_method");
  if (qm == qc->end() || !qm->is_string())
    return status::error(errc::invalid_argument, "%s: quantization_config has no quant_method string; cannot tell how its weights are stored", w);
  out = qm->get<std::string>();
  return {};
}

/// Checks that the config.json object `config` (read from `where`) describes a checkpoint lowbit
/// can read: dense, or quantized by bitsandbytes. Any other method (transformers' fine-grained FP8
/// `"fp8"`, `"compressed-tensors"`, `"gptq"`, ...) is an `errc::unsupported` error that names it,
/// so that a caller refuses the checkpoint rather than copying its quantized tensors through as if
/// they were dense. Errors of quantization_method are returned as they are.
inline status check_readable_quantization(const nlohmann::json& config, const std::string& where) {
  std::string method;
  LOWBIT_TRY(quantization_method(config, where, method));
  if (method.empty() || method == "bitsandbytes") return {};
  return status::error(errc::unsupported, "%s: quantization_config.quant_method \"%.60s\" is a method lowbit does not read (it reads bitsandbytes)",
                       where.c_str(), method.c_str());
}

/// The dtype transformers recorded for a model's weights in its parsed config.json object
/// `config`: `torch_dtype` (or `dtype`, its name since transformers 4.56) when it is "float32",
/// "float16" or "bfloat16"; `fallback` when the key is absent or holds anything else ("auto",
/// another dtype, a non-string). Never fails.
inline dtype recorded_dtype(const nlohmann::json& config, dtype fallback) noexcept {
  if (!config.is_object()) return fallback;
  for (const char* key : {"torch_dtype", "dtype"}) {
    const auto it = config.find(key);
    if (it == config.end() || !it->is_string()) continue;
    const std::string& v = it->get_ref<const std::string&>();
    if (v == "float32") return dtype::f32;
    if (v == "float16") return dtype::f16;
    if (v == "bfloat16") return dtype::bf16;
  }
  return fallback;
}

namespace detail {
/// The `quantization_config` of config.json `path` into `out`. Errors: unreadable file, invalid
/// UTF-8 or JSON, not an object, no quantization_config.
inline status read_config_quantization(const std::string& path, nlohmann::json& out) {
  std::string text;
  LOWBIT_TRY(read_text_file(path, text));
  nlohmann::json j;
  LOWBIT_TRY(parse_json_text(text, path, j));
  if (!j.is_object() || !j.contains("quantization_config")) return status::error(errc::invalid_argument, "%s: no quantization_config", path.c_str());
  out = std::move(j["quantization_config"]);
  return {};
}

/// Writes `path` atomically: the JSON object `base_text` (another config.json's text; "" for an
/// empty object) with `quantization_config` set to `qc` (replacing any), every object's keys
/// sorted and indented by 2, as transformers writes config.json (`json.dumps(indent=2,
/// sort_keys=True)`). Linear in the text's size apart from sorting (a JSON object that kept the
/// input's key order would look each key up among those before it: quadratic in the number of keys).
inline status write_config_with(const std::string& path, const std::string& base_text, const nlohmann::json& qc) {
  nlohmann::json j = nlohmann::json::object();
  if (!base_text.empty()) {
    LOWBIT_TRY(parse_json_text(base_text, path + " (base config)", j));
    if (!j.is_object()) return status::error(errc::invalid_argument, "%s: base config is not a JSON object", path.c_str());
  }
  j["quantization_config"] = qc;
  return write_file_atomic(path, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}
}  // namespace detail

/// Reads `path` (a config.json) and its `quantization_config`. Errors: unreadable file, invalid
/// UTF-8 or JSON, no quantization_config, or what from_json rejects.
inline status read_quantization_config(const std::string& path, bnb_quantization_config& out) {
  nlohmann::json q;
  LOWBIT_TRY(detail::read_config_quantization(path, q));
  return from_json(q, path, out);
}

/// Writes `path` atomically: `base_text` with `quantization_config` set to `c`
/// (detail::write_config_with: keys sorted, indented by 2, as transformers writes config.json).
inline status write_config(const std::string& path, const std::string& base_text, const bnb_quantization_config& c) {
  return detail::write_config_with(path, base_text, to_json(c));
}

}  // namespace io
LOWBIT_NAMESPACE_END
