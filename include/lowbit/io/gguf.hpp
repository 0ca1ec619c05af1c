// SPDX-License-Identifier: Apache-2.0
/// @file gguf.hpp
/// @brief GGUF files (llama.cpp/ggml): a validating, memory-mapped reader with zero-copy tensor
///        views, and a streaming, atomic writer whose files ggml's own loader accepts.
///
/// @par The format (version 3; ggml/include/gguf.h and ggml/src/gguf.cpp of ggml 0.9.x, the
/// source inside llama-cpp-python 0.3.36; docs/gguf.md)
/// Little-endian throughout. `"GGUF"` | u32 version | i64 tensor count | i64 key-value count |
/// the key-value pairs | the tensor infos | padding to the alignment | the data.
/// - A string is a u64 byte count and the bytes (no terminator).
/// - A key-value pair is a string key, a u32 value type (0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32,
///   6 f32, 7 bool (one byte), 8 string, 9 array, 10 u64, 11 i64, 12 f64) and the value; an array
///   is a u32 element type, a u64 count and the elements (ggml refuses arrays of arrays).
/// - A tensor info is a string name, a u32 dimension count (at most 4), the dimensions as i64,
///   innermost first (ggml's `ne`: a PyTorch [rows, cols] weight is stored as ne = {cols, rows}),
///   a u32 ggml type (ggml_blocks.hpp) and a u64 offset of its data from the start of the data.
/// - `general.alignment` (u32, a power of two) sets the alignment of the data section and of
///   every tensor's offset; 32 without it.
///
/// @par What the reader accepts
/// The file is a regular file; magic "GGUF"; version 2 or 3 (1 is the older 32-bit-count layout,
/// a version whose low 16 bits are 0 is a file of the other byte order); every count fits in the
/// bytes that remain (so a hostile count cannot make it allocate); keys non-empty and unique;
/// value types known, no array of arrays; `general.alignment`, if present, a u32 power of two;
/// tensor names unique; at most 4 dimensions, each >= 0, their product representable; a known
/// ggml type whose block divides the innermost dimension; offsets aligned, the data inside the
/// file, and no two tensors overlapping (ggml additionally requires them in file order with
/// minimal padding, which the writer produces). Errors are `lowbit::status` values
/// (errc::invalid_argument for bad content, errc::io for the operating system) that name the
/// file, the key or tensor, and the byte offset; nothing throws or prints.
#pragma once

#include "../ggml_blocks.hpp"
#include "safetensors.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

LOWBIT_NAMESPACE_BEGIN
namespace io {

/// A GGUF value type (gguf.h's `enum gguf_type`).
enum class gguf_type : std::uint32_t { u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9, u64 = 10, i64 = 11, f64 = 12 };

/// Bytes of one element of a fixed-size value type; 0 for string and array; -1 for an unknown type.
constexpr int gguf_type_size(std::uint32_t t) noexcept {
  constexpr int sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
  return t < 13 ? sizes[t] : -1;
}
/// Name of a value type as gguf.h spells it in its messages.
constexpr const char* gguf_type_name(std::uint32_t t) noexcept {
  constexpr const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"};
  return t < 13 ? names[t] : "unknown";
}

/// One metadata value: a scalar (count 1, `array` false) or an array of one element type.
/// Fixed-size elements are kept as their little-endian bytes; strings as std::string.
struct gguf_value {
  gguf_type type = gguf_type::u8;  ///< the element type
  bool array = false;
  std::vector<std::uint8_t> raw;     ///< count * gguf_type_size(type) bytes (not for strings)
  std::vector<std::string> strings;  ///< the strings (type string)

  std::uint64_t count() const noexcept {
    return type == gguf_type::string ? strings.size() : raw.size() / static_cast<std::size_t>(gguf_type_size(static_cast<std::uint32_t>(type)));
  }
  /// Element i as a signed integer: false if not an integer/bool type, out of range, or a u64 past INT64_MAX.
  bool get(std::uint64_t i, std::int64_t& out) const noexcept {
    const int sz = gguf_type_size(static_cast<std::uint32_t>(type));
    if (type == gguf_type::f32 || type == gguf_type::f64 || sz <= 0 || i >= count()) return false;
    std::uint64_t u = 0;
    for (int k = sz - 1; k >= 0; --k) u = (u << 8) | raw[static_cast<std::size_t>(i) * static_cast<std::size_t>(sz) + static_cast<std::size_t>(k)];
    const bool is_signed = type == gguf_type::i8 || type == gguf_type::i16 || type == gguf_type::i32 || type == gguf_type::i64;
    if (is_signed && sz < 8 && (u >> (8 * sz - 1)) != 0) u |= ~std::uint64_t{0} << (8 * sz);  // sign-extend
    if (!is_signed && u > static_cast<std::uint64_t>(INT64_MAX)) return false;
    out = static_cast<std::int64_t>(u);
    return true;
  }
  /// Element i as a double (any numeric type or bool; a 64-bit integer may round).
  bool get(std::uint64_t i, double& out) const noexcept {
    if (type == gguf_type::f32 || type == gguf_type::f64) {
      if (i >= count()) return false;
      if (type == gguf_type::f32) {
        float f;
        std::memcpy(&f, raw.data() + i * 4, 4);
        out = f;
      } else {
        std::memcpy(&out, raw.data() + i * 8, 8);
      }
      return true;
    }
    if (type == gguf_type::u64 && i < count()) {
      std::uint64_t u;
      std::memcpy(&u, raw.data() + i * 8, 8);
      out = static_cast<double>(u);
      return true;
    }
    std::int64_t v = 0;
    if (!get(i, v)) return false;
    out = static_cast<double>(v);
    return true;
  }

  /// A scalar of a fixed-size type (the bytes of `v`, which must have that type's size).
  template <class T>
  static gguf_value scalar(gguf_type t, T v) {
    static_assert(std::is_arithmetic<T>::value, "a number");
    gguf_value r;
    r.type = t;
    r.raw.resize(sizeof(T));
    std::memcpy(r.raw.data(), &v, sizeof(T));
    return r;
  }
  static gguf_value string(std::string s) {
    gguf_value r;
    r.type = gguf_type::string;
    r.strings.push_back(std::move(s));
    return r;
  }
  static gguf_value string_array(std::vector<std::string> s) {
    gguf_value r;
    r.type = gguf_type::string;
    r.array = true;
    r.strings = std::move(s);
    return r;
  }
};

/// One key-value pair of the metadata.
struct gguf_kv {
  std::string key;
  gguf_value value;
};

/// One tensor of a GGUF file.
struct gguf_tensor {
  std::string name;
  std::vector<std::int64_t> ne;  ///< dimensions, innermost first, as stored (ggml's order)
  std::uint32_t type = 0;        ///< ggml type id (ggml::type for the handled ones)
  std::uint64_t offset = 0;      ///< from the start of the data section
  std::uint64_t nbytes = 0;
  const std::uint8_t* data = nullptr;  ///< into the mapping (reader); null for the writer

  /// Dimensions outermost first (PyTorch/safetensors order): ne reversed.
  std::vector<std::int64_t> shape() const { return std::vector<std::int64_t>(ne.rbegin(), ne.rend()); }
  std::int64_t numel() const noexcept {
    std::int64_t n = 1;
    for (auto d : ne) n *= d;
    return n;
  }
};

namespace detail {

// A bounds-checked little-endian cursor over the header.
class gguf_cursor {
 public:
  gguf_cursor(const std::uint8_t* p, std::size_t n, const std::string& origin) : p_(p), n_(n), o_(origin) {}
  std::size_t pos() const noexcept { return i_; }
  std::size_t left() const noexcept { return n_ - i_; }
  template <class T>
  status read(T& v, const char* what) {
    if (left() < sizeof(T))
      return status::error(errc::invalid_argument, "%s: truncated: %s at byte %zu needs %zu bytes, %zu remain", o_.c_str(), what, i_, sizeof(T), left());
    std::memcpy(&v, p_ + i_, sizeof(T));
    i_ += sizeof(T);
    return {};
  }
  status bytes(std::uint64_t k, std::uint8_t* out, const char* what) {
    if (left() < k)
      return status::error(errc::invalid_argument, "%s: truncated: %s at byte %zu has %llu bytes, %zu remain", o_.c_str(), what, i_, static_cast<unsigned long long>(k), left());
    if (k > 0) std::memcpy(out, p_ + i_, static_cast<std::size_t>(k));
    i_ += static_cast<std::size_t>(k);
    return {};
  }
  status str(std::string& s, const char* what) {
    std::uint64_t k = 0;
    LOWBIT_TRY(read(k, what));
    if (k > left())
      return status::error(errc::invalid_argument, "%s: %s at byte %zu claims %llu bytes, only %zu remain", o_.c_str(), what, i_ - 8, static_cast<unsigned long long>(k), left());
    s.assign(reinterpret_cast<const char*>(p_ + i_), static_cast<std::size_t>(k));
    i_ += static_cast<std::size_t>(k);
    return {};
  }

 private:
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t i_ = 0;
  const std::string& o_;
};

inline void put_bytes(std::string& h, const void* p, std::size_t n) { h.append(static_cast<const char*>(p), n); }
template <class T>
inline void put(std::string& h, T v) {
  put_bytes(h, &v, sizeof(T));
}
inline void put_str(std::string& h, const std::string& s) {
  put(h, static_cast<std::uint64_t>(s.size()));
  h += s;
}

}  // namespace detail

/// True if `path` is a regular file whose first four bytes are "GGUF" (without blocking on a FIFO).
inline bool is_gguf_file(const std::string& path) noexcept {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return false;
  struct stat st {};
  char magic[4] = {};
  const bool ok = ::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ::read(fd, magic, 4) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
  ::close(fd);
  return ok;
}

/// A GGUF file, mapped read-only and validated (see the file comment).
class gguf_file {
 public:
  static constexpr std::uint32_t default_alignment = 32;

  /// Maps `path` and validates it. On error `out` is unchanged.
  static status open(const std::string& path, gguf_file& out) {
    auto m = std::make_unique<detail::mapped_file>();
    LOWBIT_TRY(m->open(path));
    gguf_file f;
    LOWBIT_TRY(parse(m->data(), m->size(), path, f));
    f.map_ = std::move(m);
    out = std::move(f);
    return {};
  }

  /// Validates `size` bytes at `bytes` as a GGUF file named `origin` (in messages). The bytes
  /// are not copied: they must outlive `out`. On error `out` is unchanged.
  static status parse(const std::uint8_t* bytes, std::size_t size, const std::string& origin, gguf_file& out) {
    const char* o = origin.c_str();
    if (size < 4 || std::memcmp(bytes, "GGUF", 4) != 0) return status::error(errc::invalid_argument, "%s: not a GGUF file (it does not start with \"GGUF\")", o);
    detail::gguf_cursor c(bytes + 4, size - 4, origin);
    gguf_file f;
    LOWBIT_TRY(c.read(f.version_, "the version"));
    if ((f.version_ & 0xFFFFu) == 0)
      return status::error(errc::invalid_argument, "%s: version %u: a GGUF file of the other byte order (big-endian), which lowbit does not read", o, f.version_);
    if (f.version_ < 2 || f.version_ > 3)
      return status::error(errc::invalid_argument, "%s: GGUF version %u; lowbit reads versions 2 and 3%s", o, f.version_,
                           f.version_ == 1 ? " (version 1 had 32-bit counts and is no longer read by ggml either)" : "");
    std::int64_t n_tensors = 0, n_kv = 0;
    LOWBIT_TRY(c.read(n_tensors, "the tensor count"));
    LOWBIT_TRY(c.read(n_kv, "the key-value count"));
    // Each pair takes at least 13 bytes (key length, type, one-byte value), each tensor info 24.
    if (n_kv < 0 || static_cast<std::uint64_t>(n_kv) > c.left() / 13)
      return status::error(errc::invalid_argument, "%s: key-value count %lld is impossible in the %zu bytes that follow", o, static_cast<long long>(n_kv), c.left());
    if (n_tensors < 0 || static_cast<std::uint64_t>(n_tensors) > c.left() / 24)
      return status::error(errc::invalid_argument, "%s: tensor count %lld is impossible in the %zu bytes that follow", o, static_cast<long long>(n_tensors), c.left());

    f.kv_.reserve(static_cast<std::size_t>(n_kv));
    for (std::int64_t i = 0; i < n_kv; ++i) {
      gguf_kv kv;
      const std::size_t at = c.pos() + 4;
      LOWBIT_TRY(c.str(kv.key, "a key"));
      if (kv.key.empty()) return status::error(errc::invalid_argument, "%s: key-value pair %lld (byte %zu) has an empty key", o, static_cast<long long>(i), at);
      if (f.kv_index_.count(kv.key) != 0) return status::error(errc::invalid_argument, "%s: key \"%.80s\" appears twice", o, kv.key.c_str());
      std::uint32_t t = 0;
      LOWBIT_TRY(c.read(t, "a value type"));
      std::uint64_t count = 1;
      if (t == static_cast<std::uint32_t>(gguf_type::array)) {
        kv.value.array = true;
        LOWBIT_TRY(c.read(t, "an array's element type"));
        LOWBIT_TRY(c.read(count, "an array's length"));
        if (t == static_cast<std::uint32_t>(gguf_type::array))
          return status::error(errc::invalid_argument, "%s: key \"%.80s\": an array of arrays, which ggml does not read", o, kv.key.c_str());
      }
      const int sz = gguf_type_size(t);
      if (sz < 0) return status::error(errc::invalid_argument, "%s: key \"%.80s\" has unknown value type %u", o, kv.key.c_str(), t);
      kv.value.type = static_cast<gguf_type>(t);
      if (t == static_cast<std::uint32_t>(gguf_type::string)) {
        if (count > c.left() / 8)
          return status::error(errc::invalid_argument, "%s: key \"%.80s\": %llu strings cannot fit in the %zu bytes that remain", o, kv.key.c_str(),
                               static_cast<unsigned long long>(count), c.left());
        kv.value.strings.resize(static_cast<std::size_t>(count));
        for (auto& s : kv.value.strings) LOWBIT_TRY(c.str(s, "a string value"));
      } else {
        if (count > c.left() / static_cast<std::uint64_t>(sz))
          return status::error(errc::invalid_argument, "%s: key \"%.80s\": %llu values of type %s cannot fit in the %zu bytes that remain", o, kv.key.c_str(),
                               static_cast<unsigned long long>(count), gguf_type_name(t), c.left());
        kv.value.raw.resize(static_cast<std::size_t>(count) * static_cast<std::size_t>(sz));
        LOWBIT_TRY(c.bytes(kv.value.raw.size(), kv.value.raw.data(), "a value"));
      }
      f.kv_index_.emplace(kv.key, f.kv_.size());
      f.kv_.push_back(std::move(kv));
    }
    if (const gguf_value* a = f.find("general.alignment")) {
      std::int64_t v = 0;
      if (a->type != gguf_type::u32 || a->array || !a->get(0, v))
        return status::error(errc::invalid_argument, "%s: general.alignment must be a u32, not %s%s", o, a->array ? "an array of " : "", gguf_type_name(static_cast<std::uint32_t>(a->type)));
      if (v == 0 || (v & (v - 1)) != 0) return status::error(errc::invalid_argument, "%s: general.alignment %lld is not a power of two", o, static_cast<long long>(v));
      f.alignment_ = static_cast<std::uint32_t>(v);
    }

    f.tensors_.reserve(static_cast<std::size_t>(n_tensors));
    for (std::int64_t i = 0; i < n_tensors; ++i) {
      gguf_tensor t;
      LOWBIT_TRY(c.str(t.name, "a tensor name"));
      const char* nm = t.name.c_str();
      if (f.tensor_index_.count(t.name) != 0) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\" appears twice", o, nm);
      std::uint32_t nd = 0;
      LOWBIT_TRY(c.read(nd, "a dimension count"));
      if (nd > 4) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\" has %u dimensions; GGUF allows at most 4", o, nm, nd);
      t.ne.resize(nd);
      std::uint64_t numel = 1;
      bool overflow = false;
      for (std::uint32_t d = 0; d < nd; ++d) {
        LOWBIT_TRY(c.read(t.ne[d], "a dimension"));
        if (t.ne[d] < 0) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": dimension %u is %lld", o, nm, d, static_cast<long long>(t.ne[d]));
        const auto u = static_cast<std::uint64_t>(t.ne[d]);
        if (u != 0 && numel > static_cast<std::uint64_t>(INT64_MAX) / u) overflow = true;
        numel *= u;
      }
      LOWBIT_TRY(c.read(t.type, "a tensor type"));
      ggml::type_traits tr{};
      if (!ggml::traits_of(t.type, tr)) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\" has ggml type %u, which names no type", o, nm, t.type);
      const std::int64_t inner = nd > 0 ? t.ne[0] : 1;
      if (inner % tr.block != 0)
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": rows of %lld elements are not a whole number of %s blocks of %d", o, nm,
                             static_cast<long long>(inner), tr.name, tr.block);
      if (overflow || (numel / static_cast<std::uint64_t>(tr.block)) > static_cast<std::uint64_t>(INT64_MAX) / static_cast<std::uint64_t>(tr.bytes))
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": its size overflows 64 bits", o, nm);
      t.nbytes = numel / static_cast<std::uint64_t>(tr.block) * static_cast<std::uint64_t>(tr.bytes);
      LOWBIT_TRY(c.read(t.offset, "a tensor offset"));
      if (t.offset % f.alignment_ != 0)
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": offset %llu is not a multiple of the alignment %u", o, nm, static_cast<unsigned long long>(t.offset),
                             f.alignment_);
      f.tensor_index_.emplace(t.name, f.tensors_.size());
      f.tensors_.push_back(std::move(t));
    }
    const std::uint64_t header_end = 4 + c.pos();
    f.data_offset_ = (header_end + f.alignment_ - 1) / f.alignment_ * f.alignment_;
    if (!f.tensors_.empty() && f.data_offset_ > size)
      return status::error(errc::invalid_argument, "%s: truncated: the data section would start at byte %llu of %zu", o, static_cast<unsigned long long>(f.data_offset_), size);
    const std::uint64_t data_bytes = f.tensors_.empty() ? 0 : size - f.data_offset_;
    std::vector<std::size_t> order(f.tensors_.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return f.tensors_[a].offset < f.tensors_[b].offset; });
    std::uint64_t end = 0;
    const gguf_tensor* prev = nullptr;
    for (std::size_t i : order) {
      gguf_tensor& t = f.tensors_[i];
      if (t.offset > data_bytes || t.nbytes > data_bytes - t.offset)
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": bytes [%llu, +%llu) of the data run past its end (%llu bytes; truncated?)", o, t.name.c_str(),
                             static_cast<unsigned long long>(t.offset), static_cast<unsigned long long>(t.nbytes), static_cast<unsigned long long>(data_bytes));
      if (prev != nullptr && t.offset < end && t.nbytes > 0)
        return status::error(errc::invalid_argument, "%s: tensors \"%.80s\" and \"%.80s\" overlap", o, prev->name.c_str(), t.name.c_str());
      if (t.nbytes > 0) {
        end = t.offset + t.nbytes;
        prev = &t;
      }
      t.data = bytes + f.data_offset_ + t.offset;
    }
    f.bytes_ = bytes;
    f.size_ = size;
    f.path_ = origin;
    out = std::move(f);
    return {};
  }

  /// The file's bytes and size (the mapping, or the bytes given to parse), and its name.
  const std::uint8_t* bytes() const noexcept { return bytes_; }
  std::size_t file_size() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }
  std::uint32_t version() const noexcept { return version_; }
  std::uint32_t alignment() const noexcept { return alignment_; }
  /// Byte offset of the data section in the file.
  std::uint64_t data_offset() const noexcept { return data_offset_; }
  const std::vector<gguf_kv>& metadata() const noexcept { return kv_; }
  const std::vector<gguf_tensor>& tensors() const noexcept { return tensors_; }
  /// The value of `key`, or null.
  const gguf_value* find(const std::string& key) const {
    auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kv_[it->second].value;
  }
  /// The tensor `name`, or null.
  const gguf_tensor* find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }

  /// Dequantizes tensor `t` (of this file) into `numel()` float32 values at `out`.
  /// errc::unsupported for a ggml type lowbit does not decode (named).
  static status dequantize(const gguf_tensor& t, float* out, int threads = 0) {
    ggml::type_traits tr{};
    if (!ggml::traits_of(t.type, tr) || !tr.handled)
      return status::error(errc::unsupported, "tensor \"%.80s\": ggml type %s is not one lowbit decodes (f32, f16, bf16, q8_0, q4_0, q4_1, mxfp4)", t.name.c_str(),
                           ggml::type_name(t.type));
    return ggml::dequantize(static_cast<ggml::type>(t.type), t.data, t.numel(), out, threads);
  }

 private:
  std::unique_ptr<detail::mapped_file> map_;
  const std::uint8_t* bytes_ = nullptr;
  std::size_t size_ = 0;
  std::string path_;
  std::uint32_t version_ = 3;
  std::uint32_t alignment_ = default_alignment;
  std::uint64_t data_offset_ = 0;
  std::vector<gguf_kv> kv_;
  std::unordered_map<std::string, std::size_t> kv_index_;
  std::vector<gguf_tensor> tensors_;
  std::unordered_map<std::string, std::size_t> tensor_index_;
};

/// Streams a GGUF v3 file in the layout ggml writes and requires: `open` writes the header (the
/// metadata and the tensor infos, offsets assigned in the given order, each padded to the
/// alignment); `write` appends tensor data in that order, in any pieces, the padding after each
/// tensor inserted for the caller; `commit` checks every byte was written and makes the file
/// appear at its path atomically. Any error, or destruction before `commit`, leaves no file.
class gguf_writer {
 public:
  /// Starts writing `path`. `tensors` give name, ne (innermost first), type; their offsets are
  /// assigned here. A `general.alignment` entry in `metadata`, if any, must be a u32 power of two
  /// and is the alignment; else 32 (and no entry is added). Errors: an empty or repeated key or
  /// tensor name, a name of 64 bytes or more (ggml's limit, GGML_MAX_NAME), more than 4 or
  /// negative dimensions, an unknown type, rows not a whole number of blocks.
  status open(const std::string& path, const std::vector<gguf_kv>& metadata, std::vector<gguf_tensor> tensors) {
    const char* p = path.c_str();
    alignment_ = gguf_file::default_alignment;
    std::unordered_set<std::string> seen;
    std::string h("GGUF", 4);
    detail::put(h, std::uint32_t{3});
    detail::put(h, static_cast<std::int64_t>(tensors.size()));
    detail::put(h, static_cast<std::int64_t>(metadata.size()));
    for (const auto& kv : metadata) {
      if (kv.key.empty() || !seen.insert(kv.key).second) return status::error(errc::invalid_argument, "%s: metadata key \"%.80s\" is empty or repeated", p, kv.key.c_str());
      const auto t = static_cast<std::uint32_t>(kv.value.type);
      const int sz = gguf_type_size(t);
      if (sz < 0 || t == static_cast<std::uint32_t>(gguf_type::array))
        return status::error(errc::invalid_argument, "%s: metadata key \"%.80s\": element type %u is not a GGUF value type", p, kv.key.c_str(), t);
      if (t != static_cast<std::uint32_t>(gguf_type::string) && kv.value.raw.size() % static_cast<std::size_t>(sz) != 0)
        return status::error(errc::invalid_argument, "%s: metadata key \"%.80s\": %zu bytes are not whole %s values", p, kv.key.c_str(), kv.value.raw.size(), gguf_type_name(t));
      if (!kv.value.array && kv.value.count() != 1)
        return status::error(errc::invalid_argument, "%s: metadata key \"%.80s\": a scalar with %llu values", p, kv.key.c_str(), static_cast<unsigned long long>(kv.value.count()));
      if (kv.key == "general.alignment") {
        std::int64_t v = 0;
        if (kv.value.type != gguf_type::u32 || kv.value.array || !kv.value.get(0, v) || v == 0 || (v & (v - 1)) != 0)
          return status::error(errc::invalid_argument, "%s: general.alignment must be a u32 power of two", p);
        alignment_ = static_cast<std::uint32_t>(v);
      }
      detail::put_str(h, kv.key);
      if (kv.value.array) {
        detail::put(h, static_cast<std::uint32_t>(gguf_type::array));
        detail::put(h, t);
        detail::put(h, static_cast<std::uint64_t>(kv.value.count()));
      } else {
        detail::put(h, t);
      }
      if (t == static_cast<std::uint32_t>(gguf_type::string))
        for (const auto& s : kv.value.strings) detail::put_str(h, s);
      else
        detail::put_bytes(h, kv.value.raw.data(), kv.value.raw.size());
    }
    seen.clear();
    std::uint64_t offset = 0;
    for (auto& t : tensors) {
      const char* nm = t.name.c_str();
      if (t.name.empty() || !seen.insert(t.name).second) return status::error(errc::invalid_argument, "%s: tensor name \"%.80s\" is empty or repeated", p, nm);
      if (t.name.size() >= 64) return status::error(errc::invalid_argument, "%s: tensor name \"%.80s\" has %zu bytes; ggml reads at most 63", p, nm, t.name.size());
      if (t.ne.size() > 4) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\" has %zu dimensions; GGUF allows at most 4", p, nm, t.ne.size());
      ggml::type_traits tr{};
      if (!ggml::traits_of(t.type, tr)) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": ggml type %u names no type", p, nm, t.type);
      std::uint64_t numel = 1;
      for (auto d : t.ne) {
        if (d < 0) return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": negative dimension", p, nm);
        if (d != 0 && numel > static_cast<std::uint64_t>(INT64_MAX) / static_cast<std::uint64_t>(d))
          return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": its size overflows 64 bits", p, nm);
        numel *= static_cast<std::uint64_t>(d);
      }
      if ((t.ne.empty() ? 1 : t.ne[0]) % tr.block != 0)
        return status::error(errc::invalid_argument, "%s: tensor \"%.80s\": rows of %lld elements are not a whole number of %s blocks of %d", p, nm,
                             static_cast<long long>(t.ne.empty() ? 1 : t.ne[0]), tr.name, tr.block);
      t.nbytes = numel / static_cast<std::uint64_t>(tr.block) * static_cast<std::uint64_t>(tr.bytes);
      t.offset = offset;
      t.data = nullptr;
      offset += pad(t.nbytes);
      detail::put_str(h, t.name);
      detail::put(h, static_cast<std::uint32_t>(t.ne.size()));
      for (auto d : t.ne) detail::put(h, d);
      detail::put(h, t.type);
      detail::put(h, t.offset);
    }
    if (!tensors.empty()) h.resize(static_cast<std::size_t>(pad(h.size())), '\0');
    LOWBIT_TRY(file_.open(path));
    path_ = path;
    tensors_ = std::move(tensors);
    current_ = 0;
    written_ = 0;
    const status s = file_.write(h.data(), h.size());
    if (!s) file_.abort();
    return s;
  }

  /// Appends `n` bytes of tensor data; an error (and the file is abandoned) past the last tensor.
  status write(const void* data, std::size_t n) {
    const auto* c = static_cast<const std::uint8_t*>(data);
    while (n > 0) {
      skip_empty();
      if (current_ == tensors_.size()) {
        file_.abort();
        return status::error(errc::invalid_argument, "%s: %zu bytes written past the last tensor", path_.c_str(), n);
      }
      const std::uint64_t k = std::min<std::uint64_t>(n, tensors_[current_].nbytes - written_);
      status s = file_.write(c, static_cast<std::size_t>(k));
      written_ += k;
      c += k;
      n -= static_cast<std::size_t>(k);
      if (s && written_ == tensors_[current_].nbytes) s = finish_tensor();
      if (!s) {
        file_.abort();
        return s;
      }
    }
    return {};
  }
  /// Index of the tensor the next byte belongs to (tensors().size() when complete).
  std::size_t current() noexcept {
    skip_empty();
    return current_;
  }
  /// The tensors with their assigned offsets and sizes.
  const std::vector<gguf_tensor>& tensors() const noexcept { return tensors_; }
  /// Finishes the file; an error (nothing left behind) if a tensor is incomplete.
  status commit() {
    skip_empty();
    if (current_ != tensors_.size()) {
      file_.abort();
      return status::error(errc::invalid_argument, "%s: tensor \"%.80s\" is incomplete (%llu of %llu bytes written)", path_.c_str(), tensors_[current_].name.c_str(),
                           static_cast<unsigned long long>(written_), static_cast<unsigned long long>(tensors_[current_].nbytes));
    }
    return file_.commit();
  }
  void abort() noexcept { file_.abort(); }
  const std::string& temp_path() const noexcept { return file_.temp_path(); }

 private:
  std::uint64_t pad(std::uint64_t n) const noexcept { return (n + alignment_ - 1) / alignment_ * alignment_; }
  void skip_empty() noexcept {
    while (current_ < tensors_.size() && written_ == 0 && tensors_[current_].nbytes == 0) ++current_;
  }
  // Pads the finished tensor to the alignment (the last one too, as ggml's writer does and its
  // reader expects) and moves to the next.
  status finish_tensor() {
    const std::uint64_t fill = pad(written_) - written_;
    ++current_;
    written_ = 0;
    if (fill == 0) return {};
    static const std::uint8_t zeros[256] = {};
    std::uint64_t left = fill;
    while (left > 0) {
      const std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(left, sizeof(zeros)));
      LOWBIT_TRY(file_.write(zeros, k));
      left -= k;
    }
    return {};
  }
  atomic_file file_;
  std::string path_;
  std::uint32_t alignment_ = gguf_file::default_alignment;
  std::vector<gguf_tensor> tensors_;
  std::size_t current_ = 0;
  std::uint64_t written_ = 0;
};

}  // namespace io
LOWBIT_NAMESPACE_END
