// SPDX-License-Identifier: Apache-2.0
// The lowbit half of bnb_interop.py (which documents the protocol): loads DIR/bnb.safetensors,
// checks that every weight dequantizes to exactly DIR/expected.safetensors (and the weights of
// DIR/cpu_packed.safetensors to DIR/cpu_packed_expected.safetensors), writes
// roundtrip.safetensors (everything read back out), fresh.safetensors (the expected tensors
// quantized by lowbit) and fresh_expected.safetensors (lowbit's dequantization of those).
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

namespace io = lowbit::io;

namespace bnb_loader {
namespace {

int failures = 0;

void fail_status(const char* what, const lowbit::status& s) {
  std::printf("FAIL: %s: %s\n", what, s.message());
  ++failures;
}

lowbit::status load(const io::checkpoint& c, const std::string& name, lowbit::quant_tensor& q) {
  if (io::has_bnb_quant_state(c, name)) return io::load_bnb_4bit(c, name, q);
  return io::load_bnb_int8(c, name, q);
}

// Writes `tensors` (each quantized, or dense bytes) to `path`.
struct item {
  std::string name;
  const lowbit::quant_tensor* q = nullptr;
  io::tensor_entry dense;
  const void* bytes = nullptr;
};

lowbit::status write_items(const std::string& path, const std::vector<item>& items) {
  std::vector<io::tensor_entry> entries;
  for (const auto& it : items) {
    if (it.q) {
      std::vector<io::tensor_entry> e;
      LOWBIT_TRY(io::bnb_entries(it.name, *it.q, e));
      entries.insert(entries.end(), e.begin(), e.end());
    } else {
      entries.push_back(it.dense);
    }
  }
  io::safetensors_writer w;
  LOWBIT_TRY(w.open(path, entries, {{"format", "pt"}}));
  for (const auto& it : items) {
    if (it.q) LOWBIT_TRY(io::write_bnb(w, *it.q));
    else LOWBIT_TRY(w.write(it.bytes, it.dense.nbytes()));
  }
  return w.commit();
}

// Dequantizes `q` (weight `name`) to its source dtype and compares with `name` in `expected`.
void check_dequantization(const std::string& name, const lowbit::quant_tensor& q, const io::checkpoint& expected) {
  const auto want = expected.find(name);
  std::vector<std::uint8_t> got(static_cast<std::size_t>(q.numel()) * static_cast<std::size_t>(lowbit::dtype_size(q.source_dtype())));
  if (auto s = lowbit::dequantize(q, got.data(), q.source_dtype()); !s) return fail_status(name.c_str(), s);
  if (got.size() != want.tensor->nbytes() || std::memcmp(got.data(), want.file->data(*want.tensor), got.size()) != 0) {
    std::size_t bad = 0;
    for (std::size_t k = 0; k < got.size() && k < want.tensor->nbytes(); ++k) bad += got[k] != want.file->data(*want.tensor)[k];
    std::printf("FAIL: %s: lowbit's dequantization differs from the reference in %zu of %zu bytes\n", name.c_str(), bad, got.size());
    ++failures;
  } else {
    std::printf("ok: %s (%s%s, %lld values) dequantizes bit-exactly\n", name.c_str(), lowbit::info(q.fmt()).name,
                q.double_quantized() ? " + double quant" : "", static_cast<long long>(q.numel()));
  }
}

}  // namespace

// io_interop_loader bnb DIR (interop_loader_main.cpp): argv[0] is "bnb", argv[1] DIR.
int run(int argc, char** argv) {
  if (argc != 2) return std::fprintf(stderr, "usage: io_interop_loader bnb DIR\n"), 2;
  const std::string dir = argv[1];
  io::checkpoint bnb, expected;
  if (auto s = io::checkpoint::open(dir + "/bnb.safetensors", bnb); !s) return fail_status("open bnb.safetensors", s), 1;
  if (auto s = io::checkpoint::open(dir + "/expected.safetensors", expected); !s) return fail_status("open expected.safetensors", s), 1;

  std::vector<lowbit::quant_tensor> loaded(expected.names().size());
  std::set<std::string> layout_names;
  for (std::size_t i = 0; i < expected.names().size(); ++i) {
    const std::string& name = expected.names()[i];
    if (auto s = load(bnb, name, loaded[i]); !s) return fail_status(name.c_str(), s), 1;
    const lowbit::quant_tensor& q = loaded[i];
    check_dequantization(name, q, expected);
    std::vector<io::tensor_entry> e;
    if (auto s = io::bnb_entries(name, q, e); !s) return fail_status(name.c_str(), s), 1;
    for (const auto& x : e) layout_names.insert(x.name);
  }

  // The weights saved after a CPU forward pass: dequantization only (they are written back in the
  // ordinary layout, so they take no part in the roundtrip).
  io::checkpoint packed, packed_expected;
  if (auto s = io::checkpoint::open(dir + "/cpu_packed.safetensors", packed); !s) return fail_status("open cpu_packed.safetensors", s), 1;
  if (auto s = io::checkpoint::open(dir + "/cpu_packed_expected.safetensors", packed_expected); !s)
    return fail_status("open cpu_packed_expected.safetensors", s), 1;
  for (const auto& name : packed_expected.names()) {
    lowbit::quant_tensor q;
    if (auto s = io::load_bnb_4bit(packed, name, q); !s) return fail_status(name.c_str(), s), 1;
    check_dequantization(name, q, packed_expected);
  }

  // Everything back out: the loaded weights through write_bnb, the rest as they were.
  std::vector<item> items;
  for (std::size_t i = 0; i < expected.names().size(); ++i) items.push_back({expected.names()[i], &loaded[i], {}, nullptr});
  for (const auto& name : bnb.names()) {
    if (layout_names.count(name)) continue;
    const auto l = bnb.find(name);
    items.push_back({name, nullptr, {name, l.tensor->dtype, l.tensor->shape}, l.file->data(*l.tensor)});
  }
  if (auto s = write_items(dir + "/roundtrip.safetensors", items); !s) fail_status("roundtrip.safetensors", s);

  // Fresh quantization of the expected tensors: NF4 + double quant for the 4-bit weights,
  // LLM.int8 (row-wise) for the int8 one.
  std::vector<lowbit::quant_tensor> fresh(expected.names().size());
  std::vector<std::vector<std::uint8_t>> fresh_dense(expected.names().size());
  std::vector<item> fresh_items, dense_items;
  for (std::size_t i = 0; i < expected.names().size(); ++i) {
    const std::string& name = expected.names()[i];
    const auto l = expected.find(name);
    lowbit::dtype dt;
    if (!io::to_dtype(l.tensor->dtype, dt)) return std::printf("FAIL: %s: not a float tensor\n", name.c_str()), 1;
    lowbit::quantize_params p;
    if (loaded[i].fmt() == lowbit::format::int8_absmax) {
      p.fmt = lowbit::format::int8_absmax;
      p.gran = lowbit::granularity::per_row();
    } else {
      p.double_quant = true;
    }
    if (auto s = lowbit::quantize(l.file->data(*l.tensor), dt, l.tensor->shape, p, fresh[i]); !s) return fail_status(name.c_str(), s), 1;
    fresh_dense[i].resize(l.tensor->nbytes());
    if (auto s = lowbit::dequantize(fresh[i], fresh_dense[i].data(), dt); !s) return fail_status(name.c_str(), s), 1;
    fresh_items.push_back({name, &fresh[i], {}, nullptr});
    dense_items.push_back({name, nullptr, {name, l.tensor->dtype, l.tensor->shape}, fresh_dense[i].data()});
  }
  if (auto s = write_items(dir + "/fresh.safetensors", fresh_items); !s) fail_status("fresh.safetensors", s);
  if (auto s = write_items(dir + "/fresh_expected.safetensors", dense_items); !s) fail_status("fresh_expected.safetensors", s);
  return failures == 0 ? 0 : 1;
}

}  // namespace bnb_loader
