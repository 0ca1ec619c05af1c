// SPDX-License-Identifier: Apache-2.0
// The `lowbit` tool as a user runs it: quantize the shipped checkpoint, inspect the result,
// dequantize it back, documented exit codes, and no output at all after an error or SIGINT.
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include "io_test_util.hpp"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace io = lowbit::io;
using lowbit_test::scratch_dir;

namespace {

struct run_result {
  int code = -1;
  std::string out, err;
};

// The tool under test: $LOWBIT_TOOL_UNDER_TEST if set (e.g. an older build, to see a regression
// test fail), else the one built with the tests.
const char* tool() {
  const char* t = std::getenv("LOWBIT_TOOL_UNDER_TEST");
  return t != nullptr && *t != '\0' ? t : LOWBIT_TOOL;
}

// Runs the tool with `args` (shell words), capturing stdout and stderr; `prefix` goes in front
// of the tool (e.g. "timeout 30", "umask 027;").
run_result run(const scratch_dir& d, const std::string& args, const std::string& prefix = "") {
  const std::string cmd = prefix + " '" + tool() + "' " + args + " >'" + (d / "stdout") + "' 2>'" + (d / "stderr") + "'";
  const int st = std::system(cmd.c_str());
  run_result r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = lowbit_test::read_bytes(d / "stdout");
  r.err = lowbit_test::read_bytes(d / "stderr");
  return r;
}

// True if `dir` holds nothing but `allowed` (no temporary folders or files).
void expect_only(const std::string& dir, const std::set<std::string>& allowed) { EXPECT_EQ(lowbit_test::list_dir(dir), allowed) << dir; }

// Writes a float16 checkpoint with one [rows, cols] weight `name` (normal values, seeded).
void write_f16_checkpoint(const std::string& path, const std::string& name, std::int64_t rows, std::int64_t cols, float poison = 0.0f) {
  std::mt19937_64 rng(lowbit_test::test_seed());
  std::normal_distribution<float> nd(0.0f, 0.02f);
  std::vector<lowbit::f16> w(static_cast<std::size_t>(rows * cols));
  for (auto& v : w) v = lowbit::from_float<lowbit::f16>(nd(rng));
  if (poison != 0.0f) w[w.size() / 2] = lowbit::from_float<lowbit::f16>(poison);
  io::safetensors_writer wr;
  ASSERT_TRUE(wr.open(path, {{name, io::st_dtype::F16, {rows, cols}}}).ok());
  ASSERT_TRUE(wr.write(w.data(), w.size() * 2).ok());
  ASSERT_TRUE(wr.commit().ok());
}

// A file whose only tensor has a dtype no safetensors writer uses.
std::string raw_safetensors_for_test() { return lowbit_test::raw_safetensors(R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", "x"); }

}  // namespace

TEST(LowbitTool, QuantizesTheShippedCheckpoint) {
  scratch_dir d;
  const run_result r = run(d, std::string("quantize '") + LOWBIT_SAMPLE + "' '" + (d / "out") + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_only(d / "out", {"config.json", "model.safetensors"});
  // One report line per 2-D weight, with bits, errors and SQNR; NF4 on these weights is ~20 dB.
  int lines = 0;
  for (std::size_t at = r.out.find("weight "); at != std::string::npos; at = r.out.find("weight ", at + 1)) ++lines;
  EXPECT_EQ(lines, 6) << r.out;
  EXPECT_NE(r.out.find("SQNR dB"), std::string::npos);
  EXPECT_NE(r.out.find("6 of 16 tensors quantized (nf4 + double quant, block 64)"), std::string::npos) << r.out;
  io::bnb_quantization_config qc;
  ASSERT_TRUE(io::read_quantization_config(d / "out/config.json", qc).ok());
  EXPECT_TRUE(qc.load_in_4bit && qc.bnb_4bit_use_double_quant && qc.bnb_4bit_quant_type == "nf4" && qc.bnb_4bit_compute_dtype == "bfloat16");
  // Every weight loads back, and is within NF4's error of the original.
  io::checkpoint in, out;
  ASSERT_TRUE(io::checkpoint::open(LOWBIT_SAMPLE, in).ok());
  ASSERT_TRUE(io::checkpoint::open(d / "out", out).ok());
  int weights = 0;
  for (const auto& name : in.names()) {
    const auto l = in.find(name);
    if (l.tensor->shape.size() != 2) {
      const auto o = out.find(name);
      ASSERT_NE(o.tensor, nullptr) << name;
      EXPECT_EQ(std::memcmp(o.file->data(*o.tensor), l.file->data(*l.tensor), l.tensor->nbytes()), 0) << name;
      continue;
    }
    lowbit::quant_tensor q;
    ASSERT_TRUE(io::load_bnb_4bit(out, name, q).ok()) << name;
    std::vector<lowbit::f16> y(static_cast<std::size_t>(q.numel()));
    ASSERT_TRUE(lowbit::dequantize(q, y.data(), lowbit::dtype::f16).ok());
    double err = 0, mag = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
      std::uint16_t h;
      std::memcpy(&h, l.file->data(*l.tensor) + 2 * i, 2);
      err += std::fabs(lowbit::f16_bits_to_float(h) - lowbit::to_float(y[i]));
      mag += std::fabs(lowbit::f16_bits_to_float(h));
    }
    EXPECT_LT(err / mag, 0.12) << name;  // NF4 block 64 on Gaussian data: ~0.1 relative mean error
    ++weights;
  }
  EXPECT_EQ(weights, 6);

  const run_result i = run(d, "inspect '" + (d / "out") + "'");
  ASSERT_EQ(i.code, 0) << i.err;
  EXPECT_NE(i.out.find("encoder.layer.0.attention.self.query.weight"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("nf4+dq"), std::string::npos) << i.out;
  EXPECT_EQ(i.out.find(".absmax"), std::string::npos) << "companion tensors listed on their own:\n" << i.out;

  const run_result q = run(d, "dequantize '" + (d / "out") + "' '" + (d / "back") + "'");
  ASSERT_EQ(q.code, 0) << q.err;
  io::checkpoint back;
  ASSERT_TRUE(io::checkpoint::open(d / "back", back).ok());
  EXPECT_EQ(back.names().size(), in.names().size());
  for (const auto& name : in.names()) {
    const auto b = back.find(name);
    ASSERT_NE(b.tensor, nullptr) << name;
    EXPECT_EQ(b.tensor->dtype, io::st_dtype::F16) << name;
    EXPECT_EQ(b.tensor->shape, in.find(name).tensor->shape) << name;
  }
  const std::string cfg = lowbit_test::read_bytes(d / "back/config.json");
  EXPECT_EQ(cfg.find("quantization_config"), std::string::npos);
  EXPECT_NE(cfg.find("\"hidden_size\": 384"), std::string::npos);
}

TEST(LowbitTool, InspectShowsBitsPerValueOfNf4DoubleQuant) {
  scratch_dir d;
  write_f16_checkpoint(d / "big.safetensors", "model.layers.0.mlp.up_proj.weight", 4096, 8192);
  const run_result r = run(d, "quantize --quiet '" + (d / "big.safetensors") + "' '" + (d / "out") + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  const run_result i = run(d, "inspect '" + (d / "out") + "'");
  ASSERT_EQ(i.code, 0) << i.err;
  // 4 bits + 8 bits per 64 + 32 bits per 64 * 256 + tables and JSON: 4.127
  EXPECT_NE(i.out.find("nf4+dq         [4096, 8192]"), std::string::npos) << i.out;
  EXPECT_NE(i.out.find("   4.127  1x64 u8, per 256 f32 + offset\n"), std::string::npos) << i.out;
}

// --version prints the project version (CMake's, passed to the tool; it must equal the library's
// LOWBIT_VERSION_* in <lowbit/config.hpp>) and --help the usage, both on stdout and with exit 0.
TEST(LowbitTool, VersionAndHelp) {
  scratch_dir d;
  const run_result v = run(d, "--version");
  EXPECT_EQ(v.code, 0) << v.err;
  EXPECT_EQ(v.out, "lowbit " + std::to_string(LOWBIT_VERSION_MAJOR) + "." + std::to_string(LOWBIT_VERSION_MINOR) + "." +
                       std::to_string(LOWBIT_VERSION_PATCH) + "\n");
  EXPECT_EQ(v.err, "");
  const run_result h = run(d, "--help");
  EXPECT_EQ(h.code, 0) << h.err;
  EXPECT_EQ(h.out.rfind("usage: lowbit quantize IN OUT", 0), 0u) << h.out;
  EXPECT_NE(h.out.find("lowbit --version"), std::string::npos) << h.out;
}

TEST(LowbitTool, ExitCodesAndNoPartialOutput) {
  scratch_dir d;
  EXPECT_EQ(run(d, "").code, 1);
  EXPECT_EQ(run(d, "frobnicate").code, 1);
  EXPECT_EQ(run(d, std::string("quantize '") + LOWBIT_SAMPLE + "' '" + (d / "o") + "' --format int4").code, 1);
  EXPECT_EQ(run(d, std::string("quantize '") + LOWBIT_SAMPLE + "' '" + (d / "o") + "' --block-size 48").code, 1);
  EXPECT_EQ(run(d, std::string("quantize '") + LOWBIT_SAMPLE + "'").code, 1);

  const run_result missing = run(d, "quantize '" + (d / "nope.safetensors") + "' '" + (d / "o") + "'");
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("nope.safetensors"), std::string::npos) << missing.err;
  lowbit_test::write_bytes(d / "bad.safetensors", raw_safetensors_for_test());
  const run_result bad = run(d, "inspect '" + (d / "bad.safetensors") + "'");
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("unknown dtype"), std::string::npos) << bad.err;

  ::mkdir((d / "full").c_str(), 0755);
  lowbit_test::write_bytes(d / "full/keep.txt", "x");
  const run_result full = run(d, std::string("quantize '") + LOWBIT_SAMPLE + "' '" + (d / "full") + "'");
  EXPECT_EQ(full.code, 3);
  EXPECT_NE(full.err.find("not empty"), std::string::npos) << full.err;
  expect_only(d / "full", {"keep.txt"});

  write_f16_checkpoint(d / "nan.safetensors", "w.weight", 64, 64, std::nanf(""));
  const run_result nan = run(d, "quantize '" + (d / "nan.safetensors") + "' '" + (d / "o") + "'");
  EXPECT_EQ(nan.code, 4);
  EXPECT_NE(nan.err.find("w.weight"), std::string::npos) << nan.err;
  EXPECT_FALSE(lowbit_test::exists(d / "o"));

  ::mkdir((d / "empty").c_str(), 0755);  // an existing empty folder is filled
  EXPECT_EQ(run(d, std::string("quantize --quiet --format int8 '") + LOWBIT_SAMPLE + "' '" + (d / "empty") + "'").code, 0);
  expect_only(d / "empty", {"config.json", "model.safetensors"});
  expect_only(d.path(), {"stdout", "stderr", "bad.safetensors", "full", "nan.safetensors", "empty"});
}

// The report (measured while the file is written) and the file do not depend on --threads.
TEST(LowbitTool, ReportAndOutputDoNotDependOnThreads) {
  scratch_dir d;
  write_f16_checkpoint(d / "w.safetensors", "layer.weight", 600, 1000);  // 37 chunks of the error sums
  std::string report[2], file[2];
  for (int t = 0; t < 2; ++t) {
    const std::string out = d / ("out" + std::to_string(t + 1));
    const run_result r = run(d, "quantize --quiet --threads " + std::to_string(t + 1) + " '" + (d / "w.safetensors") + "' '" + out + "'");
    ASSERT_EQ(r.code, 0) << r.err;
    report[t] = r.out.substr(0, r.out.find("1 of 1 tensors quantized"));  // the summary line has the time
    file[t] = lowbit_test::read_bytes(out + "/model.safetensors");
  }
  EXPECT_NE(report[0].find("layer.weight"), std::string::npos) << report[0];
  EXPECT_NE(report[0].find("SQNR dB"), std::string::npos) << report[0];
  EXPECT_EQ(report[0], report[1]);
  EXPECT_TRUE(file[0] == file[1]) << "model.safetensors differs between --threads 1 and 2";
}

TEST(LowbitTool, InterruptedRunLeavesNothing) {
  scratch_dir d;
  write_f16_checkpoint(d / "big.safetensors", "w.weight", 4096, 4096);
  const std::pair<int, int> cases[] = {{SIGINT, 20}, {SIGINT, 60}, {SIGINT, 150}, {SIGHUP, 40}, {SIGTERM, 40}};  // signal, delay
  for (const auto& [sig, delay_ms] : cases) {
    const std::string out = d / ("out" + std::to_string(sig) + "_" + std::to_string(delay_ms));
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      const std::string in = d / "big.safetensors";
      ::freopen("/dev/null", "w", stdout);
      ::execl(tool(), tool(), "quantize", "--quiet", in.c_str(), out.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::usleep(static_cast<useconds_t>(delay_ms) * 1000);
    ::kill(pid, sig);
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st));
    if (WEXITSTATUS(st) == 130) {
      EXPECT_FALSE(lowbit_test::exists(out)) << "after signal " << sig << " at " << delay_ms << " ms";
    } else {  // finished before the signal: then the output must be complete
      EXPECT_EQ(WEXITSTATUS(st), 0);
      expect_only(out, {"config.json", "model.safetensors"});
      const std::string rm = "rm -rf '" + out + "'";
      ASSERT_EQ(std::system(rm.c_str()), 0);
    }
  }
  expect_only(d.path(), {"big.safetensors"});
}

// Weights with no elements are quantized too (every tensor of their layout is empty but the
// tables and the quant_state), between and after ones that are not.
TEST(LowbitTool, QuantizesWeightsWithoutElements) {
  scratch_dir d;
  const std::vector<io::tensor_entry> entries = {{"a.weight", io::st_dtype::F16, {0, 64}}, {"b.weight", io::st_dtype::F16, {2, 64}},
                                                 {"c.weight", io::st_dtype::F16, {0, 64}}};
  io::safetensors_writer wr;
  ASSERT_TRUE(wr.open(d / "z.safetensors", entries).ok());
  const std::vector<lowbit::f16> b(128, lowbit::from_float<lowbit::f16>(0.5f));
  ASSERT_TRUE(wr.write(b.data(), b.size() * 2).ok());
  ASSERT_TRUE(wr.commit().ok());
  for (const char* options : {"", "--no-double-quant", "--format int8"}) {
    const std::string out = d / ("out" + std::string(options));
    const run_result r = run(d, std::string("quantize --quiet ") + options + " '" + (d / "z.safetensors") + "' '" + out + "'");
    ASSERT_EQ(r.code, 0) << options << ": " << r.err;
    EXPECT_NE(r.out.find("3 of 3 tensors quantized"), std::string::npos) << r.out;
    io::checkpoint c;
    ASSERT_TRUE(io::checkpoint::open(out, c).ok()) << options;
    for (const auto& e : entries) {
      lowbit::quant_tensor q;
      ASSERT_TRUE((std::string(options) == "--format int8" ? io::load_bnb_int8(c, e.name, q) : io::load_bnb_4bit(c, e.name, q)).ok()) << options << " " << e.name;
      EXPECT_EQ(q.shape(), e.shape) << options << " " << e.name;
    }
  }
}

TEST(LowbitTool, QuantizesAShardedCheckpoint) {
  scratch_dir d;
  ::mkdir((d / "in").c_str(), 0755);
  write_f16_checkpoint(d / "in/model-00001-of-00002.safetensors", "model.layers.0.mlp.up_proj.weight", 64, 128);
  write_f16_checkpoint(d / "in/model-00002-of-00002.safetensors", "lm_head.weight", 32, 128);
  ASSERT_TRUE(io::write_index(d / "in", 64 * 128 * 2 + 32 * 128 * 2,
                              {{"model.layers.0.mlp.up_proj.weight", "model-00001-of-00002.safetensors"}, {"lm_head.weight", "model-00002-of-00002.safetensors"}})
                  .ok());
  const run_result r = run(d, "quantize --quiet --format fp4 --no-double-quant --block-size 128 '" + (d / "in") + "' '" + (d / "out") + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("1 of 2 tensors quantized (fp4, block 128)"), std::string::npos) << r.out;
  io::checkpoint out;
  ASSERT_TRUE(io::checkpoint::open(d / "out", out).ok());
  lowbit::quant_tensor q;
  ASSERT_TRUE(io::load_bnb_4bit(out, "model.layers.0.mlp.up_proj.weight", q).ok());
  EXPECT_EQ(q.fmt(), lowbit::format::bnb_fp4);
  EXPECT_EQ(q.block_size(), 128);
  EXPECT_FALSE(q.double_quantized());
  const auto head = out.find("lm_head.weight");  // never quantized
  ASSERT_NE(head.tensor, nullptr);
  EXPECT_EQ(head.tensor->dtype, io::st_dtype::F16);
  EXPECT_EQ(out.names().size(), 5u);  // weight, absmax, quant_map, quant_state, lm_head
  io::bnb_quantization_config qc;
  ASSERT_TRUE(io::read_quantization_config(d / "out/config.json", qc).ok());
  EXPECT_EQ(qc.bnb_4bit_quant_type, "fp4");
  EXPECT_FALSE(qc.bnb_4bit_use_double_quant);
}

namespace {

// xorshift64*: the same values on every compiler and standard library (unlike <random>'s
// distributions), so that the golden hashes below hold everywhere.
struct fixed_rng {
  std::uint64_t s = 0x9E3779B97F4A7C15ull;
  std::uint64_t next() {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  float uniform() { return static_cast<float>(next() >> 40) / 16777216.0f * 2.0f - 1.0f; }  // [-1, 1)
};

// A checkpoint of several dtypes and shapes: quantized F16/BF16/F32 weights (odd sizes, an
// all-zero block, float32 blocks too small to scale), and tensors that pass through (a bias, an
// embedding, a 3-D weight, integers).
void write_mixed_checkpoint(const std::string& path) {
  fixed_rng rng;
  struct t {
    const char* name;
    io::st_dtype dt;
    std::vector<std::int64_t> shape;
  };
  const std::vector<t> ts = {{"model.embed_tokens.weight", io::st_dtype::F16, {16, 64}}, {"layers.0.q.weight", io::st_dtype::F16, {96, 128}},
                             {"layers.0.q.bias", io::st_dtype::F16, {128}},            {"layers.0.k.weight", io::st_dtype::BF16, {33, 70}},
                             {"layers.0.conv.weight", io::st_dtype::F16, {2, 3, 64}},  {"layers.0.v.weight", io::st_dtype::F32, {50, 300}},
                             {"position_ids", io::st_dtype::I64, {7}},                 {"layers.1.o.weight", io::st_dtype::F16, {1, 1000}},
                             {"lm_head.weight", io::st_dtype::F16, {8, 64}}};
  std::vector<io::tensor_entry> entries;
  for (const auto& x : ts) entries.push_back({x.name, x.dt, x.shape});
  io::safetensors_writer wr;
  ASSERT_TRUE(wr.open(path, entries, {{"format", "pt"}}).ok());
  for (const auto& x : ts) {
    io::tensor_entry e{x.name, x.dt, x.shape};
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(e.nbytes()));
    const std::size_t n = bytes.size() / static_cast<std::size_t>(io::info(x.dt).size);
    for (std::size_t i = 0; i < n; ++i) {
      float v = rng.uniform() * 0.05f;
      if (i >= 64 && i < 128) v = 0.0f;                                           // a zero block
      if (x.dt == io::st_dtype::F32 && i >= 192 && i < 256) v *= 1e-37f;             // 1/absmax overflows
      if (x.dt == io::st_dtype::F16) {
        const lowbit::f16 h = lowbit::from_float<lowbit::f16>(v);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      } else if (x.dt == io::st_dtype::BF16) {
        const lowbit::bf16 h = lowbit::from_float<lowbit::bf16>(v);
        std::memcpy(bytes.data() + 2 * i, &h, 2);
      } else if (x.dt == io::st_dtype::F32) {
        std::memcpy(bytes.data() + 4 * i, &v, 4);
      } else {
        const std::int64_t k = static_cast<std::int64_t>(i) * 3 - 5;
        std::memcpy(bytes.data() + 8 * i, &k, 8);
      }
    }
    ASSERT_TRUE(wr.write(bytes.data(), bytes.size()).ok());
  }
  ASSERT_TRUE(wr.commit().ok());
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

}  // namespace

// The file the tool writes, byte for byte: FNV-1a hashes of model.safetensors for the shipped
// checkpoint and a synthetic one, under several options, with and without the report. The
// tensors' bytes and the header's JSON are those the tool wrote before quantizing and writing
// were pipelined (commit f131ce0); only the header's padding has changed since (spaces up to a
// 4096-byte boundary, from the writer that writes the header last).
TEST(LowbitTool, OutputIsByteIdenticalToTheGoldenFiles) {
  scratch_dir d;
  write_mixed_checkpoint(d / "mixed.safetensors");
  struct golden {
    const char* input;  // "sample" or "mixed"
    const char* options;
    std::uint64_t hash;
  };
  const golden goldens[] = {
      {"sample", "", 0x435aef95abc0ff27ull},
      {"sample", "--format fp4 --no-double-quant --block-size 128", 0x2900ddda936d66d2ull},
      {"sample", "--format int8", 0x3c10007e64bc47e7ull},
      {"mixed", "", 0x29e961a2d1e322a9ull},
      {"mixed", "--no-report --threads 1", 0x29e961a2d1e322a9ull},
      {"mixed", "--format fp4 --block-size 32", 0x61ac47845ab3cfadull},
      {"mixed", "--no-double-quant --block-size 256", 0xa0d58e99d35b1411ull},
      {"mixed", "--format int8", 0xea4240d8a765de05ull},
      {"mixed", "--skip layers.0 --block-size 4096", 0xc8dc280cab1e8f72ull},
  };
  int k = 0;
  for (const auto& g : goldens) {
    const std::string in = std::string(g.input) == "sample" ? std::string(LOWBIT_SAMPLE) : d / "mixed.safetensors";
    const std::string out = d / ("out" + std::to_string(k++));
    const run_result r = run(d, std::string("quantize --quiet ") + g.options + " '" + in + "' '" + out + "'");
    ASSERT_EQ(r.code, 0) << g.input << " " << g.options << ": " << r.err;
    const std::uint64_t h = fnv1a(lowbit_test::read_bytes(out + "/model.safetensors"));
    EXPECT_EQ(h, g.hash) << g.input << " " << g.options;
  }
}

// Issue 18: a checkpoint quantized by a method lowbit does not read (transformers' fine-grained
// FP8: e4m3 weights with `weight_scale_inv`) was "dequantized" with exit 0 by copying its tensors
// through. Every command refuses it by the method's name, writes nothing, and inspect lists it first.
TEST(LowbitTool, RefusesAQuantizationMethodItDoesNotRead) {
  scratch_dir d;
  ::mkdir((d / "fp8").c_str(), 0755);
  {
    io::safetensors_writer w;
    ASSERT_TRUE(w.open(d / "fp8/model.safetensors", {{"l.weight", io::st_dtype::F8_E4M3, {128, 128}}, {"l.weight_scale_inv", io::st_dtype::F32, {1, 1}}}).ok());
    const std::vector<std::uint8_t> codes(128 * 128, 0x38);
    const float scale = 0.5f;
    ASSERT_TRUE(w.write(codes.data(), codes.size()).ok());
    ASSERT_TRUE(w.write(&scale, 4).ok());
    ASSERT_TRUE(w.commit().ok());
  }
  // quantize (and convert) do not take fine-grained FP8 input: refused by name
  lowbit_test::write_bytes(d / "fp8/config.json", R"({"hidden_size": 128, "quantization_config": {"activation_scheme": "dynamic", "quant_method": "fp8", "weight_block_size": [128, 128]}})");
  {
    const run_result r = run(d, "quantize '" + (d / "fp8") + "' '" + (d / "out") + "'");
    EXPECT_EQ(r.code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find("quant_method \"fp8\""), std::string::npos) << r.err;
    EXPECT_FALSE(lowbit_test::exists(d / "out"));
  }
  // a method no command reads
  lowbit_test::write_bytes(d / "fp8/config.json", R"({"hidden_size": 128, "quantization_config": {"bits": 4, "quant_method": "gptq"}})");
  for (const char* cmd : {"dequantize", "quantize"}) {
    const run_result r = run(d, std::string(cmd) + " '" + (d / "fp8") + "' '" + (d / "out") + "'");
    EXPECT_EQ(r.code, 2) << cmd << ": " << r.out << r.err;
    EXPECT_NE(r.err.find("quant_method \"gptq\""), std::string::npos) << cmd << ": " << r.err;
    EXPECT_NE(r.err.find("config.json"), std::string::npos) << cmd << ": " << r.err;
    EXPECT_FALSE(lowbit_test::exists(d / "out")) << cmd;
  }
  const run_result i = run(d, "inspect '" + (d / "fp8") + "'");
  EXPECT_EQ(i.code, 2) << i.out << i.err;
  EXPECT_NE(i.out.find("l.weight"), std::string::npos) << i.out;
  EXPECT_NE(i.err.find("quant_method \"gptq\""), std::string::npos) << i.err;
  expect_only(d.path(), {"stdout", "stderr", "fp8"});

  // No quant_method and no load_in_* key: transformers refuses it too; an old bitsandbytes config
  // (load_in_8bit without quant_method) stays readable.
  lowbit_test::write_bytes(d / "fp8/config.json", R"({"quantization_config": {"weight_block_size": [128, 128]}})");
  const run_result none = run(d, "dequantize '" + (d / "fp8") + "' '" + (d / "out") + "'");
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("no quant_method"), std::string::npos) << none.err;
  lowbit_test::write_bytes(d / "fp8/config.json", R"({"quantization_config": {"load_in_8bit": true}})");
  EXPECT_EQ(run(d, "inspect '" + (d / "fp8") + "'").code, 0);
}

// Issue 17: inspect and dequantize read transformers' fine-grained FP8 weights (docs/fp8-block.md):
// F8_E4M3 codes times the tile's weight_scale_inv, partial edge tiles, F32 or BF16 scales, output
// in config.json's torch_dtype (else bfloat16), the scales folded into their weight.
namespace {

void write_fp8_checkpoint(const std::string& folder, bool scale_ok = true, bool drop_scale = false) {
  ::mkdir(folder.c_str(), 0755);
  std::vector<io::tensor_entry> e = {{"a.weight", io::st_dtype::F8_E4M3, {130, 129}}};
  if (!drop_scale) e.push_back({"a.weight_scale_inv", io::st_dtype::F32, scale_ok ? std::vector<std::int64_t>{2, 2} : std::vector<std::int64_t>{2, 1}});
  e.push_back({"b.weight", io::st_dtype::F8_E4M3, {3, 5}});
  e.push_back({"b.weight_scale_inv", io::st_dtype::BF16, {1, 1}});
  e.push_back({"lm_head.weight", io::st_dtype::BF16, {2, 2}});
  io::safetensors_writer w;
  ASSERT_TRUE(w.open(folder + "/model.safetensors", e).ok());
  const std::vector<std::uint8_t> a(130 * 129, 0x38);  // 1.0
  ASSERT_TRUE(w.write(a.data(), a.size()).ok());
  if (!drop_scale) {
    const float sa[4] = {1.0f, 2.0f, 3.0f, 0.5f};
    ASSERT_TRUE(w.write(sa, scale_ok ? 16 : 8).ok());
  }
  const std::vector<std::uint8_t> b(15, 0x40);  // 2.0
  ASSERT_TRUE(w.write(b.data(), b.size()).ok());
  const std::uint16_t sb = 0x4000;  // bf16 2.0
  ASSERT_TRUE(w.write(&sb, 2).ok());
  const std::uint16_t head[4] = {0x3F80, 0xBF80, 0x4040, 0x0000};
  ASSERT_TRUE(w.write(head, 8).ok());
  ASSERT_TRUE(w.commit().ok());
}

float value_at(const io::checkpoint::location& l, std::size_t i) {
  if (l.tensor->dtype == io::st_dtype::F32) {
    float f;
    std::memcpy(&f, l.file->data(*l.tensor) + 4 * i, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, l.file->data(*l.tensor) + 2 * i, 2);
  return lowbit::bf16_bits_to_float(h);
}

}  // namespace

TEST(LowbitTool, DequantizesAndInspectsFineGrainedFp8) {
  scratch_dir d;
  const char* qc = R"("quantization_config": {"activation_scheme": "dynamic", "modules_to_not_convert": ["lm_head"], "quant_method": "fp8", "weight_block_size": [128, 128]})";
  write_fp8_checkpoint(d / "in");
  struct variant {
    std::string config;  // "" for none
    io::st_dtype dtype;
  };
  for (const variant& v : {variant{std::string(R"({"torch_dtype": "bfloat16", )") + qc + "}", io::st_dtype::BF16},
                           variant{std::string(R"({"torch_dtype": "float32", )") + qc + "}", io::st_dtype::F32}, variant{"", io::st_dtype::BF16}}) {
    SCOPED_TRACE(v.config);
    if (!v.config.empty()) lowbit_test::write_bytes(d / "in/config.json", v.config);
    else ::unlink((d / "in/config.json").c_str());
    const std::string out = d / "out";
    const run_result r = run(d, "dequantize --quiet '" + (d / "in") + "' '" + out + "'");
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    io::checkpoint b;
    ASSERT_TRUE(io::checkpoint::open(out, b).ok());
    EXPECT_EQ(b.names().size(), 3u);
    EXPECT_EQ(b.find("a.weight_scale_inv").tensor, nullptr);
    const auto a = b.find("a.weight"), w = b.find("b.weight"), h = b.find("lm_head.weight");
    ASSERT_TRUE(a.tensor && w.tensor && h.tensor);
    EXPECT_EQ(a.tensor->dtype, v.dtype);
    EXPECT_EQ(a.tensor->shape, (std::vector<std::int64_t>{130, 129}));
    EXPECT_EQ(h.tensor->dtype, io::st_dtype::BF16);  // dense: copied as it is
    EXPECT_EQ(value_at(h, 1), -1.0f);
    for (auto rc : std::vector<std::pair<int, int>>{{0, 0}, {127, 127}, {0, 128}, {127, 128}, {128, 0}, {129, 127}, {128, 128}, {129, 128}}) {
      const float want = rc.first < 128 ? (rc.second < 128 ? 1.0f : 2.0f) : (rc.second < 128 ? 3.0f : 0.5f);
      EXPECT_EQ(value_at(a, static_cast<std::size_t>(rc.first * 129 + rc.second)), want) << rc.first << "," << rc.second;
    }
    for (std::size_t i = 0; i < 15; ++i) EXPECT_EQ(value_at(w, i), 4.0f) << i;
    const std::string cfg = lowbit_test::read_bytes(out + "/config.json");
    EXPECT_EQ(cfg.find("quantization_config"), std::string::npos) << cfg;
    ::system(("rm -rf '" + out + "'").c_str());
  }
  lowbit_test::write_bytes(d / "in/config.json", std::string("{") + qc + "}");
  const run_result i = run(d, "inspect '" + (d / "in") + "'");
  EXPECT_EQ(i.code, 0) << i.out << i.err;
  EXPECT_NE(i.out.find("fp8_e4m3_block"), std::string::npos) << i.out;
  EXPECT_EQ(i.out.find("a.weight_scale_inv"), std::string::npos) << i.out;
  // 130 * 129 code bytes + 4 float32 scales over 130 * 129 values
  EXPECT_NE(i.out.find(std::to_string(130 * 129 + 16)), std::string::npos) << i.out;

  // a scale grid of the wrong shape, and an F8_E4M3 weight without its scales: exit 2, by name
  for (const bool drop : {false, true}) {
    scratch_dir e;
    write_fp8_checkpoint(e / "in", false, drop);
    lowbit_test::write_bytes(e / "in/config.json", std::string("{") + qc + "}");
    for (const char* cmd : {"dequantize", "inspect"}) {
      const run_result r = run(e, std::string(cmd) + " '" + (e / "in") + "'" + (std::string(cmd) == "inspect" ? "" : " '" + (e / "out") + "'"));
      EXPECT_EQ(r.code, 2) << cmd << r.out << r.err;
      EXPECT_NE(r.err.find("\"a.weight_scale_inv\""), std::string::npos) << cmd << r.err;
      EXPECT_NE(r.err.find(drop ? "missing" : "needs [2, 2]"), std::string::npos) << cmd << r.err;
      EXPECT_FALSE(lowbit_test::exists(e / "out"));
    }
  }
}

// Issue 18: `lowbit dequantize` of an LLM.int8 checkpoint wrote float16, where bitsandbytes'
// int8_vectorwise_dequant gives float32. Its layout records no dtype: the output follows
// config.json's torch_dtype, else float32, with bitsandbytes' values (q * SCB) * f32(1/127)
// computed here independently.
TEST(LowbitTool, DequantizesLlmInt8ToTheRecordedDtypeOrFloat32) {
  scratch_dir d;
  write_f16_checkpoint(d / "w.safetensors", "l.weight", 24, 40);
  ASSERT_EQ(run(d, "quantize --quiet --format int8 '" + (d / "w.safetensors") + "' '" + (d / "q") + "'").code, 0);
  io::checkpoint q;
  ASSERT_TRUE(io::checkpoint::open(d / "q", q).ok());
  const auto codes = q.find("l.weight"), scb = q.find("l.SCB");
  ASSERT_TRUE(codes.tensor != nullptr && scb.tensor != nullptr);
  std::vector<float> want(24 * 40);
  for (std::size_t i = 0; i < want.size(); ++i) {
    float s;
    std::memcpy(&s, scb.file->data(*scb.tensor) + 4 * (i / 40), 4);
    const float c = static_cast<float>(static_cast<std::int8_t>(codes.file->data(*codes.tensor)[i]));
    volatile float prod = c * s;  // two float32 roundings, as torch computes A * stats * 7.874015718698502e-3
    want[i] = prod * 7.874015718698502e-3f;
  }
  struct variant {
    const char* config;  // "" for none
    io::st_dtype dtype;
  };
  for (const variant& v : {variant{"", io::st_dtype::F32}, variant{R"({"torch_dtype": "bfloat16"})", io::st_dtype::BF16},
                           variant{R"({"dtype": "float16"})", io::st_dtype::F16}, variant{R"({"torch_dtype": "auto"})", io::st_dtype::F32}}) {
    if (*v.config) lowbit_test::write_bytes(d / "q/config.json", v.config);
    else ::unlink((d / "q/config.json").c_str());
    const std::string out = d / ("back" + std::to_string(static_cast<int>(v.dtype)) + (*v.config ? "c" : ""));
    const run_result r = run(d, "dequantize --quiet '" + (d / "q") + "' '" + out + "'");
    ASSERT_EQ(r.code, 0) << v.config << r.err;
    io::checkpoint b;
    ASSERT_TRUE(io::checkpoint::open(out, b).ok());
    const auto w = b.find("l.weight");
    ASSERT_NE(w.tensor, nullptr);
    ASSERT_EQ(w.tensor->dtype, v.dtype) << v.config;
    for (std::size_t i = 0; i < want.size(); ++i) {
      std::uint32_t bits;
      std::memcpy(&bits, &want[i], 4);
      if (v.dtype == io::st_dtype::F32) {
        std::uint32_t got;
        std::memcpy(&got, w.file->data(*w.tensor) + 4 * i, 4);
        ASSERT_EQ(got, bits) << "element " << i;
      } else if (v.dtype == io::st_dtype::BF16) {
        std::uint16_t got;
        std::memcpy(&got, w.file->data(*w.tensor) + 2 * i, 2);
        ASSERT_EQ(got, static_cast<std::uint16_t>((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16)) << "element " << i;  // RNE, finite values
      } else {
        std::uint16_t got;
        std::memcpy(&got, w.file->data(*w.tensor) + 2 * i, 2);
        const float g = lowbit::f16_bits_to_float(got);  // the nearest float16: no neighbour is nearer
        for (int step : {-1, 1})
          ASSERT_FALSE(std::fabs(lowbit::f16_bits_to_float(static_cast<std::uint16_t>(got + step)) - want[i]) < std::fabs(g - want[i])) << "element " << i;
      }
    }
  }
}

// ---- issue 18: hostile inputs, signals, OUT, memory ---------------------------------------------
namespace {

// A checkpoint of `count` float16 weights "layers.<i>.weight" of [rows, cols] (cheap values).
void write_f16_weights(const std::string& path, int count, std::int64_t rows, std::int64_t cols) {
  std::vector<io::tensor_entry> entries;
  for (int i = 0; i < count; ++i) entries.push_back({"layers." + std::to_string(i) + ".weight", io::st_dtype::F16, {rows, cols}});
  std::vector<lowbit::f16> w(static_cast<std::size_t>(rows * cols));
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = lowbit::from_float<lowbit::f16>(static_cast<float>(static_cast<int>(i % 251) - 125) * 1e-3f);
  io::safetensors_writer wr;
  ASSERT_TRUE(wr.open(path, entries).ok());
  for (int i = 0; i < count; ++i) ASSERT_TRUE(wr.write(w.data(), w.size() * 2).ok());
  ASSERT_TRUE(wr.commit().ok());
}

// Names in `dir` that start with `prefix`.
std::vector<std::string> names_with_prefix(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> r;
  for (const auto& n : lowbit_test::list_dir(dir))
    if (n.compare(0, prefix.size(), prefix) == 0) r.push_back(n);
  return r;
}

// Starts the tool with `args` (stdout to /dev/null, stderr to d/stderr); returns its pid.
pid_t spawn(const scratch_dir& d, const std::vector<std::string>& args) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::freopen("/dev/null", "w", stdout);
    ::freopen((d / "stderr").c_str(), "w", stderr);
    std::vector<char*> argv = {const_cast<char*>(tool())};
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(tool(), argv.data());
    ::_exit(127);
  }
  return pid;
}

std::string nested_config(int depth) { return "{\"a\": " + std::string(static_cast<std::size_t>(depth), '[') + std::string(static_cast<std::size_t>(depth), ']') + "}"; }

}  // namespace

// Issue 18 item 1: 100,000 levels of nesting crashed the recursive copy of config.json; the
// nesting is limited (io::max_json_depth) with an error that says so.
TEST(LowbitTool, DeeplyNestedConfigIsRefused) {
  scratch_dir d;
  ::mkdir((d / "in").c_str(), 0755);
  write_f16_checkpoint(d / "in/model.safetensors", "w.weight", 8, 64);
  lowbit_test::write_bytes(d / "in/config.json", nested_config(100000));
  for (const char* cmd : {"quantize", "dequantize"}) {
    const run_result r = run(d, std::string(cmd) + " --quiet '" + (d / "in") + "' '" + (d / "out") + "'");
    EXPECT_EQ(r.code, 2) << cmd << ": " << r.err;
    EXPECT_NE(r.err.find("config.json: not valid JSON: objects and arrays nested deeper than 128 levels"), std::string::npos) << r.err;
  }
  lowbit_test::write_bytes(d / "in/config.json", nested_config(io::max_json_depth - 1));  // at the limit: accepted
  EXPECT_EQ(run(d, "quantize --quiet '" + (d / "in") + "' '" + (d / "out") + "'").code, 0);
  expect_only(d.path(), {"stdout", "stderr", "in", "out"});
}

// Issue 18 item 3: a FIFO as config.json, a shard or an index blocked open() forever.
TEST(LowbitTool, FifoInputsAreRefusedWithoutBlocking) {
  scratch_dir d;
  ::mkdir((d / "a").c_str(), 0755);
  write_f16_checkpoint(d / "a/model.safetensors", "w.weight", 8, 64);
  ASSERT_EQ(::mkfifo((d / "a/config.json").c_str(), 0644), 0);
  ::mkdir((d / "b").c_str(), 0755);
  ASSERT_EQ(::mkfifo((d / "b/model.safetensors").c_str(), 0644), 0);
  ::mkdir((d / "c").c_str(), 0755);
  ASSERT_EQ(::mkfifo((d / "c/model.safetensors.index.json").c_str(), 0644), 0);
  const struct {
    std::string args, fifo;
  } cases[] = {{"quantize --quiet '" + (d / "a") + "' '" + (d / "out") + "'", d / "a/config.json"},
               {"dequantize --quiet '" + (d / "a") + "' '" + (d / "out") + "'", d / "a/config.json"},
               {"inspect '" + (d / "b") + "'", d / "b/model.safetensors"},
               {"quantize '" + (d / "b/model.safetensors") + "' '" + (d / "out") + "'", d / "b/model.safetensors"},
               {"inspect '" + (d / "c") + "'", d / "c/model.safetensors.index.json"}};
  for (const auto& c : cases) {
    const run_result r = run(d, c.args, "timeout -s KILL 20");
    EXPECT_EQ(r.code, 2) << c.args << ": " << r.err;
    EXPECT_NE(r.err.find(c.fifo + ": is a FIFO, not a regular file"), std::string::npos) << r.err;
  }
  expect_only(d.path(), {"stdout", "stderr", "a", "b", "c"});
}

// Issue 18 item 6: an input truncated by another process while the tool reads it raised SIGBUS
// (no message, the temporary folder left behind). The run is stopped once it has begun writing
// (its temporary model file exists), the input is cut to its first page, and the run resumed.
TEST(LowbitTool, InputTruncatedDuringARunIsReported) {
  scratch_dir d;
  const std::string in = d / "in.safetensors", out = d / "out";
  bool caught = false;
  for (int attempt = 0; attempt < 4 && !caught; ++attempt) {
    write_f16_weights(in, 6, 2048, 2048);
    const pid_t pid = spawn(d, {"quantize", "--quiet", "--threads", "1", in, out});
    ASSERT_GT(pid, 0);
    bool stopped = false;
    for (int i = 0; i < 20000 && !stopped; ++i) {  // up to ~10 s
      for (const auto& t : names_with_prefix(d.path(), "out.lowbit-tmp-"))
        if (!names_with_prefix(d / t, "model.safetensors.tmp-").empty()) stopped = ::kill(pid, SIGSTOP) == 0;
      if (!stopped) ::usleep(500);
    }
    ASSERT_TRUE(stopped) << "the run never began writing";
    ASSERT_EQ(::truncate(in.c_str(), 4096), 0);
    ::kill(pid, SIGCONT);
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st)) << "killed by signal " << (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    if (WEXITSTATUS(st) == 0) {  // it had read everything before it was stopped: try again
      ASSERT_EQ(std::system(("rm -rf '" + out + "'").c_str()), 0);
      continue;
    }
    caught = true;
    EXPECT_EQ(WEXITSTATUS(st), 2);
    const std::string err = lowbit_test::read_bytes(d / "stderr");
    EXPECT_NE(err.find(in + ": became shorter while it was read (truncated by another process?); no output written"), std::string::npos) << err;
  }
  EXPECT_TRUE(caught) << "every run finished before the input was cut";
  expect_only(d.path(), {"stderr", "in.safetensors"});
}

// Issue 18 item 7: `lowbit quantize ... | head -n 1` (SIGPIPE) left OUT.lowbit-tmp-*. Here the
// pipe's reading end is closed before the tool starts, so its first report line already meets a
// closed pipe (as every line after the first does under `head -n 1`), whatever the timing.
TEST(LowbitTool, ClosedOutputPipeLeavesNothing) {
  scratch_dir d;
  write_f16_weights(d / "in.safetensors", 4, 256, 256);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  ::close(fds[0]);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[1]);
    ::freopen((d / "stderr").c_str(), "w", stderr);
    const std::string in = d / "in.safetensors", out = d / "out";
    ::execl(tool(), tool(), "quantize", in.c_str(), out.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_TRUE(WIFEXITED(st)) << "killed by signal " << (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  EXPECT_EQ(WEXITSTATUS(st), 130);
  EXPECT_NE(lowbit_test::read_bytes(d / "stderr").find("standard output closed (SIGPIPE); no output written"), std::string::npos)
      << lowbit_test::read_bytes(d / "stderr");
  expect_only(d.path(), {"in.safetensors", "stderr"});
}

// Issue 18 item 7: a run killed by SIGKILL leaves its temporary folder; the next run writing the
// same OUT recognises it by the process id in its name, removes it when that process is gone, and
// reports one whose process still runs.
TEST(LowbitTool, StaleTemporariesOfAKilledRunAreRemoved) {
  scratch_dir d;
  write_f16_weights(d / "in.safetensors", 4, 2048, 2048);
  const pid_t pid = spawn(d, {"quantize", "--quiet", d / "in.safetensors", d / "out"});
  ASSERT_GT(pid, 0);
  std::vector<std::string> tmp;
  for (int i = 0; i < 20000 && tmp.empty(); ++i) {
    tmp = names_with_prefix(d.path(), "out.lowbit-tmp-");
    if (tmp.empty()) ::usleep(500);
  }
  ::kill(pid, SIGKILL);
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  ASSERT_EQ(tmp.size(), 1u) << "no temporary folder seen";
  ASSERT_TRUE(lowbit_test::exists(d / tmp[0]));
  const std::string live = "out.lowbit-tmp-" + std::to_string(::getpid()) + "-abcdef";  // this test runs: not stale
  ::mkdir((d / live).c_str(), 0755);
  const run_result r = run(d, "quantize --quiet '" + (d / "in.safetensors") + "' '" + (d / "out") + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("removed " + (d / tmp[0]) + ", left by an earlier run (process " + std::to_string(pid) + ", no longer running)"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find((d / live) + " belongs to another run writing " + (d / "out")), std::string::npos) << r.err;
  expect_only(d.path(), {"stdout", "stderr", "in.safetensors", "out", live});
}

// Issue 18 item 8: problems of OUT were found only after all the work. OUT is checked first:
// with an input that does not exist, the error is OUT's (exit 3).
TEST(LowbitTool, OutputPathIsCheckedBeforeTheInput) {
  scratch_dir d;
  ::mkdir((d / "empty").c_str(), 0755);
  ASSERT_EQ(::symlink((d / "empty").c_str(), (d / "link").c_str()), 0);
  ASSERT_EQ(::symlink((d / "nowhere").c_str(), (d / "dangling").c_str()), 0);
  const std::string missing = "'" + (d / "missing.safetensors") + "' ";
  const struct {
    std::string out, says;
  } cases[] = {{"''", "the output path is empty"},
               {"'" + (d / "link") + "'", (d / "link") + ": is a symbolic link (to " + (d / "empty") + "); give the folder itself as OUT"},
               {"'" + (d / "dangling") + "'", (d / "dangling") + ": is a symbolic link (to " + (d / "nowhere") + ", which does not exist)"},
               {"'" + (d / "empty") + "/.'", "name the output folder itself"}};
  for (const auto& c : cases) {
    for (const char* cmd : {"quantize ", "dequantize "}) {
      const run_result r = run(d, cmd + missing + c.out);
      EXPECT_EQ(r.code, 3) << cmd << c.out << ": " << r.err;
      EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    }
  }
  expect_only(d / "empty", {});
  expect_only(d.path(), {"stdout", "stderr", "empty", "link", "dangling"});
}

// Issue 18 item 8, an empty mount point as OUT (the finished folder cannot be renamed onto it): the
// tool runs in a private mount namespace where an empty tmpfs is mounted on OUT. Needs root (CI is).
TEST(LowbitTool, OutputMountPointIsRefusedBeforeTheInput) {
  if (::geteuid() != 0 || std::system("unshare --mount --propagation private true >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "needs root and unshare --mount to make a mount point";
  scratch_dir d;
  ::mkdir((d / "mnt").c_str(), 0755);
  const std::string ns = "unshare --mount --propagation private sh -c 'mount -t tmpfs lowbit-test \"$1\" && shift && exec \"$@\"' sh '" +
                         (d / "mnt") + "'";
  for (const char* cmd : {"quantize ", "dequantize "}) {
    const run_result r = run(d, std::string(cmd) + "'" + (d / "missing.safetensors") + "' '" + (d / "mnt") + "'", ns);
    EXPECT_EQ(r.code, 3) << cmd << r.err;
    EXPECT_NE(r.err.find((d / "mnt") + ": is a mount point"), std::string::npos) << r.err;
  }
  expect_only(d / "mnt", {});
  expect_only(d.path(), {"stdout", "stderr", "mnt"});
}

// Issue 18 item 9: the output folder had mode 0700 (mkdtemp's); it honours the umask as mkdir does.
TEST(LowbitTool, OutputFolderHonoursTheUmask) {
  scratch_dir d;
  write_f16_checkpoint(d / "in.safetensors", "w.weight", 8, 64);
  const std::pair<const char*, mode_t> cases[] = {{"022", 0755}, {"027", 0750}, {"002", 0775}};
  for (const auto& [mask, want] : cases) {
    const std::string out = d / (std::string("out") + mask);
    const run_result r = run(d, "quantize --quiet '" + (d / "in.safetensors") + "' '" + out + "'", std::string("umask ") + mask + ";");
    ASSERT_EQ(r.code, 0) << r.err;
    struct stat st {};
    ASSERT_EQ(::stat(out.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, want) << "umask " << mask;
    ASSERT_EQ(::stat((out + "/model.safetensors").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, want & 0666) << "umask " << mask;
  }
}

// Issue 18 item 10: messages that did not say what is wrong.
TEST(LowbitTool, MalformedInputsGetMessagesThatNameTheProblem) {
  scratch_dir d;
  // A shape whose byte count overflows said "need 0 bytes".
  lowbit_test::write_bytes(d / "overflow.safetensors",
                           lowbit_test::raw_safetensors(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,4]}})", "abcd"));
  run_result r = run(d, "inspect '" + (d / "overflow.safetensors") + "'");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("tensor \"a\": shape [4294967296,4294967296,4] of dtype F32 needs more than 2^62 bytes, data_offsets give 4"), std::string::npos) << r.err;
  // "dtype": 5 said "missing".
  lowbit_test::write_bytes(d / "dtype.safetensors", lowbit_test::raw_safetensors(R"({"a":{"dtype":5,"shape":[1],"data_offsets":[0,1]}})", "x"));
  r = run(d, "inspect '" + (d / "dtype.safetensors") + "'");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("tensor \"a\": \"dtype\" is the number 5, not a string such as \"F16\""), std::string::npos) << r.err;
  // An input tensor with the name of a quantized weight's companion failed writing (exit 3,
  // naming the temporary file); it is found while planning (exit 2, naming both tensors).
  io::safetensors_writer w;
  ASSERT_TRUE(w.open(d / "clash.safetensors", {{"x.weight", io::st_dtype::F16, {8, 64}}, {"x.weight.absmax", io::st_dtype::F32, {8}}}).ok());
  const std::vector<std::uint8_t> zeros(8 * 64 * 2 + 32, 0);
  ASSERT_TRUE(w.write(zeros.data(), zeros.size()).ok());
  ASSERT_TRUE(w.commit().ok());
  r = run(d, "quantize --quiet '" + (d / "clash.safetensors") + "' '" + (d / "out") + "'");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("output tensor \"x.weight.absmax\" would be written twice: for input tensor \"x.weight\" and for input tensor \"x.weight.absmax\""),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("lowbit-tmp"), std::string::npos) << r.err;
  // A tensor named "" (the reader accepts it; no writer writes it).
  lowbit_test::write_bytes(d / "empty_name.safetensors", lowbit_test::raw_safetensors(R"({"":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", "abcd"));
  for (const char* cmd : {"quantize", "dequantize"}) {
    r = run(d, std::string(cmd) + " --quiet '" + (d / "empty_name.safetensors") + "' '" + (d / "out") + "'");
    EXPECT_EQ(r.code, 2) << cmd << ": " << r.err;
    EXPECT_NE(r.err.find("empty_name.safetensors: has a tensor named \"\" (empty), which a safetensors file cannot be written with"), std::string::npos) << r.err;
  }
  expect_only(d.path(), {"stdout", "stderr", "overflow.safetensors", "dtype.safetensors", "clash.safetensors", "empty_name.safetensors"});
}

// Issue 18 item 11: dequantize held every dense output tensor in memory before writing. It
// streams: its peak resident memory (ru_maxrss: anonymous memory, plus the input's pages it has
// mapped) stays far below the output's size. 24 NF4 weights of 2048 x 2048 (float16): 192 MiB
// of output from 50 MiB of input; the bound allows the input, a few tensors and the program.
TEST(LowbitTool, DequantizeStreamsWithBoundedMemory) {
  scratch_dir d;
  const std::int64_t rows = 2048, cols = 2048;
  const int count = 24;
  std::vector<lowbit::f16> w(static_cast<std::size_t>(rows * cols));
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = lowbit::from_float<lowbit::f16>(static_cast<float>(static_cast<int>(i % 97) - 48) * 1e-3f);
  lowbit::quant_tensor q;
  ASSERT_TRUE(lowbit::quantize(w.data(), lowbit::dtype::f16, {rows, cols}, lowbit::quantize_params{}, q).ok());
  std::vector<io::tensor_entry> entries, one;
  for (int i = 0; i < count; ++i) {
    ASSERT_TRUE(io::bnb_entries("layers." + std::to_string(i) + ".weight", q, one).ok());
    entries.insert(entries.end(), one.begin(), one.end());
  }
  io::safetensors_writer wr;
  ASSERT_TRUE(wr.open(d / "in.safetensors", entries).ok());
  for (int i = 0; i < count; ++i) ASSERT_TRUE(io::write_bnb(wr, q).ok());
  ASSERT_TRUE(wr.commit().ok());
  const pid_t pid = spawn(d, {"dequantize", "--quiet", d / "in.safetensors", d / "out"});
  ASSERT_GT(pid, 0);
  int st = 0;
  struct rusage ru {};
  ASSERT_EQ(::wait4(pid, &st, 0, &ru), pid);
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << lowbit_test::read_bytes(d / "stderr");
  const double peak_mib = static_cast<double>(ru.ru_maxrss) / 1024.0;
  const double output_mib = static_cast<double>(rows * cols * 2 * count) / (1 << 20);
  EXPECT_LT(peak_mib, 150.0) << "peak RSS " << peak_mib << " MiB for " << output_mib << " MiB of output";
  io::checkpoint back;
  ASSERT_TRUE(io::checkpoint::open(d / "out", back).ok());
  EXPECT_EQ(back.names().size(), static_cast<std::size_t>(count));
  std::vector<lowbit::f16> y(w.size());
  ASSERT_TRUE(lowbit::dequantize(q, y.data(), lowbit::dtype::f16).ok());
  const auto last = back.find("layers." + std::to_string(count - 1) + ".weight");
  ASSERT_NE(last.tensor, nullptr);
  EXPECT_EQ(std::memcmp(last.file->data(*last.tensor), y.data(), y.size() * 2), 0);
}

namespace {

// Every tensor of checkpoint `a` has the same dtype, shape and bytes in `b`, and `b` has no other.
void expect_same_tensors(const std::string& a, const std::string& b) {
  io::checkpoint ca, cb;
  ASSERT_TRUE(io::checkpoint::open(a, ca).ok()) << a;
  ASSERT_TRUE(io::checkpoint::open(b, cb).ok()) << b;
  ASSERT_EQ(ca.names().size(), cb.names().size());
  for (const auto& n : ca.names()) {
    const auto x = ca.find(n), y = cb.find(n);
    ASSERT_NE(y.tensor, nullptr) << n;
    EXPECT_EQ(x.tensor->dtype, y.tensor->dtype) << n;
    EXPECT_EQ(x.tensor->shape, y.tensor->shape) << n;
    EXPECT_EQ(std::memcmp(x.file->data(*x.tensor), y.file->data(*y.tensor), x.tensor->nbytes()), 0) << n;
  }
}

}  // namespace

// Issue 18 item 12: --max-shard-size writes transformers' shards and index for quantize and
// dequantize, a weight and its companions in one shard; the default stays one file.
TEST(LowbitTool, MaxShardSizeWritesTransformersShards) {
  scratch_dir d;
  write_f16_weights(d / "in.safetensors", 6, 256, 256);  // 128 KiB each; about 35 KB each as nf4 + dq
  const std::string in = "'" + (d / "in.safetensors") + "' ";
  ASSERT_EQ(run(d, "quantize --quiet " + in + "'" + (d / "one") + "'").code, 0);
  ASSERT_EQ(run(d, "quantize --quiet --max-shard-size 5GB " + in + "'" + (d / "fits") + "'").code, 0);
  expect_only(d / "fits", {"config.json", "model.safetensors"});
  const run_result r = run(d, "quantize --quiet --max-shard-size 80KB " + in + "'" + (d / "sharded") + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_only(d / "sharded", {"config.json", "model.safetensors.index.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                              "model-00003-of-00003.safetensors"});
  expect_same_tensors(d / "one", d / "sharded");
  io::checkpoint c;
  ASSERT_TRUE(io::checkpoint::open(d / "sharded", c).ok());  // the index lists each tensor in the shard that holds it
  std::uint64_t total = 0;
  for (std::size_t f = 0; f < c.file_count(); ++f) {
    std::uint64_t bytes = 0;
    for (const auto& t : c.file(f).tensors()) bytes += t.nbytes();
    EXPECT_LE(bytes, 80000u) << c.file(f).path();
    EXPECT_EQ(c.file(f).tensors().size(), 12u) << "two weights of six tensors each in " << c.file(f).path();
    total += bytes;
  }
  const std::string index = lowbit_test::read_bytes(d / "sharded/model.safetensors.index.json");
  EXPECT_NE(index.find("\"total_size\": " + std::to_string(total) + "\n"), std::string::npos) << index;
  EXPECT_NE(index.find("\"layers.2.weight.absmax\": \"model-00002-of-00003.safetensors\""), std::string::npos) << index;
  // A weight larger than the limit gets a shard of its own.
  ASSERT_EQ(run(d, "quantize --quiet --max-shard-size 1000 " + in + "'" + (d / "each") + "'").code, 0);
  EXPECT_TRUE(lowbit_test::exists(d / "each/model-00006-of-00006.safetensors"));
  expect_same_tensors(d / "one", d / "each");
  // dequantize reads the shards and writes its own: 128 KiB tensors, two per 300 KB shard.
  ASSERT_EQ(run(d, "dequantize --quiet '" + (d / "one") + "' '" + (d / "dense_one") + "'").code, 0);
  const run_result q = run(d, "dequantize --quiet --max-shard-size 300KB '" + (d / "sharded") + "' '" + (d / "dense_sharded") + "'");
  ASSERT_EQ(q.code, 0) << q.err;
  expect_only(d / "dense_sharded", {"config.json", "model.safetensors.index.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                    "model-00003-of-00003.safetensors"});
  expect_same_tensors(d / "dense_one", d / "dense_sharded");
  for (const char* bad : {"5XB", "0", "-1", "1.5", "GB", ""}) {
    const run_result b = run(d, std::string("quantize --max-shard-size '") + bad + "' " + in + "'" + (d / "bad") + "'");
    EXPECT_EQ(b.code, 1) << bad;
    EXPECT_NE(b.err.find("--max-shard-size must be a size such as 5GB"), std::string::npos) << b.err;
  }
  EXPECT_FALSE(lowbit_test::exists(d / "bad"));
}

// config.json is written as transformers writes it, keys sorted (json.dumps(indent=2,
// sort_keys=True)): built in a sorted map, whose cost is n log n in the number of keys (an
// object kept in the input's order looked each key up among those before it: 50,000 keys took
// 1.8 s, quadratic).
TEST(LowbitTool, ConfigKeysAreSortedAsTransformersWritesThem) {
  scratch_dir d;
  ::mkdir((d / "in").c_str(), 0755);
  write_f16_checkpoint(d / "in/model.safetensors", "w.weight", 8, 64);
  lowbit_test::write_bytes(d / "in/config.json", R"({"zeta": 1, "alpha": {"b": 2, "a": [3, {"y": 0, "x": 1}]}, "mid": "m"})");
  ASSERT_EQ(run(d, "quantize --quiet '" + (d / "in") + "' '" + (d / "q") + "'").code, 0);
  ASSERT_EQ(run(d, "dequantize --quiet '" + (d / "q") + "' '" + (d / "back") + "'").code, 0);
  const std::string q = lowbit_test::read_bytes(d / "q/config.json");
  EXPECT_LT(q.find("\"alpha\""), q.find("\"mid\"")) << q;
  EXPECT_LT(q.find("\"mid\""), q.find("\"quantization_config\"")) << q;
  EXPECT_LT(q.find("\"quantization_config\""), q.find("\"zeta\"")) << q;
  EXPECT_EQ(lowbit_test::read_bytes(d / "back/config.json"),
            "{\n  \"alpha\": {\n    \"a\": [\n      3,\n      {\n        \"x\": 1,\n        \"y\": 0\n      }\n    ],\n    \"b\": 2\n  },\n"
            "  \"mid\": \"m\",\n  \"zeta\": 1\n}\n");
}

// A sharded run interrupted while its writer thread begins shard after shard leaves nothing.
TEST(LowbitTool, InterruptedShardedRunLeavesNothing) {
  scratch_dir d;
  write_f16_weights(d / "in.safetensors", 16, 1024, 1024);  // 16 weights, one 0.6 MB shard each
  for (int delay_ms : {15, 40, 90}) {
    const std::string out = d / ("out" + std::to_string(delay_ms));
    const pid_t pid = spawn(d, {"quantize", "--quiet", "--max-shard-size", "600KB", d / "in.safetensors", out});
    ASSERT_GT(pid, 0);
    ::usleep(static_cast<useconds_t>(delay_ms) * 1000);
    ::kill(pid, SIGTERM);
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, 0), pid);
    ASSERT_TRUE(WIFEXITED(st));
    if (WEXITSTATUS(st) == 130) {
      EXPECT_FALSE(lowbit_test::exists(out)) << "after SIGTERM at " << delay_ms << " ms";
    } else {
      EXPECT_EQ(WEXITSTATUS(st), 0);
      EXPECT_TRUE(lowbit_test::exists(out + "/model-00016-of-00016.safetensors"));
      ASSERT_EQ(std::system(("rm -rf '" + out + "'").c_str()), 0);
    }
  }
  expect_only(d.path(), {"in.safetensors", "stderr"});
}

// GGUF: convert the shipped checkpoint (and its NF4 quantization) to each ggml type, read the file
// back with lowbit's reader, dequantize it, and the refusals.
TEST(LowbitTool, ConvertsToGgufAndBack) {
  scratch_dir d;
  const std::string sample = LOWBIT_SAMPLE;
  io::checkpoint in;
  ASSERT_TRUE(io::checkpoint::open(sample, in).ok());
  for (const char* to : {"q8_0", "q4_0", "q4_1", "mxfp4", "f16"}) {
    SCOPED_TRACE(to);
    const std::string out = d / (std::string("g_") + to);
    const run_result r = run(d, "convert --quiet '" + sample + "' '" + out + "' --to gguf-" + to);
    ASSERT_EQ(r.code, 0) << r.err;
    expect_only(out, {"config.json", "model.gguf"});
    io::gguf_file g;
    ASSERT_TRUE(io::gguf_file::open(out + "/model.gguf", g).ok());
    EXPECT_EQ(g.tensors().size(), in.names().size());
    for (const auto& name : in.names()) {
      const io::tensor_info& t = *in.find(name).tensor;
      const io::gguf_tensor* gt = g.find_tensor(name);
      ASSERT_NE(gt, nullptr) << name;
      EXPECT_EQ(gt->shape(), t.shape) << name;
      // 2-D weights get the target type (their rows are whole blocks); 1-D tensors stay F32.
      const std::string want = t.shape.size() == 2 ? to : "f32";
      EXPECT_EQ(lowbit::ggml::type_name(gt->type), want) << name;
      // Its bytes are lowbit::ggml::quantize of the input's float32 values.
      std::vector<float> x(static_cast<std::size_t>(t.numel()));
      const std::uint8_t* b = in.find(name).file->data(t);
      for (std::size_t k = 0; k < x.size(); ++k) {
        if (t.dtype == io::st_dtype::F32) {
          std::memcpy(&x[k], b + 4 * k, 4);
        } else {
          ASSERT_EQ(t.dtype, io::st_dtype::F16) << name;  // the sample's dtypes
          std::uint16_t h;
          std::memcpy(&h, b + 2 * k, 2);
          x[k] = lowbit::f16_bits_to_float(h);
        }
      }
      std::vector<std::uint8_t> q(lowbit::ggml::row_bytes(static_cast<lowbit::ggml::type>(gt->type), x.size()));
      ASSERT_TRUE(lowbit::ggml::quantize(static_cast<lowbit::ggml::type>(gt->type), x.data(), static_cast<std::int64_t>(x.size()), q.data()).ok());
      ASSERT_EQ(q.size(), gt->nbytes);
      EXPECT_EQ(std::memcmp(q.data(), gt->data, q.size()), 0) << name;
    }
    ASSERT_NE(g.find("general.architecture"), nullptr);
    EXPECT_EQ(g.find("general.architecture")->strings.at(0), "bert");
    if (std::string(to) == "q4_0") {
      EXPECT_NE(r.out.find("encoder.layer.0.attention.self.query.weight"), std::string::npos) << r.out;
      EXPECT_NE(r.out.find("SQNR"), std::string::npos) << r.out;
      const run_result insp = run(d, "inspect '" + out + "/model.gguf'");
      EXPECT_EQ(insp.code, 0) << insp.err;
      EXPECT_NE(insp.out.find("gguf:q4_0"), std::string::npos) << insp.out;
      EXPECT_NE(insp.out.find("4.500"), std::string::npos) << insp.out;
      // Back to safetensors: the block types as float32 (ggml's values), F32 unchanged.
      const run_result deq = run(d, "dequantize --quiet '" + out + "/model.gguf' '" + (d / "dense") + "'");
      ASSERT_EQ(deq.code, 0) << deq.err;
      io::checkpoint back;
      ASSERT_TRUE(io::checkpoint::open(d / "dense", back).ok());
      for (const auto& name : in.names()) {
        const io::tensor_info& t = *back.find(name).tensor;
        EXPECT_EQ(t.dtype, io::st_dtype::F32);
        EXPECT_EQ(t.shape, in.find(name).tensor->shape);
        const io::gguf_tensor* gt = g.find_tensor(name);
        std::vector<float> y(static_cast<std::size_t>(gt->numel()));
        ASSERT_TRUE(io::gguf_file::dequantize(*gt, y.data()).ok());
        EXPECT_EQ(std::memcmp(y.data(), back.find(name).file->data(t), y.size() * 4), 0) << name;
      }
    }
  }
  // From bitsandbytes NF4: the weights are dequantized first, then quantized.
  ASSERT_EQ(run(d, "quantize --quiet --no-report '" + sample + "' '" + (d / "nf4") + "'").code, 0);
  const run_result nf4 = run(d, "convert --quiet '" + (d / "nf4") + "' '" + (d / "from_nf4") + "' --to gguf-q8_0");
  ASSERT_EQ(nf4.code, 0) << nf4.err;
  io::gguf_file g;
  ASSERT_TRUE(io::gguf_file::open(d / "from_nf4/model.gguf", g).ok());
  EXPECT_EQ(lowbit::ggml::type_name(g.find_tensor("encoder.layer.0.output.dense.weight")->type), std::string("q8_0"));
}

// convert to the safetensors layouts: bitsandbytes' weights equal what `quantize` writes from the
// same input (two paths of the tool, one engine); fine-grained FP8 equals io::quantize_fp8_block of
// the input (its independent numpy check is io_fp8_block_interop_test); chains through GGUF and
// FP8 end where `dequantize` of the last step says; --max-shard-size shards; refusals.
TEST(LowbitTool, ConvertsBetweenSafetensorsLayouts) {
  scratch_dir d;
  const std::string sample = LOWBIT_SAMPLE;
  io::checkpoint in;
  ASSERT_TRUE(io::checkpoint::open(sample, in).ok());
  const std::string w = "encoder.layer.0.output.dense.weight";  // F16 [384, 1536] in the sample
  for (const char* f : {"nf4", "fp4", "int8"}) {
    SCOPED_TRACE(f);
    ASSERT_EQ(run(d, "convert --quiet '" + sample + "' '" + (d / "c_") + f + "' --to bnb-" + f).code, 0);
    ASSERT_EQ(run(d, "quantize --quiet --no-report '" + sample + "' '" + (d / "q_") + f + "' --format " + f).code, 0);
    io::checkpoint a, b;
    ASSERT_TRUE(io::checkpoint::open(d / "c_" + f, a).ok());
    ASSERT_TRUE(io::checkpoint::open(d / "q_" + f, b).ok());
    ASSERT_EQ(a.names(), b.names());
    for (const auto& n : a.names()) {
      const io::tensor_info& ta = *a.find(n).tensor;
      const io::tensor_info& tb = *b.find(n).tensor;
      ASSERT_EQ(ta.shape, tb.shape) << n;
      EXPECT_EQ(std::memcmp(a.find(n).file->data(ta), b.find(n).file->data(tb), static_cast<std::size_t>(ta.nbytes())), 0) << n;
    }
    const std::string cfg = lowbit_test::read_bytes(d / "c_" + f + "/config.json");
    EXPECT_NE(cfg.find(std::string("\"load_in_") + (std::string(f) == "int8" ? "8bit" : "4bit") + "\": true"), std::string::npos) << cfg;
  }
  // fine-grained FP8, sharded at 1 MB (the sample holds 3.4 MB)
  const run_result r = run(d, "convert --quiet '" + sample + "' '" + (d / "fp8") + "' --to fp8-block --max-shard-size 1MB");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find(w), std::string::npos) << r.out;
  io::checkpoint f8;
  ASSERT_TRUE(io::checkpoint::open(d / "fp8", f8).ok());
  EXPECT_GT(f8.file_count(), 1u);
  io::fp8_block_config cfg;
  ASSERT_TRUE(io::read_fp8_block_config(d / "fp8/config.json", cfg).ok());
  EXPECT_EQ(cfg.block_rows, 128);
  EXPECT_EQ(cfg.modules_to_not_convert, (std::vector<std::string>{"lm_head", "embed"}));
  lowbit::scaled_tensor got, want;
  ASSERT_TRUE(io::load_fp8_block(f8, w, cfg, got).ok());
  const io::tensor_info& t = *in.find(w).tensor;
  ASSERT_TRUE(io::quantize_fp8_block(in.find(w).file->data(t), lowbit::dtype::f16, t.shape, cfg, want).ok());
  EXPECT_EQ(std::memcmp(got.codes(), want.codes(), static_cast<std::size_t>(want.code_bytes())), 0);
  EXPECT_EQ(std::memcmp(got.scale_bytes(), want.scale_bytes(), static_cast<std::size_t>(want.grid().tiles() * 4)), 0);
  EXPECT_EQ(f8.find("encoder.layer.0.output.dense.bias").tensor->dtype, io::st_dtype::F16);  // kept as it was
  // FP8 -> GGUF q8_0 -> bfloat16 safetensors: each step's values are the previous step's decoded.
  ASSERT_EQ(run(d, "convert --quiet '" + (d / "fp8") + "' '" + (d / "g") + "' --to gguf-q8_0").code, 0);
  ASSERT_EQ(run(d, "convert --quiet '" + (d / "g/model.gguf") + "' '" + (d / "bf") + "' --to safetensors-bf16").code, 0);
  std::vector<float> y(static_cast<std::size_t>(t.numel())), y8(y.size());
  ASSERT_TRUE(lowbit::dequantize(want, y.data(), lowbit::dtype::f32).ok());
  std::vector<std::uint8_t> q8(lowbit::ggml::row_bytes(lowbit::ggml::type::q8_0, y.size()));
  ASSERT_TRUE(lowbit::ggml::quantize(lowbit::ggml::type::q8_0, y.data(), static_cast<std::int64_t>(y.size()), q8.data()).ok());
  ASSERT_TRUE(lowbit::ggml::dequantize(lowbit::ggml::type::q8_0, q8.data(), static_cast<std::int64_t>(y.size()), y8.data()).ok());
  io::checkpoint bf;
  ASSERT_TRUE(io::checkpoint::open(d / "bf", bf).ok());
  const io::tensor_info& tb = *bf.find(w).tensor;
  ASSERT_EQ(tb.dtype, io::st_dtype::BF16);
  const std::uint8_t* bb = bf.find(w).file->data(tb);
  for (std::size_t k = 0; k < y8.size(); ++k) {
    std::uint16_t h;
    std::memcpy(&h, bb + 2 * k, 2);
    ASSERT_EQ(h, lowbit::float_to_bf16_bits(y8[k])) << "element " << k;
  }
  const std::string bcfg = lowbit_test::read_bytes(d / "bf/config.json");
  EXPECT_EQ(bcfg.find("quantization_config"), std::string::npos) << bcfg;
  // refusals: nothing written
  run_result e = run(d, "convert '" + sample + "' '" + (d / "x") + "' --to gguf-q4_0 --skip mlp");
  EXPECT_EQ(e.code, 1);
  EXPECT_NE(e.err.find("--skip applies to the quantized safetensors layouts only"), std::string::npos) << e.err;
  e = run(d, "convert '" + sample + "' '" + (d / "x") + "' --to fp8-blocks");
  EXPECT_EQ(e.code, 1);
  EXPECT_NE(e.err.find("(not \"fp8-blocks\")"), std::string::npos) << e.err;
  EXPECT_FALSE(lowbit_test::exists(d / "x"));
}

// convert's file and error report do not depend on --threads (the report's sums are taken per
// chunk and added in chunk order).
TEST(LowbitTool, ConvertDoesNotDependOnThreads) {
  scratch_dir d;
  write_f16_checkpoint(d / "w.safetensors", "layer.weight", 640, 1024);  // 40 chunks
  std::string report[2], bytes[2];
  int k = 0;
  for (const char* threads : {"1", "2"}) {
    const std::string out = d / (std::string("o") + threads);
    const run_result r = run(d, "convert --quiet '" + (d / "w.safetensors") + "' '" + out + "' --to gguf-q4_1 --threads " + threads);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("SQNR"), std::string::npos) << r.out;
    report[k] = r.out.substr(0, r.out.find("wrote"));
    bytes[k++] = lowbit_test::read_bytes(out + "/model.gguf");
  }
  EXPECT_EQ(report[0], report[1]);
  EXPECT_TRUE(bytes[0] == bytes[1]);
}

TEST(LowbitTool, ConvertRefusals) {
  scratch_dir d;
  const std::string sample = LOWBIT_SAMPLE;
  run_result r = run(d, "convert '" + sample + "' '" + (d / "o") + "' --to nf4");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--to must be one of gguf-f32"), std::string::npos) << r.err;
  r = run(d, "convert '" + sample + "' '" + (d / "o") + "'");
  EXPECT_EQ(r.code, 1);
  r = run(d, "convert '" + sample + "' '" + (d / "o") + "' --to gguf-q4_0 --max-shard-size 1MB");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("does not apply to a GGUF output"), std::string::npos) << r.err;
  // OUT is checked before the input.
  ::mkdir((d / "full").c_str(), 0755);
  lowbit_test::write_bytes(d / "full/keep.txt", "x");
  r = run(d, "convert '" + (d / "missing") + "' '" + (d / "full") + "' --to gguf-q4_0");
  EXPECT_EQ(r.code, 3);
  expect_only(d / "full", {"keep.txt"});
  // A GGUF tensor of a type lowbit does not decode (Q4_K) is named, and nothing is written.
  io::gguf_writer w;
  std::vector<io::gguf_tensor> t(1);
  t[0].name = "blk.0.ffn_down.weight";
  t[0].ne = {256, 2};
  t[0].type = 12;
  ASSERT_TRUE(w.open(d / "k.gguf", {}, t).ok());
  const std::string zeros(2 * 144, '\0');
  ASSERT_TRUE(w.write(zeros.data(), zeros.size()).ok());
  ASSERT_TRUE(w.commit().ok());
  for (const char* cmd : {"dequantize", "convert"}) {
    r = run(d, std::string(cmd) + " '" + (d / "k.gguf") + "' '" + (d / "o") + "'" + (std::string(cmd) == "convert" ? " --to gguf-q8_0" : ""));
    EXPECT_EQ(r.code, 2) << cmd;
    EXPECT_NE(r.err.find("\"blk.0.ffn_down.weight\" is ggml type q4_K"), std::string::npos) << cmd << ": " << r.err;
    EXPECT_FALSE(lowbit_test::exists(d / "o"));
  }
  r = run(d, "inspect '" + (d / "k.gguf") + "'");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("gguf:q4_K"), std::string::npos) << r.out;
  // NaN in a block type's input: exit 4 naming the tensor and the element's index in it (chunk
  // 4 of 8 of the tensor), and nothing is written.
  write_f16_checkpoint(d / "nan.safetensors", "w.weight", 256, 512, std::nanf(""));
  for (const char* threads : {"1", "2"}) {
    r = run(d, "convert '" + (d / "nan.safetensors") + "' '" + (d / "o") + "' --to gguf-q4_0 --threads " + threads);
    EXPECT_EQ(r.code, 4) << r.err;
    EXPECT_NE(r.err.find("tensor \"w.weight\": ggml::quantize: x[65536] is NaN"), std::string::npos) << r.err;
    EXPECT_FALSE(lowbit_test::exists(d / "o"));
  }
  // A damaged GGUF file: the reader's message, exit 2.
  std::string bytes = lowbit_test::read_bytes(d / "k.gguf");
  bytes.resize(bytes.size() - 40);
  lowbit_test::write_bytes(d / "cut.gguf", bytes);
  r = run(d, "inspect '" + (d / "cut.gguf") + "'");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("run past its end"), std::string::npos) << r.err;
}
