// SPDX-License-Identifier: Apache-2.0
/// @file safetensors.hpp
/// @brief safetensors files: a validating, memory-mapped reader with zero-copy tensor views, and a
///        streaming, atomic writer (temporary file in the same folder, header written last in
///        front of page-aligned data, fsync, rename).
///
/// @par The format (as the reference implementation defines and checks it)
/// `u64 N` (little-endian) | `N` bytes of UTF-8 JSON | data. The JSON is an object whose keys are
/// tensor names, each `{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}` with
/// offsets relative to the start of the data, plus an optional `"__metadata__"` object of string
/// values. The reader accepts a file only if: `8 + N` fits the file and N <= 100,000,000; the
/// header is valid UTF-8 and valid JSON starting with `{` (trailing spaces allowed) nested at most
/// max_json_depth levels; the file is a regular file (a FIFO or device is refused); no key
/// repeats; every dtype is a known string; shapes are lists of non-negative integers; each
/// tensor's `end - begin` equals `numel * itemsize`; and the tensors, sorted by offset, cover the
/// data exactly, without gaps or overlaps. Every error is a `lowbit::status` (errc::io for the
/// operating system, errc::invalid_argument for bad content) whose message names the file, the
/// tensor and the problem. Nothing here throws or prints.
#pragma once

#include "../config.hpp"
#include "../dtype.hpp"
#include "../status.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

LOWBIT_NAMESPACE_BEGIN
namespace io {

/// Element types a safetensors file may hold (the reference implementation's byte-sized ones).
enum class st_dtype : std::uint8_t { BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, I16, U16, F16, BF16, I32, U32, F32, I64, U64, F64 };

/// Name and item size of a safetensors dtype.
struct st_dtype_info {
  const char* name;
  int size;
};

/// Facts about `t`.
constexpr st_dtype_info info(st_dtype t) noexcept {
  switch (t) {
    case st_dtype::BOOL: return {"BOOL", 1};
    case st_dtype::U8: return {"U8", 1};
    case st_dtype::I8: return {"I8", 1};
    case st_dtype::F8_E5M2: return {"F8_E5M2", 1};
    case st_dtype::F8_E4M3: return {"F8_E4M3", 1};
    case st_dtype::F8_E8M0: return {"F8_E8M0", 1};
    case st_dtype::I16: return {"I16", 2};
    case st_dtype::U16: return {"U16", 2};
    case st_dtype::F16: return {"F16", 2};
    case st_dtype::BF16: return {"BF16", 2};
    case st_dtype::I32: return {"I32", 4};
    case st_dtype::U32: return {"U32", 4};
    case st_dtype::F32: return {"F32", 4};
    case st_dtype::I64: return {"I64", 8};
    case st_dtype::U64: return {"U64", 8};
    case st_dtype::F64: return {"F64", 8};
  }
  return {"?", 0};
}

/// Looks up a dtype by its exact (case-sensitive) name; false if `name` is not one.
inline bool parse_st_dtype(const std::string& name, st_dtype& out) noexcept {
  for (int i = 0; i <= static_cast<int>(st_dtype::F64); ++i) {
    const auto t = static_cast<st_dtype>(i);
    if (name == info(t).name) {
      out = t;
      return true;
    }
  }
  return false;
}

/// The safetensors dtype of a lowbit dense dtype.
constexpr st_dtype to_st_dtype(dtype t) noexcept {
  return t == dtype::f32 ? st_dtype::F32 : (t == dtype::f16 ? st_dtype::F16 : st_dtype::BF16);
}

/// The lowbit dense dtype of F32/F16/BF16; false for any other dtype.
constexpr bool to_dtype(st_dtype t, dtype& out) noexcept {
  if (t == st_dtype::F32) return out = dtype::f32, true;
  if (t == st_dtype::F16) return out = dtype::f16, true;
  if (t == st_dtype::BF16) return out = dtype::bf16, true;
  return false;
}

/// Index of the first byte of `s` that is not part of well-formed UTF-8 (RFC 3629: no overlong
/// forms, no surrogates, nothing above U+10FFFF), or -1 if all of it is.
inline std::int64_t utf8_invalid_at(const std::uint8_t* s, std::size_t n) noexcept {
  std::size_t i = 0;
  while (i < n) {
    const std::uint8_t c = s[i];
    std::size_t len = 0;
    std::uint8_t lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return static_cast<std::int64_t>(i);
    }
    if (n - i < len) return static_cast<std::int64_t>(i);
    if (s[i + 1] < lo || s[i + 1] > hi) return static_cast<std::int64_t>(i);
    for (std::size_t k = 2; k < len; ++k)
      if (s[i + k] < 0x80 || s[i + k] > 0xBF) return static_cast<std::int64_t>(i);
    i += len;
  }
  return -1;
}

/// One tensor's header entry. Offsets are relative to the start of the data section.
struct tensor_info {
  std::string name;
  st_dtype dtype = st_dtype::U8;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;

  /// Number of elements (1 for shape []).
  std::int64_t numel() const noexcept {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  /// Bytes of data.
  std::uint64_t nbytes() const noexcept { return end - begin; }
};

/// Largest header the reader accepts (the reference implementation's limit).
inline constexpr std::uint64_t max_header_bytes = 100000000;

/// Deepest nesting of objects and arrays lowbit reads in any JSON (a safetensors header,
/// config.json, an index, a quant_state); deeper JSON is refused with an error that says so. Real
/// files nest at most a handful of levels; the limit keeps every later step over the parsed value
/// (copies, destruction, pretty-printing, whose indentation grows with the depth) bounded by a
/// constant factor of the text's length, and far from the stack's size.
inline constexpr int max_json_depth = 128;

namespace detail {

/// Read-only private memory mapping of a whole file.
class mapped_file {
 public:
  mapped_file() = default;
  mapped_file(const mapped_file&) = delete;
  mapped_file& operator=(const mapped_file&) = delete;
  ~mapped_file() {
    if (data_ != nullptr && size_ > 0) ::munmap(data_, size_);
  }
  /// Maps `path`; an error for anything but a regular file (a FIFO, a device, a folder), found
  /// without blocking: the file is opened with O_NONBLOCK, so a FIFO without a writer does not
  /// stall the open.
  status open(const std::string& path) noexcept {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return status::error(errc::io, "%s: cannot open: %s", path.c_str(), std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int e = errno;
      ::close(fd);
      return status::error(errc::io, "%s: cannot stat: %s", path.c_str(), std::strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      const char* kind = S_ISDIR(st.st_mode) ? "a folder" : S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISSOCK(st.st_mode) ? "a socket"
                         : (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) ? "a device" : "something else";
      return status::error(errc::io, "%s: is %s, not a regular file", path.c_str(), kind);
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int e = errno;
        ::close(fd);
        size_ = 0;
        return status::error(errc::io, "%s: cannot map: %s", path.c_str(), std::strerror(e));
      }
      data_ = p;
    }
    ::close(fd);
    return {};
  }
  const std::uint8_t* data() const noexcept { return static_cast<const std::uint8_t*>(data_); }
  std::size_t size() const noexcept { return size_; }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

/// SAX pass over the header: records the first syntax error (with its byte position), nesting
/// deeper than max_json_depth (and stops there) and the first key that repeats among the
/// top-level keys, building nothing. nlohmann's SAX parser keeps its own state on the heap, so
/// this pass is safe at any depth.
class header_checker : public nlohmann::json_sax<nlohmann::json> {
 public:
  std::string error;
  std::string duplicate;
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override { return enter(); }
  bool key(string_t& k) override {
    if (depth_ == 1 && !keys_.insert(k).second && duplicate.empty()) duplicate = k;
    return true;
  }
  bool end_object() override { return --depth_, true; }
  bool start_array(std::size_t) override { return enter(); }
  bool end_array() override { return --depth_, true; }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& ex) override {
    if (!error.empty()) return false;  // the depth error stopped the parse
    char buf[64];
    std::snprintf(buf, sizeof buf, "at byte %zu: ", position);
    error = buf;
    error += ex.what();
    return false;
  }

 private:
  bool enter() {
    if (++depth_ <= max_json_depth) return true;
    error = "objects and arrays nested deeper than " + std::to_string(max_json_depth) + " levels";
    return false;
  }
  int depth_ = 0;
  std::unordered_set<std::string> keys_;
};

/// Parses JSON text without exceptions; on error `err` describes it (position included).
inline bool parse_json(const char* text, std::size_t n, nlohmann::json& out, std::string& err) {
  header_checker chk;
  nlohmann::json::sax_parse(text, text + n, &chk, nlohmann::json::input_format_t::json, true, false);
  if (!chk.error.empty()) return err = chk.error, false;
  if (!chk.duplicate.empty()) return err = "key \"" + chk.duplicate.substr(0, 80) + "\" appears twice", false;
  out = nlohmann::json::parse(text, text + n, nullptr, false);
  if (out.is_discarded()) return err = "not valid JSON", false;
  return true;
}

/// A short description of a JSON value for messages: its type, and its text when that is short
/// (`the number 5`, `a list`).
inline std::string json_brief(const nlohmann::json& v) {
  if (v.is_structured()) return v.is_array() ? "a list" : "an object";
  if (v.is_null()) return "null";
  const std::string text = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const char* kind = v.is_string() ? "the string " : v.is_boolean() ? "" : "the number ";
  return kind + (text.size() > 24 ? text.substr(0, 24) + "..." : text);
}

/// Reads a non-negative integer from a JSON value.
inline bool json_u64(const nlohmann::json& v, std::uint64_t& out) noexcept {
  if (v.is_number_unsigned()) return out = v.get<std::uint64_t>(), true;
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return out = static_cast<std::uint64_t>(v.get<std::int64_t>()), true;
  return false;
}

}  // namespace detail

/// A validated safetensors file: its tensors (sorted by offset) and metadata, with zero-copy
/// access to the data. Move-only; views stay valid while the object lives.
class safetensors_file {
 public:
  safetensors_file() = default;
  safetensors_file(safetensors_file&&) noexcept = default;
  safetensors_file& operator=(safetensors_file&&) noexcept = default;

  /// Maps `path` read-only and validates it (see the file comment). On error `out` is unchanged.
  static status open(const std::string& path, safetensors_file& out) {
    auto m = std::make_unique<detail::mapped_file>();
    LOWBIT_TRY(m->open(path));
    safetensors_file f;
    LOWBIT_TRY(parse(m->data(), m->size(), path, f));
    f.map_ = std::move(m);
    out = std::move(f);
    return {};
  }

  /// Validates the `size` bytes at `bytes` as a safetensors file named `origin` (in messages).
  /// The bytes are not copied: they must outlive `out`. On error `out` is unchanged.
  static status parse(const std::uint8_t* bytes, std::size_t size, const std::string& origin, safetensors_file& out) {
    const char* o = origin.c_str();
    if (size < 8) return status::error(errc::invalid_argument, "%s: truncated: %zu bytes, a safetensors file starts with an 8-byte header length", o, size);
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
    if (n > max_header_bytes)
      return status::error(errc::invalid_argument, "%s: header length %llu exceeds the limit of %llu bytes", o, static_cast<unsigned long long>(n),
                           static_cast<unsigned long long>(max_header_bytes));
    if (n > size - 8)
      return status::error(errc::invalid_argument, "%s: header length %llu runs past the end of the file (%zu bytes); truncated?", o,
                           static_cast<unsigned long long>(n), size);
    const std::uint8_t* h = bytes + 8;
    if (n < 2 || h[0] != '{') return status::error(errc::invalid_argument, "%s: header does not start with '{'", o);
    const std::int64_t bad = utf8_invalid_at(h, static_cast<std::size_t>(n));
    if (bad >= 0) return status::error(errc::invalid_argument, "%s: header is not valid UTF-8 (byte %lld of the header)", o, static_cast<long long>(bad));
    nlohmann::json j;
    std::string err;
    if (!detail::parse_json(reinterpret_cast<const char*>(h), static_cast<std::size_t>(n), j, err))
      return status::error(errc::invalid_argument, "%s: header is not valid JSON: %.150s", o, err.c_str());
    if (!j.is_object()) return status::error(errc::invalid_argument, "%s: header is not a JSON object", o);

    safetensors_file f;
    f.bytes_ = bytes;
    f.size_ = size;
    f.data_begin_ = 8 + n;
    f.origin_ = origin;
    const std::uint64_t data_size = size - 8 - n;
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& name = it.key();
      const char* t = name.c_str();
      const nlohmann::json& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) return status::error(errc::invalid_argument, "%s: __metadata__ is not a JSON object", o);
        for (auto m = v.begin(); m != v.end(); ++m) {
          if (!m.value().is_string())
            return status::error(errc::invalid_argument, "%s: __metadata__ entry \"%.80s\" is not a string", o, m.key().c_str());
          f.metadata_[m.key()] = m.value().get<std::string>();
        }
        continue;
      }
      if (!v.is_object()) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": entry is not a JSON object", o, t);
      tensor_info ti;
      ti.name = name;
      const auto d = v.find("dtype");
      if (d == v.end()) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": no \"dtype\"", o, t);
      if (!d->is_string())
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": \"dtype\" is %.40s, not a string such as \"F16\"", o, t, detail::json_brief(*d).c_str());
      if (!parse_st_dtype(d->get<std::string>(), ti.dtype))
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": unknown dtype \"%.20s\"", o, t, d->get<std::string>().c_str());
      const auto s = v.find("shape");
      if (s == v.end()) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": no \"shape\"", o, t);
      if (!s->is_array())
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": \"shape\" is %.40s, not a list", o, t, detail::json_brief(*s).c_str());
      std::uint64_t numel = 1;
      bool overflow = false;
      for (const auto& dim : *s) {
        std::uint64_t e = 0;
        if (!detail::json_u64(dim, e) || e > (std::uint64_t{1} << 62))
          return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": shape entries must be non-negative integers", o, t);
        ti.shape.push_back(static_cast<std::int64_t>(e));
        if (e != 0 && numel > (std::uint64_t{1} << 62) / e) overflow = true;
        numel *= e;
      }
      const auto off = v.find("data_offsets");
      std::uint64_t b = 0, e = 0;
      if (off == v.end() || !off->is_array() || off->size() != 2 || !detail::json_u64((*off)[0], b) || !detail::json_u64((*off)[1], e))
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": \"data_offsets\" must be two non-negative integers", o, t);
      for (auto k = v.begin(); k != v.end(); ++k)
        if (k.key() != "dtype" && k.key() != "shape" && k.key() != "data_offsets")
          return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": unexpected field \"%.40s\"", o, t, k.key().c_str());
      if (e < b) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": data_offsets [%llu, %llu] end before they begin", o, t,
                                      static_cast<unsigned long long>(b), static_cast<unsigned long long>(e));
      if (e > data_size)
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": data_offsets [%llu, %llu] out of range (data section has %llu bytes)", o, t,
                             static_cast<unsigned long long>(b), static_cast<unsigned long long>(e), static_cast<unsigned long long>(data_size));
      const std::uint64_t item = static_cast<std::uint64_t>(info(ti.dtype).size);
      if (overflow || numel > (std::uint64_t{1} << 62) / item)
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": shape %s of dtype %s needs more than 2^62 bytes, data_offsets give %llu", o, t,
                             s->dump().substr(0, 200).c_str(), info(ti.dtype).name, static_cast<unsigned long long>(e - b));
      if (numel * item != e - b)
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": shape and dtype %s need %llu bytes, data_offsets give %llu", o, t,
                             info(ti.dtype).name, static_cast<unsigned long long>(numel * item), static_cast<unsigned long long>(e - b));
      ti.begin = b;
      ti.end = e;
      f.tensors_.push_back(std::move(ti));
    }
    std::stable_sort(f.tensors_.begin(), f.tensors_.end(), [](const tensor_info& a, const tensor_info& c) {
      return a.begin != c.begin ? a.begin < c.begin : a.end < c.end;
    });
    std::uint64_t expected = 0;
    for (std::size_t i = 0; i < f.tensors_.size(); ++i) {
      const tensor_info& ti = f.tensors_[i];
      if (ti.begin < expected)
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": data_offsets [%llu, %llu] overlap tensor \"%.80s\"", o, ti.name.c_str(),
                             static_cast<unsigned long long>(ti.begin), static_cast<unsigned long long>(ti.end), f.tensors_[i - 1].name.c_str());
      if (ti.begin > expected)
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": data_offsets begin at %llu, leaving bytes [%llu, %llu) unused", o,
                             ti.name.c_str(), static_cast<unsigned long long>(ti.begin), static_cast<unsigned long long>(expected),
                             static_cast<unsigned long long>(ti.begin));
      expected = ti.end;
    }
    if (expected != data_size)
      return status::error(errc::invalid_argument, "%s: tensors cover %llu bytes of a %llu-byte data section (extra or missing bytes)", o,
                           static_cast<unsigned long long>(expected), static_cast<unsigned long long>(data_size));
    for (std::size_t i = 0; i < f.tensors_.size(); ++i) f.index_[f.tensors_[i].name] = i;
    out = std::move(f);
    return {};
  }

  /// The tensors, sorted by data offset.
  const std::vector<tensor_info>& tensors() const noexcept { return tensors_; }
  /// The tensor called `name`, or null.
  const tensor_info* find(const std::string& name) const noexcept {
    const auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
  }
  /// The first byte of `t`'s data inside the mapping (no alignment guaranteed; `t.nbytes()` bytes).
  const std::uint8_t* data(const tensor_info& t) const noexcept { return bytes_ + data_begin_ + t.begin; }
  /// `__metadata__` (empty if absent).
  const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }
  /// The path (or origin name) given to open/parse.
  const std::string& path() const noexcept { return origin_; }
  /// Size of the whole file in bytes.
  std::size_t file_size() const noexcept { return size_; }
  /// The whole file's first byte (in the mapping, or the bytes given to parse).
  const std::uint8_t* bytes() const noexcept { return bytes_; }

 private:
  std::unique_ptr<detail::mapped_file> map_;
  const std::uint8_t* bytes_ = nullptr;
  std::size_t size_ = 0;
  std::uint64_t data_begin_ = 0;
  std::string origin_;
  std::vector<tensor_info> tensors_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// ---- writing ------------------------------------------------------------------------------------

namespace detail {

inline status write_all(int fd, const void* p, std::size_t n, const std::string& path) noexcept {
  const auto* c = static_cast<const std::uint8_t*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return status::error(errc::io, "%s: write failed: %s", path.c_str(), std::strerror(errno));
    }
    c += w;
    n -= static_cast<std::size_t>(w);
  }
  return {};
}

/// `s` as a JSON string (quoted and escaped as nlohmann's dump() writes it; `s` is valid UTF-8).
inline std::string json_quote(const std::string& s) { return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

/// A shape as JSON: "[2,3]", "[]".
inline std::string json_shape(const std::vector<std::int64_t>& shape) {
  std::string r = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) r += (i ? "," : "") + std::to_string(shape[i]);
  return r + "]";
}

inline std::string parent_dir(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

/// fsyncs a folder so that a rename inside it is durable.
inline status sync_dir(const std::string& dir) noexcept {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return status::error(errc::io, "%s: cannot open folder: %s", dir.c_str(), std::strerror(errno));
  const int r = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (r != 0 && e != EINVAL) return status::error(errc::io, "%s: fsync of folder failed: %s", dir.c_str(), std::strerror(e));
  return {};
}

}  // namespace detail

/// A file written atomically: bytes go to a temporary file beside `path` (created with a unique
/// name), and `commit` flushes, fsyncs and renames it onto `path`. Until `commit` succeeds
/// `path` is untouched; `abort` (or destruction without commit) deletes the temporary file.
///
/// A file may begin with a region written last: `reserve_head(n)` before the first write leaves
/// its first `n` bytes for `commit(head, n)`, so that what is known only at the end (a header
/// that describes the data) still comes first in the file.
///
/// Bytes are staged in an 8 MB buffer. On Linux a file that grows past one buffer is written from
/// then on with O_DIRECT, one aligned buffer at a time: the data goes to the device without
/// being copied into the page cache first (the copy cost as much CPU as quantizing, and commit's
/// fsync then has almost nothing left to do). A file system that refuses direct I/O, or a
/// reserved head that is not a multiple of 4096 bytes (the buffers would start unaligned), gets
/// ordinary writes; the tail shorter than a buffer and the head are always ordinary writes.
class atomic_file {
 public:
  atomic_file() = default;
  atomic_file(const atomic_file&) = delete;
  atomic_file& operator=(const atomic_file&) = delete;
  ~atomic_file() { abort(); }

  /// Creates the temporary file for `path`. errc::io if it cannot be created.
  status open(const std::string& path) {
    abort();
    path_ = path;
    std::string tmpl = path + ".tmp-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    const int fd = ::mkstemp(buf.data());
    if (fd < 0) return status::error(errc::io, "%s: cannot create a temporary file beside it: %s", path.c_str(), std::strerror(errno));
    const mode_t um = ::umask(0);
    ::umask(um);
    (void)::fchmod(fd, 0666 & ~um);
    fd_ = fd;
    temp_ = buf.data();
    used_ = 0;
    head_ = 0;
    started_ = false;
    direct_tried_ = direct_ = false;
    if (!buffer_) {
      buffer_.reset(static_cast<std::uint8_t*>(std::aligned_alloc(direct_align, buffer_bytes)));
      if (!buffer_) {
        abort();
        return status::error(errc::out_of_memory, "%s: cannot allocate the %zu-byte write buffer", path.c_str(), buffer_bytes);
      }
    }
    return {};
  }
  /// Leaves the first `n` bytes of the file for `commit(head, n)`: the bytes `write` appends
  /// come after them. Only before the first write.
  status reserve_head(std::size_t n) {
    if (fd_ < 0) return status::error(errc::invalid_argument, "%s: reserve_head on a file that is not open", path_.c_str());
    if (started_ || head_ != 0) return status::error(errc::invalid_argument, "%s: reserve_head after the file was begun", path_.c_str());
    if (::lseek(fd_, static_cast<off_t>(n), SEEK_SET) < 0) {
      const status s = status::error(errc::io, "%s: cannot reserve %zu bytes at its start: %s", temp_.c_str(), n, std::strerror(errno));
      abort();
      return s;
    }
    head_ = n;
    return {};
  }
  /// Appends `n` bytes (buffered).
  status write(const void* p, std::size_t n) {
    if (fd_ < 0) return status::error(errc::invalid_argument, "%s: write on a file that is not open", path_.c_str());
    started_ = true;
    const auto* c = static_cast<const std::uint8_t*>(p);
    while (n > 0) {
      const std::size_t k = std::min(n, buffer_bytes - used_);
      std::memcpy(buffer_.get() + used_, c, k);
      used_ += k;
      c += k;
      n -= k;
      if (used_ == buffer_bytes) LOWBIT_TRY(flush_full());
    }
    return {};
  }
  /// Flushes, writes `head` (exactly the `reserve_head` size; none without a reserved head) at
  /// the start of the file, fsyncs, renames the temporary file onto the target and fsyncs the
  /// folder. On error the temporary file is deleted and the target is untouched.
  status commit(const void* head = nullptr, std::size_t n = 0) {
    if (fd_ < 0) return status::error(errc::invalid_argument, "%s: commit on a file that is not open", path_.c_str());
    if (n != head_) {
      const status s = status::error(errc::invalid_argument, "%s: a head of %zu bytes for the %zu bytes reserved at the start", path_.c_str(), n, head_);
      abort();
      return s;
    }
    status s = flush();
    if (s && n > 0) s = write_head(head, n);
    if (s && ::fsync(fd_) != 0) s = status::error(errc::io, "%s: fsync failed: %s", temp_.c_str(), std::strerror(errno));
    if (s && ::close(fd_) != 0) s = status::error(errc::io, "%s: close failed: %s", temp_.c_str(), std::strerror(errno));
    if (!s) {
      abort();
      return s;
    }
    fd_ = -1;
    if (::rename(temp_.c_str(), path_.c_str()) != 0) {
      s = status::error(errc::io, "%s: cannot rename the temporary file onto it: %s", path_.c_str(), std::strerror(errno));
      ::unlink(temp_.c_str());
      temp_.clear();
      return s;
    }
    temp_.clear();
    return detail::sync_dir(detail::parent_dir(path_));
  }
  /// Deletes the temporary file (no-op if none).
  void abort() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (!temp_.empty()) ::unlink(temp_.c_str());
    temp_.clear();
  }
  /// The temporary file's path while open (for a signal handler that must delete it), else "".
  const std::string& temp_path() const noexcept { return temp_; }

 private:
  static constexpr std::size_t buffer_bytes = std::size_t{8} << 20;
  static constexpr std::size_t direct_align = 4096;  // a multiple of every device's logical block
  static_assert(buffer_bytes % direct_align == 0, "whole buffers keep direct writes aligned");
  struct free_deleter {
    void operator()(std::uint8_t* p) const noexcept { std::free(p); }
  };
  // Turns O_DIRECT on or off for the rest of the file; false if the file system refuses.
  bool set_direct(bool on) noexcept {
#if defined(__linux__) && defined(O_DIRECT)
    const int fl = ::fcntl(fd_, F_GETFL);
    if (fl < 0 || ::fcntl(fd_, F_SETFL, on ? (fl | O_DIRECT) : (fl & ~O_DIRECT)) != 0) return false;
    direct_ = on;
    return true;
#else
    (void)on;
    return false;
#endif
  }
  // A full buffer, at a file offset of head_ plus a multiple of buffer_bytes.
  status flush_full() {
    if (!direct_tried_) {
      direct_tried_ = true;
      set_direct(true);
    }
    std::size_t done = 0;
    if (direct_) {
      ssize_t w;
      do {
        w = ::write(fd_, buffer_.get(), used_);
      } while (w < 0 && errno == EINTR);
      if (w < 0 && errno != EINVAL) return status::error(errc::io, "%s: write failed: %s", temp_.c_str(), std::strerror(errno));
      if (w > 0) done = static_cast<std::size_t>(w);
      // EINVAL (no direct I/O here) or a short write: ordinary writes from here on
      if (done < used_ && !set_direct(false)) return status::error(errc::io, "%s: cannot leave direct I/O: %s", temp_.c_str(), std::strerror(errno));
    }
    status s = done < used_ ? detail::write_all(fd_, buffer_.get() + done, used_ - done, temp_) : status{};
    used_ = 0;
    return s;
  }
  // The buffered tail (shorter than a buffer, so an ordinary write).
  status flush() {
    if (used_ == 0) return {};
    if (direct_ && !set_direct(false)) return status::error(errc::io, "%s: cannot leave direct I/O: %s", temp_.c_str(), std::strerror(errno));
    status s = detail::write_all(fd_, buffer_.get(), used_, temp_);
    used_ = 0;
    return s;
  }
  // The reserved head at offset 0 (after flush: an ordinary write, however the data went).
  status write_head(const void* p, std::size_t n) {
    if (direct_ && !set_direct(false)) return status::error(errc::io, "%s: cannot leave direct I/O: %s", temp_.c_str(), std::strerror(errno));
    const auto* c = static_cast<const std::uint8_t*>(p);
    std::size_t done = 0;
    while (done < n) {
      const ssize_t w = ::pwrite(fd_, c + done, n - done, static_cast<off_t>(done));
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return status::error(errc::io, "%s: write of the first %zu bytes failed: %s", temp_.c_str(), n, w < 0 ? std::strerror(errno) : "no progress");
      done += static_cast<std::size_t>(w);
    }
    return {};
  }
  int fd_ = -1;
  std::string path_;
  std::string temp_;
  std::unique_ptr<std::uint8_t, free_deleter> buffer_;
  std::size_t used_ = 0;
  std::size_t head_ = 0;  // bytes reserved at the start for commit
  bool started_ = false;  // write has been called
  bool direct_tried_ = false, direct_ = false;
};

/// Writes `content` to `path` atomically (see atomic_file).
inline status write_file_atomic(const std::string& path, const std::string& content) {
  atomic_file f;
  LOWBIT_TRY(f.open(path));
  LOWBIT_TRY(f.write(content.data(), content.size()));
  return f.commit();
}

/// A tensor to be written: name, dtype and shape (its byte count follows from them).
struct tensor_entry {
  std::string name;
  st_dtype dtype = st_dtype::U8;
  std::vector<std::int64_t> shape;

  /// Bytes of data.
  std::uint64_t nbytes() const noexcept {
    std::uint64_t n = static_cast<std::uint64_t>(info(dtype).size);
    for (auto d : shape) n *= static_cast<std::uint64_t>(d);
    return n;
  }
};

/// Streams a safetensors file: `open` fixes the tensor list (in data order) and reserves the
/// header's room; `write` appends data, tensor after tensor, in any pieces; `reshape` may make a
/// tensor not yet begun smaller (for data whose exact size is known only once it is made, given
/// to `open` at its largest); `commit` checks every byte was written, writes the header last, in
/// front of the data, and makes the file appear at its path atomically. Any error, or
/// destruction before `commit`, leaves no file behind.
///
/// The header is padded with spaces (as the format allows) so that the data starts at a multiple
/// of 4096 bytes: page-aligned for a memory mapping, and aligned for O_DIRECT from the first byte.
class safetensors_writer {
 public:
  /// Where the data starts: 8 + header length is a multiple of this.
  static constexpr std::uint64_t data_alignment = 4096;

  /// Starts writing `path`. Errors: an empty, repeated or "__metadata__" name, a negative
  /// dimension, a header past the reader's limit, an unusable temporary file.
  status open(const std::string& path, std::vector<tensor_entry> entries, const std::map<std::string, std::string>& metadata = {}) {
    std::unordered_set<std::string> seen;
    seen.reserve(entries.size());
    std::string m;  // the metadata object's JSON text, "" for none
    for (const auto& kv : metadata) {
      if (utf8_invalid_at(reinterpret_cast<const std::uint8_t*>(kv.first.data()), kv.first.size()) >= 0 ||
          utf8_invalid_at(reinterpret_cast<const std::uint8_t*>(kv.second.data()), kv.second.size()) >= 0)
        return status::error(errc::invalid_argument, "%s: metadata entry \"%.80s\" is not valid UTF-8", path.c_str(), kv.first.c_str());
      m += (m.empty() ? "{" : ",") + detail::json_quote(kv.first) + ":" + detail::json_quote(kv.second);
    }
    if (!m.empty()) m += "}";
    for (const auto& e : entries) {
      if (e.name.empty() || e.name == "__metadata__" || !seen.insert(e.name).second ||
          utf8_invalid_at(reinterpret_cast<const std::uint8_t*>(e.name.data()), e.name.size()) >= 0)
        return status::error(errc::invalid_argument, "%s: tensor name \"%.80s\" is empty, reserved, repeated or not UTF-8", path.c_str(), e.name.c_str());
      for (auto d : e.shape)
        if (d < 0) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": negative dimension", path.c_str(), e.name.c_str());
    }
    const std::size_t text = header_text(entries, m).size();
    const std::uint64_t n = (8 + text + data_alignment - 1) / data_alignment * data_alignment - 8;
    if (n > max_header_bytes)
      return status::error(errc::invalid_argument, "%s: the header of %zu tensors takes %llu bytes, past the limit of %llu", path.c_str(), entries.size(),
                           static_cast<unsigned long long>(n), static_cast<unsigned long long>(max_header_bytes));
    LOWBIT_TRY(file_.open(path));
    LOWBIT_TRY(file_.reserve_head(static_cast<std::size_t>(8 + n)));
    path_ = path;
    metadata_ = std::move(m);
    header_bytes_ = n;
    bounds_.clear();
    for (const auto& e : entries) bounds_.push_back({e.nbytes(), detail::json_shape(e.shape).size()});
    entries_ = std::move(entries);
    current_ = 0;
    written_ = 0;
    return {};
  }
  /// Gives tensor `i`, none of whose bytes is written yet, the shape `shape`: at most the bytes
  /// and the characters of the shape given to `open` (the header's room was made for those). A
  /// tensor of no bytes may take another shape of no bytes until commit, however far writing
  /// has gone. An error leaves the file open and the tensor as it was.
  status reshape(std::size_t i, const std::vector<std::int64_t>& shape) {
    if (i >= entries_.size()) return status::error(errc::invalid_argument, "%s: reshape of tensor %zu of %zu", path_.c_str(), i, entries_.size());
    const char* t = entries_[i].name.c_str();
    for (auto d : shape)
      if (d < 0) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": negative dimension", path_.c_str(), t);
    const tensor_entry e{entries_[i].name, entries_[i].dtype, shape};
    const bool begun = i < current_ || (i == current_ && written_ > 0);  // writing is at or past its bytes
    if (begun && (entries_[i].nbytes() != 0 || e.nbytes() != 0))
      return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": reshaped after writing reached it", path_.c_str(), t);
    if (e.nbytes() > bounds_[i].bytes || detail::json_shape(shape).size() > bounds_[i].shape_chars)
      return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": reshaped to %llu bytes, shape %s; the header has room for at most %llu bytes and %zu characters of shape",
                           path_.c_str(), t, static_cast<unsigned long long>(e.nbytes()), detail::json_shape(shape).c_str(),
                           static_cast<unsigned long long>(bounds_[i].bytes), bounds_[i].shape_chars);
    entries_[i].shape = shape;
    return {};
  }
  /// Appends `n` bytes of data; error (and the file is abandoned) if that runs past the last tensor.
  status write(const void* p, std::size_t n) {
    std::uint64_t left = n;
    while (current_ < entries_.size() && written_ + left >= entries_[current_].nbytes()) {
      left -= entries_[current_].nbytes() - written_;
      written_ = 0;
      ++current_;
    }
    if (current_ == entries_.size() && left > 0) {
      file_.abort();
      return status::error(errc::invalid_argument, "%s: %zu bytes written past the last tensor", path_.c_str(), n);
    }
    written_ += left;
    status s = file_.write(p, n);
    if (!s) file_.abort();
    return s;
  }
  /// Index of the tensor the next byte belongs to (entries().size() when complete).
  std::size_t current() const noexcept { return current_; }
  const std::vector<tensor_entry>& entries() const noexcept { return entries_; }
  /// Finishes the file: the header goes in front of the data, then the file appears at its path;
  /// error (nothing left behind) if any tensor is incomplete.
  status commit() {
    while (current_ < entries_.size() && written_ == 0 && entries_[current_].nbytes() == 0) ++current_;
    if (current_ != entries_.size()) {
      file_.abort();
      return status::error(errc::invalid_argument, "%s: tensor \"%.80s\" is incomplete (%llu of %llu bytes written)", path_.c_str(),
                           entries_[current_].name.c_str(), static_cast<unsigned long long>(written_),
                           static_cast<unsigned long long>(entries_[current_].nbytes()));
    }
    std::string head(8, '\0');
    for (int i = 0; i < 8; ++i) head[static_cast<std::size_t>(i)] = static_cast<char>(header_bytes_ >> (8 * i));
    head += header_text(entries_, metadata_);
    // Cannot happen: reshape keeps every offset and shape within what open made room for.
    if (head.size() > 8 + header_bytes_) {
      file_.abort();
      return status::error(errc::invalid_argument, "%s: the header of %zu bytes outgrew the %llu reserved for it", path_.c_str(), head.size() - 8,
                           static_cast<unsigned long long>(header_bytes_));
    }
    head.resize(static_cast<std::size_t>(8 + header_bytes_), ' ');
    return file_.commit(head.data(), head.size());
  }
  /// Abandons the file (deletes the temporary file).
  void abort() noexcept { file_.abort(); }
  /// The temporary file's path while writing.
  const std::string& temp_path() const noexcept { return file_.temp_path(); }

 private:
  // What open made the header's room for, per tensor.
  struct bound {
    std::uint64_t bytes;
    std::size_t shape_chars;
  };
  // The header JSON of `entries`, laid out one after another from offset 0, unpadded, with the
  // metadata object's text `metadata` ("" for none) first: the text nlohmann's dump() gives for
  // that object, written out directly in time linear in the number of tensors (a JSON object
  // built key by key would look each key up among those before it).
  static std::string header_text(const std::vector<tensor_entry>& entries, const std::string& metadata) {
    std::string h = "{";
    if (!metadata.empty()) h += "\"__metadata__\":" + metadata;
    std::uint64_t offset = 0;
    for (const auto& e : entries) {
      const std::uint64_t n = e.nbytes();
      if (h.size() > 1) h += ',';
      h += detail::json_quote(e.name);
      h += ":{\"dtype\":\"";
      h += info(e.dtype).name;
      h += "\",\"shape\":";
      h += detail::json_shape(e.shape);
      h += ",\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + n) + "]}";
      offset += n;
    }
    return h + "}";
  }
  atomic_file file_;
  std::string path_;
  std::string metadata_;
  std::uint64_t header_bytes_ = 0;
  std::vector<tensor_entry> entries_;
  std::vector<bound> bounds_;
  std::size_t current_ = 0;
  std::uint64_t written_ = 0;
};

}  // namespace io
LOWBIT_NAMESPACE_END
