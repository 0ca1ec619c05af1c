// SPDX-License-Identifier: Apache-2.0
/// @file checkpoint.hpp
/// @brief A checkpoint: one safetensors file, or a folder holding `model.safetensors` or shards
///        listed in `model.safetensors.index.json` (the layout transformers writes), seen as one
///        set of uniquely named tensors.
///
/// The index is `{"metadata": {...}, "weight_map": {"<tensor>": "<shard file>", ...}}`. It is
/// accepted only if every shard name is a plain file name in the folder (no '/'), every listed
/// tensor is in the shard the map names, and every tensor of every shard is listed under that
/// shard; a name in two shards is an error.
#pragma once

#include "safetensors.hpp"


LOWBIT_NAMESPACE_BEGIN
namespace io {

/// Reads a small text file (config.json, an index) into `out`.
inline status read_text_file(const std::string& path, std::string& out) {
  detail::mapped_file m;
  LOWBIT_TRY(m.open(path));
  out.assign(reinterpret_cast<const char*>(m.data()), m.size());
  return {};
}

/// Parses JSON text read from `path` (for messages); invalid UTF-8 or JSON is an error.
inline status parse_json_text(const std::string& text, const std::string& path, nlohmann::json& out) {
  const std::int64_t bad = utf8_invalid_at(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  if (bad >= 0) return status::error(errc::invalid_argument, "%s: not valid UTF-8 (byte %lld)", path.c_str(), static_cast<long long>(bad));
  std::string err;
  if (!detail::parse_json(text.data(), text.size(), out, err))
    return status::error(errc::invalid_argument, "%s: not valid JSON: %.150s", path.c_str(), err.c_str());
  return {};
}

/// True if `path` names a folder.
inline bool is_directory(const std::string& path) noexcept {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
/// True if `path` names anything.
inline bool path_exists(const std::string& path) noexcept {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

/// File name of the index of a sharded checkpoint.
inline constexpr const char* index_file_name = "model.safetensors.index.json";

/// The tensors of a single file or of a (sharded) checkpoint folder.
class checkpoint {
 public:
  /// Where one tensor is.
  struct location {
    const safetensors_file* file = nullptr;
    const tensor_info* tensor = nullptr;
  };

  /// Opens `path`: a .safetensors file, or a folder with `model.safetensors.index.json` (shards)
  /// or `model.safetensors`. On error `out` is unchanged.
  static status open(const std::string& path, checkpoint& out) {
    checkpoint c;
    c.path_ = path;
    if (!is_directory(path)) {
      c.files_.emplace_back(std::make_unique<safetensors_file>());
      LOWBIT_TRY(safetensors_file::open(path, *c.files_.back()));
      c.dir_ = detail::parent_dir(path);
    } else {
      c.dir_ = path;
      const std::string index = path + "/" + index_file_name;
      if (path_exists(index)) {
        LOWBIT_TRY(c.open_index(index));
      } else if (path_exists(path + "/model.safetensors")) {
        c.files_.emplace_back(std::make_unique<safetensors_file>());
        LOWBIT_TRY(safetensors_file::open(path + "/model.safetensors", *c.files_.back()));
      } else {
        return status::error(errc::io, "%s: folder has neither %s nor model.safetensors", path.c_str(), index_file_name);
      }
    }
    for (const auto& f : c.files_)
      for (const auto& t : f->tensors()) {
        if (c.where_.count(t.name) != 0)
          return status::error(errc::invalid_argument, "%s: tensor \"%.80s\" is also in %s", f->path().c_str(), t.name.c_str(),
                               c.where_[t.name].file->path().c_str());
        c.where_[t.name] = {f.get(), &t};
        c.names_.push_back(t.name);
      }
    out = std::move(c);
    return {};
  }

  /// A checkpoint of the one already validated file `f` (e.g. parsed from memory); `path` names
  /// it in messages. Never fails.
  static checkpoint adopt(safetensors_file&& f, const std::string& path) {
    checkpoint c;
    c.path_ = path;
    c.dir_ = detail::parent_dir(path);
    c.files_.emplace_back(std::make_unique<safetensors_file>(std::move(f)));
    for (const auto& t : c.files_.back()->tensors()) {
      c.where_[t.name] = {c.files_.back().get(), &t};
      c.names_.push_back(t.name);
    }
    return c;
  }

  /// Every tensor name: shard by shard, each in data order.
  const std::vector<std::string>& names() const noexcept { return names_; }
  /// Where `name` is ({null, null} if absent).
  location find(const std::string& name) const noexcept {
    const auto it = where_.find(name);
    return it == where_.end() ? location{} : it->second;
  }
  /// True if some tensor's name starts with `prefix` (O(log n)).
  bool has_prefix(const std::string& prefix) const {
    const auto it = where_.lower_bound(prefix);
    return it != where_.end() && it->first.compare(0, prefix.size(), prefix) == 0;
  }
  /// The open files (one, or the shards in index order).
  std::size_t file_count() const noexcept { return files_.size(); }
  const safetensors_file& file(std::size_t i) const noexcept { return *files_[i]; }
  /// The folder the checkpoint is in (for config.json).
  const std::string& folder() const noexcept { return dir_; }
  /// The path given to open (a file or a folder).
  const std::string& path() const noexcept { return path_; }

 private:
  status open_index(const std::string& index) {
    std::string text;
    LOWBIT_TRY(read_text_file(index, text));
    nlohmann::json j;
    LOWBIT_TRY(parse_json_text(text, index, j));
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      return status::error(errc::invalid_argument, "%s: no \"weight_map\" object", index.c_str());
    std::map<std::string, std::vector<std::string>> by_shard;  // shard -> listed tensors
    std::vector<std::string> order;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        return status::error(errc::invalid_argument, "%s: weight_map entry \"%.80s\" is not a file name", index.c_str(), it.key().c_str());
      const std::string shard = it.value().get<std::string>();
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
        return status::error(errc::invalid_argument, "%s: shard \"%.80s\" is not a file name in the folder", index.c_str(), shard.c_str());
      if (by_shard.count(shard) == 0) order.push_back(shard);
      by_shard[shard].push_back(it.key());
    }
    std::sort(order.begin(), order.end());
    for (const auto& shard : order) {
      files_.emplace_back(std::make_unique<safetensors_file>());
      LOWBIT_TRY(safetensors_file::open(dir_ + "/" + shard, *files_.back()));
      const safetensors_file& f = *files_.back();
      const auto& listed = by_shard[shard];
      for (const auto& name : listed)
        if (f.find(name) == nullptr)
          return status::error(errc::invalid_argument, "%s: lists tensor \"%.80s\" in %s, which does not hold it", index.c_str(), name.c_str(), shard.c_str());
      if (listed.size() != f.tensors().size()) {
        const std::set<std::string> want(listed.begin(), listed.end());
        for (const auto& t : f.tensors())
          if (want.count(t.name) == 0)
            return status::error(errc::invalid_argument, "%s: tensor \"%.80s\" of %s is not listed in the index", index.c_str(), t.name.c_str(), shard.c_str());
      }
    }
    return {};
  }

  std::vector<std::unique_ptr<safetensors_file>> files_;
  std::map<std::string, location> where_;
  std::vector<std::string> names_;
  std::string dir_;
  std::string path_;
};

/// Writes `folder/model.safetensors.index.json` atomically for shards written by the caller:
/// `weight_map` maps each tensor name to its shard's file name; `total_size` is the sum of the
/// tensors' data bytes (transformers' "metadata.total_size").
inline status write_index(const std::string& folder, std::uint64_t total_size, const std::map<std::string, std::string>& weight_map) {
  nlohmann::ordered_json j;
  j["metadata"] = {{"total_size", total_size}};
  j["weight_map"] = nlohmann::ordered_json::object();
  for (const auto& kv : weight_map) j["weight_map"][kv.first] = kv.second;
  return write_file_atomic(folder + "/" + index_file_name, j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n");
}

}  // namespace io
LOWBIT_NAMESPACE_END
