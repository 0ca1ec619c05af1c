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

#include <atomic>


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
        const auto ins = c.where_.emplace(t.name, location{f.get(), &t});
        if (!ins.second)
          return status::error(errc::invalid_argument, "%s: tensor \"%.80s\" is also in %s", f->path().c_str(), t.name.c_str(),
                               ins.first->second.file->path().c_str());
        c.names_.push_back(t.name);
      }
    c.sort_names();
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
      c.where_.emplace(t.name, location{c.files_.back().get(), &t});
      c.names_.push_back(t.name);
    }
    c.sort_names();
    return c;
  }

  /// Every tensor name: shard by shard, each in data order.
  const std::vector<std::string>& names() const noexcept { return names_; }
  /// Where `name` is ({null, null} if absent). A hashed lookup: O(1) expected.
  location find(const std::string& name) const noexcept {
    lookups_.n.fetch_add(1, std::memory_order_relaxed);
    const auto it = where_.find(name);
    return it == where_.end() ? location{} : it->second;
  }
  /// True if some tensor's name starts with `prefix` (binary search: O(log n) comparisons).
  bool has_prefix(const std::string& prefix) const {
    lookups_.n.fetch_add(1, std::memory_order_relaxed);
    const auto it = std::lower_bound(sorted_.begin(), sorted_.end(), prefix, [](const std::string* a, const std::string& b) { return *a < b; });
    return it != sorted_.end() && (*it)->compare(0, prefix.size(), prefix) == 0;
  }
  /// How many find / has_prefix calls this checkpoint has answered (any thread): code that
  /// handles every tensor with a fixed number of lookups each is linear in the tensor count, and
  /// tests check that by this count rather than by timing.
  std::uint64_t lookups() const noexcept { return lookups_.n.load(std::memory_order_relaxed); }
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

  void sort_names() {
    sorted_.clear();
    sorted_.reserve(names_.size());
    for (const auto& n : names_) sorted_.push_back(&n);
    std::sort(sorted_.begin(), sorted_.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
  }
  // A relaxed atomic count that moves with the checkpoint.
  struct counter {
    mutable std::atomic<std::uint64_t> n{0};
    counter() = default;
    counter(counter&& o) noexcept : n(o.n.load()) {}
    counter& operator=(counter&& o) noexcept { return n.store(o.n.load()), *this; }
  };

  std::vector<std::unique_ptr<safetensors_file>> files_;
  std::unordered_map<std::string, location> where_;
  std::vector<std::string> names_;
  std::vector<const std::string*> sorted_;  // into names_, by name (for has_prefix)
  counter lookups_;
  std::string dir_;
  std::string path_;
};

/// Writes `folder/model.safetensors.index.json` atomically for shards written by the caller:
/// `weight_map` maps each tensor name to its shard's file name; `total_size` is the sum of the
/// tensors' data bytes (transformers' "metadata.total_size").
inline status write_index(const std::string& folder, std::uint64_t total_size, const std::map<std::string, std::string>& weight_map) {
  // Written out directly (as json.dump(indent=2) lays it out), in time linear in the number of
  // tensors: a JSON object built key by key would look each key up among those before it.
  std::string text = "{\n  \"metadata\": {\n    \"total_size\": " + std::to_string(total_size) + "\n  },\n  \"weight_map\": {";
  bool first = true;
  for (const auto& kv : weight_map) {
    text += first ? "\n    " : ",\n    ";
    text += detail::json_quote(kv.first) + ": " + detail::json_quote(kv.second);
    first = false;
  }
  text += first ? "}\n}\n" : "\n  }\n}\n";
  return write_file_atomic(folder + "/" + index_file_name, text);
}

}  // namespace io
LOWBIT_NAMESPACE_END
