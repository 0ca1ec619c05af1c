// SPDX-License-Identifier: Apache-2.0
// safetensors reader and writer, sharded checkpoints, transformers' quantization_config: valid
// files read back exactly; every kind of malformed file gives an error naming the file, the
// tensor and the problem; a failed or abandoned write leaves nothing behind.
#include <lowbit/io.hpp>

#include "io_test_util.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

namespace io = lowbit::io;
using lowbit_test::raw_safetensors;
using lowbit_test::scratch_dir;

namespace {

lowbit::status parse(const std::string& bytes, io::safetensors_file& f) {
  return io::safetensors_file::parse(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "bad.safetensors", f);
}

// Expects parse(bytes) to fail with a message containing every one of `parts` and the file name.
void expect_rejected(const std::string& bytes, std::initializer_list<const char*> parts) {
  io::safetensors_file f;
  const lowbit::status s = parse(bytes, f);
  ASSERT_FALSE(s.ok()) << "accepted: " << bytes.substr(8);
  EXPECT_EQ(s.code(), lowbit::errc::invalid_argument);
  EXPECT_NE(std::strstr(s.message(), "bad.safetensors"), nullptr) << s.message();
  for (const char* p : parts) EXPECT_NE(std::strstr(s.message(), p), nullptr) << "message \"" << s.message() << "\" lacks \"" << p << "\"";
}

const char* kTwo = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[2,2],"data_offsets":[8,12]}})";

}  // namespace

TEST(SafetensorsReader, ReadsAHandWrittenFile) {
  const std::string data = std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0", 8) + "wxyz";
  io::safetensors_file f;
  ASSERT_TRUE(parse(raw_safetensors(kTwo, data), f).ok());
  ASSERT_EQ(f.tensors().size(), 2u);
  const io::tensor_info* a = f.find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, io::st_dtype::F32);
  EXPECT_EQ(a->shape, (std::vector<std::int64_t>{2}));
  float v[2];
  std::memcpy(v, f.data(*a), 8);
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[1], -2.0f);
  const io::tensor_info* b = f.find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data(*b)), 4), "wxyz");
  EXPECT_EQ(f.find("c"), nullptr);
  EXPECT_TRUE(f.metadata().empty());
}

TEST(SafetensorsReader, AcceptsMetadataPaddingAndEmptyTensors) {
  const std::string h = R"({"__metadata__":{"format":"pt"},"e":{"dtype":"BF16","shape":[0,4],"data_offsets":[0,0]},)"
                        R"("s":{"dtype":"I64","shape":[],"data_offsets":[0,8]}}    )";
  io::safetensors_file f;
  ASSERT_TRUE(parse(raw_safetensors(h, std::string(8, '\x01')), f).ok());
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.find("e")->nbytes(), 0u);
  EXPECT_EQ(f.find("s")->numel(), 1);
}

TEST(SafetensorsReader, RejectsMalformedFiles) {
  const std::string ok8(8, '\0');
  expect_rejected(std::string("\x05\x00\x00", 3), {"truncated"});
  expect_rejected(raw_safetensors(kTwo, std::string(12, 'x'), 5000), {"runs past the end"});
  expect_rejected(raw_safetensors("{}", "", std::uint64_t{1} << 40), {"exceeds the limit"});
  expect_rejected(raw_safetensors(kTwo, std::string(11, 'x')), {"out of range", "\"b\""});
  expect_rejected(raw_safetensors(kTwo, std::string(13, 'x')), {"cover 12 bytes of a 13-byte"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", ok8),
                  {"overlap"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", ok8), {"unused", "\"a\""});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", ok8), {"end before"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", ok8), {"unknown dtype \"F33\"", "\"a\""});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", ok8), {"unknown dtype"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", ok8), {"need 12 bytes", "give 8"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", ok8), {"non-negative"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", ok8), {"non-negative"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})", ok8), {"need"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2]}})", ok8), {"data_offsets"});
  expect_rejected(raw_safetensors(R"({"a":{"shape":[2],"data_offsets":[0,8]}})", ok8), {"dtype"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", ok8), {"unexpected field"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", ok8),
                  {"appears twice"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})", ok8), {"not valid JSON"});
  expect_rejected(raw_safetensors(R"({"a":{"dtype":"F32",,}})", ok8), {"not valid JSON", "at byte"});
  expect_rejected(raw_safetensors(R"([1,2])", ""), {"does not start with '{'"});
  expect_rejected(raw_safetensors("{\"\xff\":1}", ""), {"not valid UTF-8", "byte 2"});
  expect_rejected(raw_safetensors("{\"\xc0\xaf\":1}", ""), {"not valid UTF-8"});      // overlong '/'
  expect_rejected(raw_safetensors("{\"\xed\xa0\x80\":1}", ""), {"not valid UTF-8"});  // a surrogate
  expect_rejected(raw_safetensors(R"({"__metadata__":{"format":1}})", ""), {"__metadata__"});
  expect_rejected(raw_safetensors(R"({"a":[1]})", ""), {"not a JSON object", "\"a\""});
  expect_rejected(raw_safetensors(std::string("{}") + std::string(4000, ' ') + "x", ""), {"not valid JSON"});  // padding, then not
}

TEST(SafetensorsReader, EveryTruncationOfAValidFileIsAnError) {
  const std::string whole = raw_safetensors(kTwo, std::string(12, 'x'));
  io::safetensors_file f;
  ASSERT_TRUE(parse(whole, f).ok());
  for (std::size_t n = 0; n < whole.size(); ++n) {
    io::safetensors_file g;
    EXPECT_FALSE(parse(whole.substr(0, n), g).ok()) << "prefix of " << n << " bytes accepted";
  }
}

TEST(SafetensorsReader, OpenReportsMissingFilesAndFolders) {
  scratch_dir d;
  io::safetensors_file f;
  lowbit::status s = io::safetensors_file::open(d / "missing.safetensors", f);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), lowbit::errc::io);
  EXPECT_NE(std::strstr(s.message(), "missing.safetensors"), nullptr);
  s = io::safetensors_file::open(d.path(), f);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::strstr(s.message(), "not a regular file"), nullptr);
}

TEST(SafetensorsWriter, RoundTripsEveryDtype) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed());
  scratch_dir d;
  std::vector<io::tensor_entry> entries;
  std::vector<std::string> data;
  for (int t = 0; t <= static_cast<int>(io::st_dtype::F64); ++t) {
    io::tensor_entry e{std::string("t.") + io::info(static_cast<io::st_dtype>(t)).name, static_cast<io::st_dtype>(t), {3, static_cast<std::int64_t>(rng() % 5)}};
    std::string bytes(e.nbytes(), '\0');
    for (auto& c : bytes) c = static_cast<char>(rng());
    entries.push_back(e);
    data.push_back(bytes);
  }
  entries.push_back({"scalar", io::st_dtype::F32, {}});
  data.push_back(std::string("\x00\x00\x80\x3f", 4));
  io::safetensors_writer w;
  ASSERT_TRUE(w.open(d / "m.safetensors", entries, {{"format", "pt"}, {"note", "h\xc3\xa9llo"}}).ok());
  for (const auto& b : data) {  // in two pieces each, to exercise streaming across tensors
    ASSERT_TRUE(w.write(b.data(), b.size() / 2).ok());
    ASSERT_TRUE(w.write(b.data() + b.size() / 2, b.size() - b.size() / 2).ok());
  }
  ASSERT_TRUE(w.commit().ok());
  EXPECT_EQ(lowbit_test::list_dir(d.path()), (std::set<std::string>{"m.safetensors"}));

  const std::string raw = lowbit_test::read_bytes(d / "m.safetensors");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(raw[static_cast<std::size_t>(i)]);
  EXPECT_EQ((8 + n) % io::safetensors_writer::data_alignment, 0u) << "data section is not page-aligned";
  const std::string header = raw.substr(8, static_cast<std::size_t>(n));
  const std::size_t json_end = header.find_last_not_of(' ');
  ASSERT_NE(json_end, std::string::npos);
  EXPECT_EQ(header[json_end], '}') << "the header is padded with something other than spaces";
  std::size_t data_bytes = 0;
  for (const auto& b : data) data_bytes += b.size();
  EXPECT_EQ(raw.size(), 8 + n + data_bytes);
  io::safetensors_file f;
  ASSERT_TRUE(io::safetensors_file::open(d / "m.safetensors", f).ok());
  EXPECT_EQ(f.metadata().at("note"), "h\xc3\xa9llo");
  ASSERT_EQ(f.tensors().size(), entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const io::tensor_info* t = f.find(entries[i].name);
    ASSERT_NE(t, nullptr) << entries[i].name;
    EXPECT_EQ(t->dtype, entries[i].dtype);
    EXPECT_EQ(t->shape, entries[i].shape);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data(*t)), t->nbytes()), data[i]) << entries[i].name;
  }
}

// Files larger than the writer's 8 MB buffer: whole buffers go out with O_DIRECT where the file
// system takes it, the tail with an ordinary write. Written in TMPDIR and in /dev/shm (tmpfs:
// direct I/O on recent kernels, the ordinary-write fallback on older ones); the bytes read back
// exactly, in writes of every size: tiny, straddling a buffer, and larger than one.
TEST(SafetensorsWriter, LargeFilesReadBackExactly) {
  LOWBIT_SEED_TRACE();
  std::mt19937_64 rng(lowbit_test::test_seed());
  std::string big(std::size_t{21} << 20, '\0');
  for (std::size_t i = 0; i < big.size(); i += 8) {
    const std::uint64_t r = rng();
    std::memcpy(&big[i], &r, 8);
  }
  const std::vector<io::tensor_entry> entries = {{"a", io::st_dtype::U8, {static_cast<std::int64_t>(big.size()) - 12345}}, {"b", io::st_dtype::U8, {12345}}};
  scratch_dir d;
  for (const std::string& dir : {d.path(), std::string("/dev/shm")}) {
    if (!lowbit_test::exists(dir)) continue;
    const std::string path = dir + "/lowbit_large_" + std::to_string(::getpid()) + ".safetensors";
    io::safetensors_writer w;
    ASSERT_TRUE(w.open(path, entries).ok()) << path;
    std::size_t at = 0;
    for (std::size_t n : {std::size_t{3}, std::size_t{5} << 20, std::size_t{4} << 20, std::size_t{1}, std::size_t{9} << 20}) {
      ASSERT_TRUE(w.write(big.data() + at, n).ok()) << path;
      at += n;
    }
    ASSERT_TRUE(w.write(big.data() + at, big.size() - at).ok()) << path;
    ASSERT_TRUE(w.commit().ok()) << path;
    io::safetensors_file f;
    ASSERT_TRUE(io::safetensors_file::open(path, f).ok()) << path;
    const io::tensor_info* a = f.find("a");
    const io::tensor_info* b = f.find("b");
    ASSERT_TRUE(a != nullptr && b != nullptr) << path;
    EXPECT_TRUE(std::memcmp(f.data(*a), big.data(), a->nbytes()) == 0) << path;
    EXPECT_TRUE(std::memcmp(f.data(*b), big.data() + a->nbytes(), b->nbytes()) == 0) << path;
    ::unlink(path.c_str());
  }
}

// reshape: a tensor not yet begun may become smaller (in bytes and in the text of its shape);
// the header, written at commit, describes the shapes written, the offsets follow them, and
// the data still starts page-aligned. Refused reshapes change nothing.
TEST(SafetensorsWriter, ReshapeShrinksATensorNotYetBegun) {
  scratch_dir d;
  io::safetensors_writer w;
  ASSERT_TRUE(w.open(d / "r.safetensors", {{"a", io::st_dtype::U8, {10}}, {"b", io::st_dtype::U8, {100}}, {"c", io::st_dtype::F32, {2}}}, {{"k", "v"}}).ok());
  ASSERT_TRUE(w.write("0123456789", 5).ok());
  auto refused = [&](std::size_t i, std::vector<std::int64_t> shape, const char* part) {
    const lowbit::status s = w.reshape(i, shape);
    ASSERT_FALSE(s.ok()) << part;
    EXPECT_EQ(s.code(), lowbit::errc::invalid_argument);
    EXPECT_NE(std::strstr(s.message(), part), nullptr) << s.message();
    EXPECT_NE(std::strstr(s.message(), "r.safetensors"), nullptr) << s.message();
  };
  refused(0, {5}, "after writing reached it");
  refused(1, {101}, "room for at most 100 bytes");
  refused(2, {1, 1}, "characters of shape");  // 4 bytes, but "[1,1]" is longer than "[2]"
  refused(1, {-1}, "negative");
  refused(3, {1}, "tensor 3 of 3");
  ASSERT_TRUE(w.write("56789", 5).ok());
  ASSERT_TRUE(w.reshape(1, {37}).ok());
  ASSERT_TRUE(w.reshape(2, {1}).ok());
  const std::string b(37, 'b');
  ASSERT_TRUE(w.write(b.data(), b.size()).ok());
  refused(1, {36}, "after writing reached it");
  ASSERT_TRUE(w.write("cccc", 4).ok());
  EXPECT_FALSE(w.write("x", 1).ok()) << "a byte past the reshaped last tensor was taken";
}

// A tensor of no bytes that writing has passed (as it passes every empty tensor on its way to the
// next bytes) may still take another empty shape, never one with bytes.
TEST(SafetensorsWriter, EmptyTensorsPassedByWritingKeepNoBytes) {
  scratch_dir d;
  io::safetensors_writer w;
  ASSERT_TRUE(w.open(d / "e.safetensors", {{"a", io::st_dtype::U8, {4}}, {"e", io::st_dtype::F32, {0, 8}}, {"b", io::st_dtype::U8, {2}}}).ok());
  ASSERT_TRUE(w.write("aaaab", 5).ok());
  const lowbit::status s = w.reshape(1, {1, 1});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::strstr(s.message(), "after writing reached it"), nullptr) << s.message();
  ASSERT_TRUE(w.reshape(1, {8, 0}).ok());
  ASSERT_TRUE(w.write("b", 1).ok());
  ASSERT_TRUE(w.commit().ok());
  io::safetensors_file f;
  ASSERT_TRUE(io::safetensors_file::open(d / "e.safetensors", f).ok());
  ASSERT_NE(f.find("e"), nullptr);
  EXPECT_EQ(f.find("e")->shape, (std::vector<std::int64_t>{8, 0}));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data(*f.find("b"))), 2), "bb");
}

TEST(SafetensorsWriter, ReshapedFileReadsBack) {
  scratch_dir d;
  io::safetensors_writer w;
  ASSERT_TRUE(w.open(d / "r.safetensors", {{"a", io::st_dtype::U8, {10}}, {"b", io::st_dtype::U8, {100}}, {"c", io::st_dtype::F32, {2}}}, {{"k", "v"}}).ok());
  ASSERT_TRUE(w.write("0123456789", 10).ok());
  ASSERT_TRUE(w.reshape(1, {37}).ok());
  ASSERT_TRUE(w.reshape(2, {1}).ok());
  const std::string b(37, 'b');
  ASSERT_TRUE(w.write(b.data(), b.size()).ok());
  ASSERT_TRUE(w.write("cccc", 4).ok());
  ASSERT_TRUE(w.commit().ok());
  EXPECT_EQ(lowbit_test::list_dir(d.path()), (std::set<std::string>{"r.safetensors"}));
  io::safetensors_file f;
  ASSERT_TRUE(io::safetensors_file::open(d / "r.safetensors", f).ok());
  EXPECT_EQ(f.metadata().at("k"), "v");
  const io::tensor_info* t[3] = {f.find("a"), f.find("b"), f.find("c")};
  ASSERT_TRUE(t[0] && t[1] && t[2]);
  EXPECT_EQ(t[1]->shape, (std::vector<std::int64_t>{37}));
  EXPECT_EQ(t[1]->begin, 10u);
  EXPECT_EQ(t[2]->shape, (std::vector<std::int64_t>{1}));
  EXPECT_EQ(t[2]->begin, 47u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data(*t[1])), 37), b);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data(*t[2])), 4), "cccc");
  EXPECT_EQ(f.file_size(), io::safetensors_writer::data_alignment + 51);  // one page of header, then the data
}

// atomic_file's reserved head: written at commit in front of the data, exactly its size, and
// only reserved before the first write; a wrong head abandons the file.
TEST(AtomicFile, ReservedHeadIsWrittenAtCommit) {
  scratch_dir d;
  const std::string path = d / "f.bin";
  {
    io::atomic_file f;
    ASSERT_TRUE(f.open(path).ok());
    ASSERT_TRUE(f.reserve_head(6).ok());
    ASSERT_TRUE(f.write("data", 4).ok());
    EXPECT_FALSE(f.reserve_head(2).ok());
    ASSERT_TRUE(f.commit("header", 6).ok());
    EXPECT_EQ(lowbit_test::read_bytes(path), "headerdata");
  }
  {
    io::atomic_file f;
    ASSERT_TRUE(f.open(path).ok());
    ASSERT_TRUE(f.write("x", 1).ok());
    const lowbit::status s = f.reserve_head(4);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(std::strstr(s.message(), "after the file was begun"), nullptr) << s.message();
  }
  {
    io::atomic_file f;
    ASSERT_TRUE(f.open(path).ok());
    ASSERT_TRUE(f.reserve_head(6).ok());
    ASSERT_TRUE(f.write("new", 3).ok());
    const lowbit::status s = f.commit("head", 4);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(std::strstr(s.message(), "a head of 4 bytes for the 6 bytes reserved"), nullptr) << s.message();
  }
  EXPECT_EQ(lowbit_test::read_bytes(path), "headerdata");
  EXPECT_EQ(lowbit_test::list_dir(d.path()), (std::set<std::string>{"f.bin"}));
}

TEST(SafetensorsWriter, NothingIsLeftBehindOnError) {
  scratch_dir d;
  const std::string path = d / "m.safetensors";
  lowbit_test::write_bytes(path, "previous contents");
  {
    io::safetensors_writer w;  // too many bytes
    ASSERT_TRUE(w.open(path, {{"a", io::st_dtype::F32, {1}}}).ok());
    EXPECT_FALSE(w.write("12345", 5).ok());
    EXPECT_FALSE(w.commit().ok());
  }
  {
    io::safetensors_writer w;  // too few bytes
    ASSERT_TRUE(w.open(path, {{"a", io::st_dtype::F32, {2}}}).ok());
    ASSERT_TRUE(w.write("1234", 4).ok());
    const lowbit::status s = w.commit();
    ASSERT_FALSE(s.ok());
    EXPECT_NE(std::strstr(s.message(), "\"a\" is incomplete"), nullptr) << s.message();
  }
  {
    io::safetensors_writer w;  // abandoned
    ASSERT_TRUE(w.open(path, {{"a", io::st_dtype::U8, {1}}}).ok());
    EXPECT_TRUE(lowbit_test::exists(w.temp_path()));
    ASSERT_TRUE(w.write("1", 1).ok());
  }
  {
    io::safetensors_writer w;  // bad entries: nothing is even created
    EXPECT_FALSE(w.open(path, {{"a", io::st_dtype::U8, {1}}, {"a", io::st_dtype::U8, {1}}}).ok());
    EXPECT_FALSE(w.open(path, {{"__metadata__", io::st_dtype::U8, {1}}}).ok());
    EXPECT_FALSE(w.open(path, {{"a", io::st_dtype::U8, {-1}}}).ok());
  }
  EXPECT_EQ(lowbit_test::read_bytes(path), "previous contents");
  EXPECT_EQ(lowbit_test::list_dir(d.path()), (std::set<std::string>{"m.safetensors"}));
  io::safetensors_writer w;
  const lowbit::status s = w.open(d / "no/such/folder/m.safetensors", {});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), lowbit::errc::io);
}

TEST(Checkpoint, ReadsShardsThroughTheIndex) {
  scratch_dir d;
  auto shard = [&](const std::string& file, const std::vector<std::string>& names) {
    std::vector<io::tensor_entry> e;
    for (const auto& n : names) e.push_back({n, io::st_dtype::U8, {2}});
    io::safetensors_writer w;
    ASSERT_TRUE(w.open(d / file, e).ok());
    for (const auto& n : names) ASSERT_TRUE(w.write(n.data(), 2).ok());
    ASSERT_TRUE(w.commit().ok());
  };
  shard("model-00001-of-00002.safetensors", {"aa", "bb"});
  shard("model-00002-of-00002.safetensors", {"cc"});
  std::map<std::string, std::string> map = {{"aa", "model-00001-of-00002.safetensors"}, {"bb", "model-00001-of-00002.safetensors"},
                                            {"cc", "model-00002-of-00002.safetensors"}};
  ASSERT_TRUE(io::write_index(d.path(), 6, map).ok());
  io::checkpoint c;
  ASSERT_TRUE(io::checkpoint::open(d.path(), c).ok());
  EXPECT_EQ(c.file_count(), 2u);
  EXPECT_EQ(c.names(), (std::vector<std::string>{"aa", "bb", "cc"}));
  const auto l = c.find("cc");
  ASSERT_NE(l.tensor, nullptr);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(l.file->data(*l.tensor)), 2), "cc");

  auto rejected = [&](const std::map<std::string, std::string>& m, const char* part) {
    ASSERT_TRUE(io::write_index(d.path(), 6, m).ok());
    io::checkpoint bad;
    const lowbit::status s = io::checkpoint::open(d.path(), bad);
    ASSERT_FALSE(s.ok()) << part;
    EXPECT_NE(std::strstr(s.message(), part), nullptr) << s.message();
    EXPECT_NE(std::strstr(s.message(), io::index_file_name), nullptr) << s.message();
  };
  auto m2 = map;
  m2["dd"] = "model-00002-of-00002.safetensors";
  rejected(m2, "does not hold it");
  auto m3 = map;
  m3.erase("bb");
  rejected(m3, "is not listed");
  auto m4 = map;
  m4["cc"] = "../model-00002-of-00002.safetensors";
  rejected(m4, "not a file name");
  lowbit_test::write_bytes(d / io::index_file_name, "{\"weight_map\": {\"aa\": ");
  io::checkpoint bad;
  EXPECT_FALSE(io::checkpoint::open(d.path(), bad).ok());
}

TEST(TransformersConfig, WritesBitsAndBytesConfigKeysAndReadsThemBack) {
  scratch_dir d;
  io::bnb_quantization_config c;
  c.has_skip_modules = true;
  c.llm_int8_skip_modules = {"lm_head"};
  ASSERT_TRUE(io::write_config(d / "config.json", R"({"model_type": "llama", "hidden_size": 64})", c).ok());
  nlohmann::json j = nlohmann::json::parse(lowbit_test::read_bytes(d / "config.json"));
  EXPECT_EQ(j["model_type"], "llama");
  EXPECT_EQ(j["hidden_size"], 64);
  std::vector<std::string> keys;
  for (auto it = j["quantization_config"].begin(); it != j["quantization_config"].end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"_load_in_4bit", "_load_in_8bit", "bnb_4bit_compute_dtype", "bnb_4bit_quant_storage", "bnb_4bit_quant_type",
                                            "bnb_4bit_use_double_quant", "llm_int8_enable_fp32_cpu_offload", "llm_int8_has_fp16_weight",
                                            "llm_int8_skip_modules", "llm_int8_threshold", "load_in_4bit", "load_in_8bit", "quant_method"}));
  io::bnb_quantization_config r;
  ASSERT_TRUE(io::read_quantization_config(d / "config.json", r).ok());
  EXPECT_TRUE(r.load_in_4bit);
  EXPECT_FALSE(r.load_in_8bit);
  EXPECT_EQ(r.bnb_4bit_quant_type, "nf4");
  EXPECT_TRUE(r.bnb_4bit_use_double_quant);
  EXPECT_EQ(r.bnb_4bit_compute_dtype, "bfloat16");
  EXPECT_EQ(r.llm_int8_threshold, 6.0);
  EXPECT_EQ(r.llm_int8_skip_modules, (std::vector<std::string>{"lm_head"}));

  auto rejected = [&](const char* qc, const char* part) {
    io::bnb_quantization_config x;
    const lowbit::status s = io::from_json(nlohmann::json::parse(qc), "cfg", x);
    ASSERT_FALSE(s.ok()) << qc;
    EXPECT_NE(std::strstr(s.message(), part), nullptr) << s.message();
  };
  rejected(R"({"quant_method": "gptq", "load_in_4bit": true})", "quant_method");
  rejected(R"({"quant_method": "bitsandbytes", "load_in_4bit": true, "load_in_8bit": true})", "exactly one");
  rejected(R"({"quant_method": "bitsandbytes"})", "exactly one");
  rejected(R"({"quant_method": "bitsandbytes", "load_in_4bit": true, "bnb_4bit_quant_type": "int4"})", "bnb_4bit_quant_type");
  rejected(R"({"quant_method": "bitsandbytes", "load_in_4bit": "yes"})", "load_in_4bit");
  lowbit_test::write_bytes(d / "broken.json", "{\"quantization_config\": ");
  EXPECT_FALSE(io::read_quantization_config(d / "broken.json", r).ok());
}

TEST(PythonFloatRepr, MatchesPythonsRepr) {
  // Values and the text Python 3 prints for repr(x) (what json.dumps writes).
  const std::pair<double, const char*> cases[] = {
      {0.0, "0.0"},         {-0.0, "-0.0"},       {6.0, "6.0"},       {0.1, "0.1"},
      {1.0 / 3.0, "0.3333333333333333"},          {1e-5, "1e-05"},    {2.5e-05, "2.5e-05"},
      {0.0001, "0.0001"},   {1e16, "1e+16"},      {1e22, "1e+22"},    {123456789012345.0, "123456789012345.0"},
      {static_cast<double>(0.1f), "0.10000000149011612"},             {-1.5e-7, "-1.5e-07"},
      {1234.5, "1234.5"},   {5e-324, "5e-324"},   {1.7976931348623157e308, "1.7976931348623157e+308"},
  };
  for (const auto& c : cases) EXPECT_EQ(io::python_float_repr(c.first), c.second);
}

// Issue 18 item 2: the writer built its header key by key in an ordered JSON object, which looks
// each key up among those before it (80k tensors: 34 s). It writes the text directly now; this is
// the independent check that the text is the one nlohmann's dump() gives for those entries.
TEST(SafetensorsWriter, HeaderTextIsTheJsonDumpOfTheEntries) {
  scratch_dir d;
  const std::vector<io::tensor_entry> entries = {{"b", io::st_dtype::F32, {2, 3}},
                                                 {"a \"quoted\" \\ name", io::st_dtype::BF16, {1}},
                                                 {"ctrl\x01\x1f\t\n", io::st_dtype::U8, {0}},
                                                 {"\xc3\xbcnicode \xe2\x82\xac", io::st_dtype::I64, {}},
                                                 {"z", io::st_dtype::F16, {2, 0, 5}}};
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"k\"ey", "v\\al\x02"}};
  io::safetensors_writer w;
  ASSERT_TRUE(w.open(d / "h.safetensors", entries, meta).ok());
  const std::vector<std::uint8_t> bytes(24 + 2 + 8, 7);
  ASSERT_TRUE(w.write(bytes.data(), bytes.size()).ok());
  ASSERT_TRUE(w.commit().ok());
  const std::string file = lowbit_test::read_bytes(d / "h.safetensors");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file[static_cast<std::size_t>(i)]);
  std::string header = file.substr(8, static_cast<std::size_t>(n));
  header.erase(header.find_last_not_of(' ') + 1);
  nlohmann::ordered_json want = nlohmann::ordered_json::object();
  want["__metadata__"] = nlohmann::ordered_json::object();
  for (const auto& kv : meta) want["__metadata__"][kv.first] = kv.second;
  std::uint64_t offset = 0;
  for (const auto& e : entries) {
    want[e.name] = {{"dtype", io::info(e.dtype).name}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.nbytes()}}};
    offset += e.nbytes();
  }
  EXPECT_EQ(header, want.dump());
}

// The index, written directly too, is json.dump(indent=2) of its object.
TEST(SafetensorsWriter, IndexTextIsTheJsonDumpOfTheMap) {
  scratch_dir d;
  for (const std::map<std::string, std::string>& map :
       {std::map<std::string, std::string>{}, std::map<std::string, std::string>{{"a.weight", "model-00001-of-00002.safetensors"}, {"b \"q\"", "model-00002-of-00002.safetensors"}}}) {
    ASSERT_TRUE(io::write_index(d.path(), 1234, map).ok());
    nlohmann::ordered_json want;
    want["metadata"] = {{"total_size", 1234}};
    want["weight_map"] = nlohmann::ordered_json::object();
    for (const auto& kv : map) want["weight_map"][kv.first] = kv.second;
    EXPECT_EQ(lowbit_test::read_bytes(d / io::index_file_name), want.dump(2) + "\n");
  }
}
