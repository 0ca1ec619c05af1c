// SPDX-License-Identifier: Apache-2.0
// bitsandbytes layouts in C++: quantize -> write_bnb -> load gives back every stored byte and the
// same dequantization; damaged layouts (unknown quant_type, wrong shapes or dtypes, bad quant_state
// JSON) are errors that name the file and tensor. The independent layout check is bnb_interop.py.
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include "io_test_util.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace io = lowbit::io;
using lowbit_test::scratch_dir;

namespace {

std::vector<float> random_weights(std::size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<float> w(n);
  for (auto& v : w) v = nd(rng);
  return w;
}

// Writes `q` as `name` plus a dense bias into `path`.
void write_file(const std::string& path, const std::string& name, const lowbit::quant_tensor& q) {
  std::vector<io::tensor_entry> e;
  ASSERT_TRUE(io::bnb_entries(name, q, e).ok());
  e.push_back({"bias", io::st_dtype::F32, {1}});
  io::safetensors_writer w;
  ASSERT_TRUE(w.open(path, e).ok());
  ASSERT_TRUE(io::write_bnb(w, q).ok());
  const float b = 0.5f;
  ASSERT_TRUE(w.write(&b, 4).ok());
  ASSERT_TRUE(w.commit().ok());
}

bool same(const void* a, const void* b, std::size_t n) { return n == 0 || std::memcmp(a, b, n) == 0; }

struct layout_case {
  lowbit::format fmt;
  bool dq;
  std::int64_t block;
  std::int64_t rows, cols;
};

}  // namespace

class BnbRoundTrip : public ::testing::TestWithParam<layout_case> {};

TEST_P(BnbRoundTrip, WriteThenLoadKeepsEveryByte) {
  LOWBIT_SEED_TRACE();
  const layout_case c = GetParam();
  std::mt19937_64 rng(lowbit_test::test_seed() + static_cast<std::uint64_t>(c.rows * 7 + c.cols));
  const auto w = random_weights(static_cast<std::size_t>(c.rows * c.cols), rng);
  lowbit::quantize_params p;
  p.fmt = c.fmt;
  p.double_quant = c.dq;
  p.gran = c.fmt == lowbit::format::int8_absmax ? lowbit::granularity::per_row() : lowbit::granularity::per_block(c.block);
  lowbit::quant_tensor q;
  ASSERT_TRUE(lowbit::quantize(w.data(), lowbit::dtype::f32, {c.rows, c.cols}, p, q).ok());
  scratch_dir d;
  write_file(d / "m.safetensors", "layer.weight", q);
  io::checkpoint ck;
  ASSERT_TRUE(io::checkpoint::open(d / "m.safetensors", ck).ok());
  lowbit::quant_tensor r;
  const lowbit::status s = c.fmt == lowbit::format::int8_absmax ? io::load_bnb_int8(ck, "layer.weight", r) : io::load_bnb_4bit(ck, "layer.weight", r);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(r.fmt(), q.fmt());
  EXPECT_EQ(r.shape(), q.shape());
  EXPECT_EQ(r.block_size(), q.block_size());
  EXPECT_EQ(r.double_quantized(), q.double_quantized());
  EXPECT_TRUE(same(r.codes(), q.codes(), static_cast<std::size_t>(lowbit::code_bytes(q.fmt(), q.numel()))));
  if (q.double_quantized()) {
    EXPECT_TRUE(same(r.nested_codes(), q.nested_codes(), static_cast<std::size_t>(q.blocks())));
    EXPECT_TRUE(same(r.nested_scales(), q.nested_scales(), static_cast<std::size_t>(lowbit::quant::block_count(q.blocks(), 256)) * 4));
    EXPECT_EQ(lowbit_test::bits_of(r.nested_offset()), lowbit_test::bits_of(q.nested_offset()));
  } else {
    EXPECT_TRUE(same(r.scales(), q.scales(), static_cast<std::size_t>(q.blocks()) * 4));
  }
  if (c.fmt != lowbit::format::int8_absmax) {
    EXPECT_EQ(r.source_dtype(), lowbit::dtype::f32);
  }
  // Same values when decoded (FP4's code 8 decodes to +0 from the written table, -0 built in).
  std::vector<float> a(w.size()), b(w.size());
  ASSERT_TRUE(lowbit::dequantize(q, a.data(), lowbit::dtype::f32).ok());
  ASSERT_TRUE(lowbit::dequantize(r, b.data(), lowbit::dtype::f32).ok());
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "element " << i;
  // Writing the loaded tensor again gives the same file, byte for byte.
  write_file(d / "again.safetensors", "layer.weight", r);
  EXPECT_EQ(lowbit_test::read_bytes(d / "again.safetensors"), lowbit_test::read_bytes(d / "m.safetensors"));
}

INSTANTIATE_TEST_SUITE_P(Layouts, BnbRoundTrip,
                         ::testing::Values(layout_case{lowbit::format::nf4, true, 64, 96, 130}, layout_case{lowbit::format::nf4, false, 64, 3, 7},
                                           layout_case{lowbit::format::bnb_fp4, true, 128, 300, 257},
                                           layout_case{lowbit::format::bnb_fp4, false, 32, 16, 48},
                                           layout_case{lowbit::format::int8_absmax, false, 0, 33, 65}));

TEST(BnbLayout, QuantStateJsonIsBitsandbytesText) {
  std::vector<float> w(4096, 0.25f);
  w[7] = -1.0f;
  lowbit::quantize_params p;
  p.double_quant = true;
  lowbit::quant_tensor q;
  ASSERT_TRUE(lowbit::quantize(w.data(), lowbit::dtype::f32, {64, 64}, p, q).ok());
  const std::string expect = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [64, 64], \"nested_blocksize\": 256, "
                             "\"nested_dtype\": \"float32\", \"nested_offset\": " + io::python_float_repr(static_cast<double>(q.nested_offset())) + "}";
  EXPECT_EQ(io::bnb_quant_state_json(q), expect);
}

// python_float_repr_max bounds the text of every double, and is reached; bnb_entries_largest
// gives the quant_state tensor room for any nested offset and leaves the other tensors as they are.
TEST(BnbLayout, LargestEntriesHoldEveryNestedOffset) {
  EXPECT_EQ(io::python_float_repr(-2.2250738585072014e-308).size(), io::python_float_repr_max);
  std::mt19937_64 rng(lowbit_test::test_seed());
  for (int i = 0; i < 200000; ++i) {  // random bit patterns: every exponent, 17-digit mantissas
    const std::uint64_t bits = rng();
    double x;
    std::memcpy(&x, &bits, 8);
    if (!std::isfinite(x)) continue;
    ASSERT_LE(io::python_float_repr(x).size(), io::python_float_repr_max) << io::python_float_repr(x);
  }
  for (auto fmt : {lowbit::format::nf4, lowbit::format::bnb_fp4}) {
    io::bnb_layout l{fmt, lowbit::dtype::bf16, {300, 257}, 64, true, 0.0f};
    std::vector<io::tensor_entry> largest;
    ASSERT_TRUE(io::bnb_entries_largest("w", l, largest).ok());
    for (float offset : {0.0f, 1.0f, 0.1f, 0.0306f, 3.4028235e38f, 1.4e-45f, 1.1754942e-38f}) {
      l.nested_offset = offset;
      std::vector<io::tensor_entry> exact, again;
      ASSERT_TRUE(io::bnb_entries("w", l, exact).ok());
      ASSERT_TRUE(io::bnb_entries_largest("w", l, again).ok());
      ASSERT_EQ(exact.size(), largest.size());
      for (std::size_t k = 0; k < exact.size(); ++k) {
        EXPECT_EQ(exact[k].name, largest[k].name);
        EXPECT_EQ(exact[k].dtype, largest[k].dtype);
        EXPECT_EQ(again[k].shape, largest[k].shape) << "the largest entries depend on the offset " << offset;
        if (k + 1 < exact.size()) EXPECT_EQ(exact[k].shape, largest[k].shape) << exact[k].name;
        else EXPECT_LE(exact[k].nbytes(), largest[k].nbytes()) << offset;
      }
      EXPECT_EQ(largest.back().nbytes() - exact.back().nbytes(), io::python_float_repr_max - io::python_float_repr(static_cast<double>(offset)).size());
    }
  }
  io::bnb_layout plain{lowbit::format::nf4, lowbit::dtype::f16, {64, 64}, 64, false, 0.0f};  // no offset in the JSON
  std::vector<io::tensor_entry> exact, largest;
  ASSERT_TRUE(io::bnb_entries("w", plain, exact).ok());
  ASSERT_TRUE(io::bnb_entries_largest("w", plain, largest).ok());
  ASSERT_EQ(exact.size(), largest.size());
  EXPECT_EQ(exact.back().shape, largest.back().shape);
}

namespace {

// A valid NF4 + double quant file as raw tensors, damaged by `edit`, must be rejected by
// load_bnb_4bit with a message holding `part`.
struct raw_tensor {
  std::string name;
  io::st_dtype dtype;
  std::vector<std::int64_t> shape;
  std::string bytes;
};

std::vector<raw_tensor> valid_nf4() {
  lowbit::quant_tensor q;
  std::vector<float> w(64 * 10, 0.5f);
  lowbit::quantize_params p;
  p.double_quant = true;
  EXPECT_TRUE(lowbit::quantize(w.data(), lowbit::dtype::f32, {10, 64}, p, q).ok());
  scratch_dir d;
  write_file(d / "v.safetensors", "l.weight", q);
  io::safetensors_file f;
  EXPECT_TRUE(io::safetensors_file::open(d / "v.safetensors", f).ok());
  std::vector<raw_tensor> out;
  for (const auto& t : f.tensors()) out.push_back({t.name, t.dtype, t.shape, std::string(reinterpret_cast<const char*>(f.data(t)), t.nbytes())});
  return out;
}

template <class Edit>
void expect_load_error(Edit edit, const char* part) {
  auto t = valid_nf4();
  edit(t);
  scratch_dir d;
  std::vector<io::tensor_entry> e;
  for (auto& x : t) {
    if (x.dtype == io::st_dtype::U8 && x.name.find("quant_state") != std::string::npos) x.shape = {static_cast<std::int64_t>(x.bytes.size())};
    e.push_back({x.name, x.dtype, x.shape});
  }
  io::safetensors_writer w;
  ASSERT_TRUE(w.open(d / "bad.safetensors", e).ok());
  for (const auto& x : t) ASSERT_TRUE(w.write(x.bytes.data(), x.bytes.size()).ok()) << x.name;
  ASSERT_TRUE(w.commit().ok());
  io::checkpoint c;
  ASSERT_TRUE(io::checkpoint::open(d / "bad.safetensors", c).ok());
  lowbit::quant_tensor q;
  const lowbit::status s = io::load_bnb_4bit(c, "l.weight", q);
  ASSERT_FALSE(s.ok()) << "accepted; expected an error about " << part;
  EXPECT_NE(std::strstr(s.message(), part), nullptr) << s.message();
  EXPECT_NE(std::strstr(s.message(), "bad.safetensors"), nullptr) << s.message();
}

raw_tensor& find(std::vector<raw_tensor>& t, const std::string& name) {
  for (auto& x : t)
    if (x.name == name) return x;
  ADD_FAILURE() << "no tensor " << name;
  return t.front();
}

void set_json(std::vector<raw_tensor>& t, const std::string& from, const std::string& to) {
  auto& qs = find(t, "l.weight.quant_state.bitsandbytes__nf4");
  const auto at = qs.bytes.find(from);
  ASSERT_NE(at, std::string::npos) << qs.bytes;
  qs.bytes.replace(at, from.size(), to);
}

}  // namespace

TEST(BnbLayout, DamagedLayoutsAreRejected) {
  expect_load_error([](auto& t) { find(t, "l.weight.quant_state.bitsandbytes__nf4").name = "l.weight.quant_state.bitsandbytes__int4"; },
                    "unknown quant_type");
  expect_load_error([](auto& t) { set_json(t, "\"nf4\"", "\"af4\""); }, "unknown quant_type \"af4\"");
  expect_load_error([](auto& t) { set_json(t, "\"nf4\"", "\"fp4\""); }, "disagrees");
  expect_load_error([](auto& t) { set_json(t, "[10, 64]", "[10, 65]"); }, "has shape");
  expect_load_error([](auto& t) { set_json(t, "\"blocksize\": 64", "\"blocksize\": 0"); }, "blocksize");
  expect_load_error([](auto& t) { set_json(t, "\"float32\", \"shape\"", "\"float64\", \"shape\""); }, "dtype \"float64\"");
  expect_load_error([](auto& t) { set_json(t, "\"nested_blocksize\": 256", "\"nested_blocksize\": 128"); }, "nested_blocksize");
  expect_load_error([](auto& t) { set_json(t, "\"shape\"", "\"shapes\""); }, "unknown quant_state key");
  expect_load_error([](auto& t) { set_json(t, "}", ""); }, "not valid JSON");
  expect_load_error([](auto& t) { set_json(t, "nf4", "n\xff" "4"); }, "UTF-8");
  expect_load_error([](auto& t) { find(t, "l.weight.absmax").dtype = io::st_dtype::I8; }, "has dtype I8");
  expect_load_error([](auto& t) { find(t, "l.weight.quant_map").name = "l.weight.quant_mapx"; }, "\"l.weight.quant_map\" is missing");
  expect_load_error([](auto& t) { find(t, "l.weight").shape = {320}; }, "has shape [320]");
}

TEST(BnbLayout, Int8WeightFormatMustBeRow) {
  scratch_dir d;
  std::vector<io::tensor_entry> e = {{"p.weight", io::st_dtype::I8, {2, 2}}, {"p.SCB", io::st_dtype::F32, {2}}, {"p.weight_format", io::st_dtype::U8, {}}};
  io::safetensors_writer w;
  ASSERT_TRUE(w.open(d / "i.safetensors", e).ok());
  const char bytes[] = {1, 2, 3, 4, 0, 0, (char)0x80, 0x3f, 0, 0, 0, 0x40, 1};
  ASSERT_TRUE(w.write(bytes, sizeof bytes).ok());
  ASSERT_TRUE(w.commit().ok());
  io::checkpoint c;
  ASSERT_TRUE(io::checkpoint::open(d / "i.safetensors", c).ok());
  lowbit::quant_tensor q;
  const lowbit::status s = io::load_bnb_int8(c, "p.weight", q);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::strstr(s.message(), "weight_format\" is 1"), nullptr) << s.message();
}

// Issue 18: checkpoints that bitsandbytes 0.50.2 saved after a forward pass on the CPU (made by
// tests/data/bnb_cpu_packed/make_vectors.py with the real library; see its comment): the scales are
// BF16 [K / blocksize, N], or double-quantized in the weight's 16-bit dtype. Each dequantizes to
// the values bitsandbytes computed, bit for bit.
TEST(BnbLayout, ReadsCheckpointsSavedAfterACpuForwardPass) {
  struct vector_case {
    const char* name;
    io::st_dtype absmax_dtype;  // as the file stores it: tells the two layouts apart
    bool nested_16bit;
  };
  const vector_case cases[] = {{"nf4_bf16", io::st_dtype::BF16, false},    {"fp4_f16_b128", io::st_dtype::BF16, false},
                               {"nf4_bf16_dq", io::st_dtype::U8, true},    {"nf4_f16_dq", io::st_dtype::U8, true},
                               {"fp4_f32_dq", io::st_dtype::U8, false}};
  for (const auto& c : cases) {
    const std::string dir = LOWBIT_BNB_CPU_PACKED_DIR;
    io::checkpoint ck, want;
    ASSERT_TRUE(io::checkpoint::open(dir + "/" + c.name + ".safetensors", ck).ok()) << c.name;
    ASSERT_TRUE(io::checkpoint::open(dir + "/" + c.name + ".expected.safetensors", want).ok()) << c.name;
    ASSERT_EQ(ck.find("l.weight.absmax").tensor->dtype, c.absmax_dtype) << c.name;
    EXPECT_EQ(io::bnb_quant_state_name(ck, "l.weight").empty(), false) << c.name;
    lowbit::quant_tensor q;
    const lowbit::status s = io::load_bnb_4bit(ck, "l.weight", q);
    ASSERT_TRUE(s.ok()) << c.name << ": " << s.message();
    const auto w = want.find("l.weight");
    EXPECT_EQ(q.shape(), w.tensor->shape) << c.name;
    EXPECT_EQ(io::to_st_dtype(q.source_dtype()), w.tensor->dtype) << c.name;
    EXPECT_EQ(q.double_quantized(), !c.nested_16bit && c.absmax_dtype == io::st_dtype::U8) << c.name;
    std::vector<std::uint8_t> got(w.tensor->nbytes());
    ASSERT_TRUE(lowbit::dequantize(q, got.data(), q.source_dtype()).ok()) << c.name;
    std::size_t differ = 0;
    for (std::size_t i = 0; i < got.size(); ++i) differ += got[i] != w.file->data(*w.tensor)[i];
    EXPECT_EQ(differ, 0u) << c.name << ": bytes differ from bitsandbytes' values";
  }
}

// The CPU-packed scale layout is accepted only in its own shape: a BF16 absmax of any other
// shape, or for a weight whose rows are not whole blocks, is an error naming the tensor.
TEST(BnbLayout, RejectsAMisshapedCpuPackedAbsmax) {
  const std::string qs = R"({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [32, 128]})";
  for (const std::vector<std::int64_t>& absmax_shape : {std::vector<std::int64_t>{32, 2}, std::vector<std::int64_t>{64}}) {
    scratch_dir d;
    std::vector<io::tensor_entry> e = {{"l.weight", io::st_dtype::U8, {2048, 1}},
                                       {"l.weight.absmax", io::st_dtype::BF16, absmax_shape},
                                       {"l.weight.quant_map", io::st_dtype::F32, {16}},
                                       {"l.weight.quant_state.bitsandbytes__nf4", io::st_dtype::U8, {static_cast<std::int64_t>(qs.size())}}};
    io::safetensors_writer w;
    ASSERT_TRUE(w.open(d / "p.safetensors", e).ok());
    const std::vector<std::uint8_t> zeros(2048 + 128 + 64);
    ASSERT_TRUE(w.write(zeros.data(), zeros.size()).ok());
    ASSERT_TRUE(w.write(qs.data(), qs.size()).ok());
    ASSERT_TRUE(w.commit().ok());
    io::checkpoint c;
    ASSERT_TRUE(io::checkpoint::open(d / "p.safetensors", c).ok());
    lowbit::quant_tensor q;
    const lowbit::status s = io::load_bnb_4bit(c, "l.weight", q);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(std::strstr(s.message(), "l.weight.absmax"), nullptr) << s.message();
    EXPECT_NE(std::strstr(s.message(), "[2,32]"), nullptr) << s.message();
  }
}

// Issue 18 item 2: inspect and dequantize found each weight's companion tensors by scanning every
// name (quadratic: 3000 weights took 20 s). io::bnb_members does a fixed number of hashed lookups
// per tensor: for 4n tensors it does exactly 4 times the lookups it does for n (no timing).
TEST(BnbMembers, LookupsAreLinearInTheTensorCount) {
  scratch_dir d;
  std::vector<float> w(2 * 64);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.1f * static_cast<float>(i));
  lowbit::quantize_params p4, p8;
  p4.double_quant = true;
  lowbit::quant_tensor q4, q8;
  ASSERT_TRUE(lowbit::quantize(w.data(), lowbit::dtype::f32, {2, 64}, p4, q4).ok());
  p8.fmt = lowbit::format::int8_absmax;
  p8.gran = lowbit::granularity::per_row();
  ASSERT_TRUE(lowbit::quantize(w.data(), lowbit::dtype::f32, {2, 64}, p8, q8).ok());
  std::uint64_t lookups[2] = {0, 0};
  const int counts[2] = {60, 240};
  for (int k = 0; k < 2; ++k) {
    const int n = counts[k];
    std::vector<io::tensor_entry> entries, e;
    for (int i = 0; i < n; ++i) {  // a 4-bit weight, an LLM.int8 weight and a dense bias each
      ASSERT_TRUE(io::bnb_entries("m" + std::to_string(i) + ".a.weight", q4, e).ok());
      entries.insert(entries.end(), e.begin(), e.end());
      ASSERT_TRUE(io::bnb_entries("m" + std::to_string(i) + ".b.weight", q8, e).ok());
      entries.insert(entries.end(), e.begin(), e.end());
      entries.push_back({"m" + std::to_string(i) + ".b.bias", io::st_dtype::F16, {2}});
    }
    const std::string path = d / ("m" + std::to_string(n) + ".safetensors");
    io::safetensors_writer wr;
    ASSERT_TRUE(wr.open(path, entries).ok());
    const std::vector<std::uint8_t> bias(4, 0);
    for (int i = 0; i < n; ++i) ASSERT_TRUE(io::write_bnb(wr, q4).ok() && io::write_bnb(wr, q8).ok() && wr.write(bias.data(), 4).ok());
    ASSERT_TRUE(wr.commit().ok());
    io::checkpoint c;
    ASSERT_TRUE(io::checkpoint::open(path, c).ok());
    const std::uint64_t before = c.lookups();
    std::vector<io::bnb_member> m;
    io::bnb_members(c, m);
    lookups[k] = c.lookups() - before;
    ASSERT_EQ(m.size(), static_cast<std::size_t>(3 * n));
    for (int i = 0; i < n; ++i) {
      const std::string a = "m" + std::to_string(i) + ".a.weight", b = "m" + std::to_string(i) + ".b.";
      EXPECT_EQ(m[3 * static_cast<std::size_t>(i)].name, a);
      EXPECT_EQ(m[3 * static_cast<std::size_t>(i)].what, io::bnb_member::kind::bnb_4bit);
      EXPECT_EQ(m[3 * static_cast<std::size_t>(i)].companions,
                (std::vector<std::string>{a + ".absmax", a + ".quant_map", a + ".nested_absmax", a + ".nested_quant_map", a + ".quant_state.bitsandbytes__nf4"}));
      EXPECT_EQ(m[3 * static_cast<std::size_t>(i) + 1].what, io::bnb_member::kind::bnb_int8);
      EXPECT_EQ(m[3 * static_cast<std::size_t>(i) + 1].companions, (std::vector<std::string>{b + "SCB", b + "weight_format"}));
      EXPECT_EQ(m[3 * static_cast<std::size_t>(i) + 2].what, io::bnb_member::kind::dense);
    }
  }
  EXPECT_EQ(lookups[1], 4 * lookups[0]) << "lookups for " << counts[0] << " and " << counts[1] << " modules";
  EXPECT_LE(lookups[0], 6u * 10u * static_cast<std::uint64_t>(counts[0])) << "more than 6 lookups per tensor";
}
