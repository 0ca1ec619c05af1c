// SPDX-License-Identifier: Apache-2.0
// lowbit: quantize, inspect and dequantize safetensors checkpoints in bitsandbytes' layout.
//
//   lowbit quantize IN OUT [--format nf4|fp4|int8] [--block-size N] [--double-quant|--no-double-quant]
//                          [--skip PATTERN]... [--compute-dtype bf16|f16|f32] [--threads N] [--quiet] [--no-report]
//   lowbit inspect FILE|FOLDER
//   lowbit dequantize IN OUT [--threads N] [--quiet]
//   lowbit --version | --help
//
// IN is a .safetensors file or a folder (model.safetensors, or shards listed in
// model.safetensors.index.json). OUT is a new folder (or an existing empty one); it receives
// model.safetensors and config.json (IN's config.json, when there is one, with transformers'
// quantization_config set, or removed by dequantize). The folder appears complete or not at all:
// everything is written into a temporary folder beside OUT that is renamed at the end and deleted
// on any error or on SIGINT/SIGTERM. Input tensors are read through a memory mapping. quantize
// plans every output tensor's name, dtype and shape first, without reading the input (only a
// double-quantized weight's quant_state JSON has a length known once it is quantized, as it holds
// the mean of the block absmax values: the plan gives it its largest length), reserves the
// header's room, then quantizes tensor after tensor while another thread writes the previous one
// (at most two quantized tensors are in memory at a time), and writes the header last.
//
// quantize replaces, as transformers' BitsAndBytesConfig does, every 2-D F32/F16/BF16 tensor whose
// name ends in "weight" unless a skip pattern is a substring of its name; the default patterns are
// "lm_head" and "embed" (nn.Embedding weights stay dense in transformers). Defaults: nf4, block 64,
// double quantization, compute dtype bfloat16. int8 is LLM.int8's row-wise int8 (weights rounded to
// float16 first, as bitsandbytes does). It prints one line per quantized tensor: stored bits per
// value (every byte of the tensor's entries in the file: codes, scales, nested scales, code
// tables, quant_state JSON), max and mean absolute error and SQNR (10 log10(sum x^2 /
// sum (x - x')^2), x' the float32 dequantization; host::measure_error's sums, float32 within
// spans of 2048 elements and double across them, within 1e-5 of the exact values and independent
// of --threads). A tensor's errors are measured while another thread writes it; --no-report skips
// them (they cost one more read of the input and a dequantization of every weight). inspect
// prints the same bits per value. --quiet: no progress bar.
//
// A config.json whose quantization_config names a method lowbit does not read (anything but
// bitsandbytes, e.g. "fp8") is refused by every command with exit 2 (inspect lists the tensors first).
// dequantize writes each 4-bit weight in the dtype its quant_state records, and LLM.int8 weights
// (whose layout records none) in config.json's torch_dtype, or else in float32 (what
// bitsandbytes' int8_vectorwise_dequant returns).
//
// Exit codes: 0 success; 1 bad command line; 2 the input cannot be read or is invalid; 3 the output
// cannot be written (or OUT exists and is not an empty folder); 4 a tensor cannot be quantized
// (e.g. NaN or Inf in it); 130 interrupted by SIGINT/SIGTERM (nothing left behind).
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include <dirent.h>
#if defined(__GLIBC__)
#  include <malloc.h>
#endif
#include <sys/stat.h>
#include <unistd.h>

namespace {

namespace io = lowbit::io;

enum exit_code : int { exit_ok = 0, exit_usage = 1, exit_input = 2, exit_output = 3, exit_quantize = 4, exit_interrupted = 130 };

// ---- cleanup on signals: the temporary folder and the files in it -------------------------------
// SIGINT and SIGTERM are blocked in every thread (the engine's worker threads inherit the mask)
// and taken by one thread with sigwait, which deletes what is registered here and exits 130. The
// main thread holds `g_cleanup_mutex` while it creates a file and registers it, and while it
// renames the finished folder into place, so a signal never lands between the two.
std::mutex g_cleanup_mutex;
std::vector<std::string> g_cleanup_files;  // unlinked, then g_cleanup_dir removed
std::string g_cleanup_dir;
bool g_output_complete = false;

void set_cleanup(const std::string& path) { g_cleanup_files.push_back(path); }  // with the mutex held

void remove_temporary() {  // with the mutex held
  for (const auto& p : g_cleanup_files) ::unlink(p.c_str());
  if (!g_cleanup_dir.empty()) ::rmdir(g_cleanup_dir.c_str());
  g_cleanup_files.clear();
  g_cleanup_dir.clear();
}

void start_signal_thread() {
  static sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      std::lock_guard<std::mutex> lock(g_cleanup_mutex);
      if (g_output_complete) continue;  // too late to undo: the run finishes normally
      remove_temporary();
      std::fputs("\nlowbit: interrupted; no output written\n", stderr);
      std::fflush(stdout);
      ::_exit(exit_interrupted);
    }
  }).detach();
}

// ---- small helpers --------------------------------------------------------------------------------
int fail(int code, const lowbit::status& s) {
  std::fprintf(stderr, "lowbit: %s\n", s.message());
  return code;
}

std::string shape_string(const std::vector<std::int64_t>& s) {
  std::string r = "[";
  for (std::size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

bool ends_with(const std::string& s, const char* suffix) {
  const std::size_t n = std::strlen(suffix);
  return s.size() >= n && s.compare(s.size() - n, n, suffix) == 0;
}

std::string human_bytes(double b) {
  char buf[32];
  const char* u[] = {"B", "KB", "MB", "GB", "TB"};
  int i = 0;
  while (b >= 1000.0 && i < 4) b /= 1000.0, ++i;
  std::snprintf(buf, sizeof buf, i == 0 ? "%.0f %s" : "%.1f %s", b, u[i]);
  return buf;
}

// Stored bits per value: every byte the file spends on a tensor (codes, scales, nested scales,
// code tables, quant_state JSON) over its element count.
double bits_per_value(std::uint64_t bytes, std::int64_t numel) { return numel > 0 ? static_cast<double>(bytes) * 8.0 / static_cast<double>(numel) : 0.0; }

// A progress bar on stderr, drawn only when stderr is a terminal.
class progress {
 public:
  progress(std::uint64_t total, bool enabled) : total_(total), on_(enabled && ::isatty(2)), start_(clock::now()) {}
  void update(std::uint64_t done, const std::string& name) {
    if (!on_) return;
    const double f = total_ ? static_cast<double>(done) / static_cast<double>(total_) : 1.0;
    const int width = 30, fill = static_cast<int>(f * width);
    const double secs = std::chrono::duration<double>(clock::now() - start_).count();
    std::string bar(static_cast<std::size_t>(fill), '=');
    bar.resize(width, ' ');
    std::fprintf(stderr, "\r[%s] %3.0f%% %9s/s  %-40.40s", bar.c_str(), f * 100.0, human_bytes(secs > 0 ? static_cast<double>(done) / secs : 0).c_str(),
                 name.c_str());
    std::fflush(stderr);
  }
  void finish() {
    if (on_) std::fprintf(stderr, "\r%*s\r", 100, "");
  }

 private:
  using clock = std::chrono::steady_clock;
  std::uint64_t total_;
  bool on_;
  clock::time_point start_;
};

// The output folder: a temporary folder beside OUT, renamed onto OUT by commit().
class output_folder {
 public:
  ~output_folder() {
    std::lock_guard<std::mutex> lock(g_cleanup_mutex);
    if (!committed_ && !tmp_.empty()) remove_temporary();
  }
  lowbit::status open(const std::string& out) {
    out_ = out;
    while (out_.size() > 1 && out_.back() == '/') out_.pop_back();
    if (io::path_exists(out_)) {
      if (!io::is_directory(out_)) return lowbit::status::error(lowbit::errc::io, "%s: exists and is not a folder", out_.c_str());
      DIR* d = ::opendir(out_.c_str());
      if (d == nullptr) return lowbit::status::error(lowbit::errc::io, "%s: cannot open: %s", out_.c_str(), std::strerror(errno));
      int entries = 0;
      while (dirent* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++entries;
      ::closedir(d);
      if (entries > 0) return lowbit::status::error(lowbit::errc::io, "%s: folder exists and is not empty; refusing to overwrite", out_.c_str());
    }
    std::lock_guard<std::mutex> lock(g_cleanup_mutex);  // the folder exists only once it is registered
    std::string tmpl = out_ + ".lowbit-tmp-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr)
      return lowbit::status::error(lowbit::errc::io, "%s: cannot create a temporary folder beside it: %s", out_.c_str(), std::strerror(errno));
    tmp_ = buf.data();
    g_cleanup_dir = tmp_;
    return {};
  }
  // Path of `name` inside the temporary folder, registered for cleanup (call with the mutex held).
  std::string file(const char* name) {
    const std::string p = tmp_ + "/" + name;
    set_cleanup(p);
    return p;
  }
  lowbit::status commit() {
    if (io::is_directory(out_) && ::rmdir(out_.c_str()) != 0)
      return lowbit::status::error(lowbit::errc::io, "%s: cannot replace the empty folder: %s", out_.c_str(), std::strerror(errno));
    if (::rename(tmp_.c_str(), out_.c_str()) != 0)
      return lowbit::status::error(lowbit::errc::io, "%s: cannot rename %s onto it: %s", out_.c_str(), tmp_.c_str(), std::strerror(errno));
    committed_ = true;
    g_output_complete = true;
    g_cleanup_files.clear();
    g_cleanup_dir.clear();
    return io::detail::sync_dir(io::detail::parent_dir(out_));
  }

 private:
  std::string out_, tmp_;
  bool committed_ = false;
};

// One tensor of dequantize's output: passed through from the input, or dequantized.
struct out_tensor {
  std::vector<io::tensor_entry> entries;
  const std::uint8_t* raw = nullptr;  // pass-through bytes (in the input mapping)
  std::size_t raw_bytes = 0;
  std::vector<std::uint8_t> dense;    // dequantized bytes
};

// Writes config.json into `folder`: `config_text` with quantization_config set to `qc`, or
// removed when `qc` is null. Whole, with signals held (it is small).
int write_config_json(output_folder& folder, const std::string& config_text, const io::bnb_quantization_config* qc) {
  std::lock_guard<std::mutex> lock(g_cleanup_mutex);
  const std::string cfg = folder.file("config.json");
  if (qc != nullptr) {
    if (auto s = io::write_config(cfg, config_text, *qc); !s) return fail(exit_output, s);
  } else {
    nlohmann::ordered_json j = nlohmann::ordered_json::object();
    if (!config_text.empty()) j = nlohmann::ordered_json::parse(config_text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) j = nlohmann::ordered_json::object();
    j.erase("quantization_config");
    if (auto s = io::write_file_atomic(cfg, j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n"); !s) return fail(exit_output, s);
  }
  return exit_ok;
}

// Opens model.safetensors in `folder` for `entries` (room for its header is reserved now; the
// header is written by commit) and registers its temporary file for cleanup.
int open_model(output_folder& folder, io::safetensors_writer& w, std::vector<io::tensor_entry> entries) {
  std::lock_guard<std::mutex> lock(g_cleanup_mutex);
  const std::string model = folder.file("model.safetensors");
  if (auto s = w.open(model, std::move(entries), {{"format", "pt"}}); !s) return fail(exit_output, s);
  set_cleanup(w.temp_path());
  return exit_ok;
}

// Writes the tensors and config of a finished conversion into `folder` (commit_output then
// puts the folder in place).
int write_output(output_folder& folder, std::vector<out_tensor>& tensors, const std::string& config_text, const io::bnb_quantization_config* qc,
                 bool quiet) {
  std::vector<io::tensor_entry> entries;
  std::uint64_t total = 0;
  for (auto& t : tensors)
    for (auto& e : t.entries) entries.push_back(e), total += e.nbytes();
  if (int r = write_config_json(folder, config_text, qc)) return r;
  io::safetensors_writer w;
  if (int r = open_model(folder, w, std::move(entries))) return r;
  progress bar(total, !quiet);
  std::uint64_t done = 0;
  for (auto& t : tensors) {
    lowbit::status s;
    if (!t.dense.empty()) s = w.write(t.dense.data(), t.dense.size());
    else s = w.write(t.raw, t.raw_bytes);
    if (!s) return fail(exit_output, s);
    for (auto& e : t.entries) done += e.nbytes();
    bar.update(done, "writing " + t.entries.front().name);
  }
  bar.finish();
  if (auto s = w.commit(); !s) return fail(exit_output, s);
  return exit_ok;
}

// Renames the finished temporary folder onto OUT (after write_output).
int commit_output(output_folder& folder) {
  std::lock_guard<std::mutex> lock(g_cleanup_mutex);
  if (auto s = folder.commit(); !s) return fail(exit_output, s);
  return exit_ok;
}

// config.json beside the input (a folder's own, or the one next to a single file), or "".
int read_base_config(const io::checkpoint& c, std::string& text) {
  const std::string p = c.folder() + "/config.json";
  text.clear();
  if (!io::path_exists(p)) return exit_ok;
  if (auto s = io::read_text_file(p, text); !s) return fail(exit_input, s);
  nlohmann::json j;
  if (auto s = io::parse_json_text(text, p, j); !s) return fail(exit_input, s);
  if (auto s = io::check_readable_quantization(j, p); !s) return fail(exit_input, s);
  return exit_ok;
}

bool parse_int(const char* s, long long lo, long long hi, long long& out) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) return false;
  out = v;
  return true;
}

void usage(FILE* f) {
  std::fputs(
      "usage: lowbit quantize IN OUT [--format nf4|fp4|int8] [--block-size N] [--double-quant|--no-double-quant]\n"
      "                              [--skip PATTERN]... [--compute-dtype bf16|f16|f32] [--threads N] [--quiet] [--no-report]\n"
      "       lowbit inspect FILE|FOLDER\n"
      "       lowbit dequantize IN OUT [--threads N] [--quiet]\n"
      "       lowbit --version | --help\n"
      "exit codes: 0 ok, 1 usage, 2 bad input, 3 cannot write output, 4 cannot quantize, 130 interrupted\n",
      f);
}

// The options both conversions take and the two paths IN OUT.
struct conversion_args {
  std::vector<std::string> pos;
  long long threads = 0;
  bool quiet = false;
};

// Parses argv: --threads, --quiet and the positional words here, everything else through
// `own(a, i)` (1 handled, 0 not an option of the command, -1 bad value, already reported).
// Returns exit_ok or exit_usage.
template <class Own>
int parse_args(int argc, char** argv, conversion_args& args, Own own) {
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    const int r = own(a, i);
    if (r < 0) return exit_usage;
    if (r > 0) continue;
    if (a == "--threads") {
      if (i + 1 >= argc || !parse_int(argv[++i], 0, 1024, args.threads))
        return std::fprintf(stderr, "lowbit: --threads must be an integer in [0, 1024]\n"), exit_usage;
    } else if (a == "--quiet") {
      args.quiet = true;
    } else if (a.size() > 1 && a[0] == '-') {
      return std::fprintf(stderr, "lowbit: unknown option %s\n", a.c_str()), usage(stderr), exit_usage;
    } else {
      args.pos.push_back(a);
    }
  }
  if (args.pos.size() != 2) return usage(stderr), exit_usage;
  return exit_ok;
}

// Opens IN (and its config.json) and the temporary output folder for OUT.
int open_conversion(const conversion_args& args, io::checkpoint& in, std::string& config_text, output_folder& folder) {
  if (auto s = io::checkpoint::open(args.pos[0], in); !s) return fail(exit_input, s);
  if (int r = read_base_config(in, config_text)) return r;
  if (auto s = folder.open(args.pos[1]); !s) return fail(exit_output, s);
  return exit_ok;
}

// ---- quantize ------------------------------------------------------------------------------------
// One input tensor's part of the output, fixed before anything is quantized.
struct planned {
  const io::tensor_info* info = nullptr;
  const io::safetensors_file* file = nullptr;
  const std::uint8_t* src = nullptr;  // its bytes in the input mapping
  bool quantize = false;
  lowbit::dtype dt{};                 // input dtype (quantized tensors)
  io::bnb_layout layout;              // quantized tensors (nested_offset unknown)
  std::vector<io::tensor_entry> entries;  // at their largest (io::bnb_entries_largest)
  std::size_t first = 0;              // index of entries[0] in the file
};

// Quantizes planned tensor `t` into `q`, its tensors in `got`, and checks that they are the
// planned ones (an internal error otherwise: the file was laid out for those); that each fits
// the room planned for it is the writer's check (safetensors_writer::reshape).
int quantize_planned(const planned& t, const lowbit::quantize_params& p, lowbit::quant_tensor& q, std::vector<io::tensor_entry>& got) {
  const io::tensor_info& ti = *t.info;
  const void* src = t.src;
  std::vector<lowbit::f16> half;
  lowbit::dtype qdt = t.dt;
  if (p.fmt == lowbit::format::int8_absmax && t.dt != lowbit::dtype::f16) {  // bitsandbytes quantizes float16 weights
    half.resize(static_cast<std::size_t>(ti.numel()));
    for (std::size_t i = 0; i < half.size(); ++i) {
      float v;
      if (t.dt == lowbit::dtype::f32) std::memcpy(&v, t.src + 4 * i, 4);
      else {
        std::uint16_t h;
        std::memcpy(&h, t.src + 2 * i, 2);
        v = lowbit::bf16_bits_to_float(h);
      }
      half[i] = lowbit::from_float<lowbit::f16>(v);
    }
    src = half.data();
    qdt = lowbit::dtype::f16;
  }
  if (auto s = lowbit::quantize(src, qdt, ti.shape, p, q); !s) {
    std::fprintf(stderr, "lowbit: %s: tensor \"%s\": %s\n", t.file->path().c_str(), ti.name.c_str(), s.message());
    return exit_quantize;
  }
  if (auto s = io::bnb_entries(ti.name, q, got); !s) return fail(exit_quantize, s);
  bool same = got.size() == t.entries.size();
  for (std::size_t i = 0; same && i < got.size(); ++i) same = got[i].name == t.entries[i].name && got[i].dtype == t.entries[i].dtype;
  if (!same) {
    std::fprintf(stderr, "lowbit: internal error: tensor \"%s\": quantized into other tensors than planned; no output written\n", ti.name.c_str());
    return exit_quantize;
  }
  return exit_ok;
}

// Plans input tensor `name`: passed through, or quantized with `p` (then its layout and entries,
// at their largest), from the header alone. Errors as quantizing would report them.
int plan_tensor(const io::checkpoint& in, const std::string& name, const std::vector<std::string>& skip, const lowbit::quantize_params& p, planned& t) {
  const auto loc = in.find(name);
  const io::tensor_info& ti = *loc.tensor;
  t.info = &ti;
  t.file = loc.file;
  t.src = loc.file->data(ti);
  bool skipped = ti.shape.size() != 2 || !io::to_dtype(ti.dtype, t.dt) || !ends_with(name, "weight");
  for (const auto& pat : skip) skipped = skipped || name.find(pat) != std::string::npos;
  if (skipped) {
    t.entries.push_back({name, ti.dtype, ti.shape});
    return exit_ok;
  }
  t.quantize = true;
  io::bnb_layout& l = t.layout;
  l.fmt = p.fmt;
  l.source = p.fmt == lowbit::format::int8_absmax ? lowbit::dtype::f16 : t.dt;
  l.shape = ti.shape;
  l.double_quant = p.double_quant;
  if (auto s = lowbit::resolve_block_size(p.gran, ti.shape, l.block_size); !s) return fail(exit_quantize, s);
  if (auto s = io::bnb_entries_largest(name, l, t.entries); !s) return fail(exit_quantize, s);
  return exit_ok;
}

// A one-item hand-off from the quantizing thread to the writer thread. The item stays in the slot
// while the writer works on it, so the producer holds at most one more.
template <class T>
class handoff {
 public:
  // Waits for the slot to be free and puts `v` there; false if the consumer has stopped.
  bool put(T v) {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return !full_ || stopped_; });
    if (stopped_) return false;
    item_ = std::move(v);
    full_ = true;
    cv_.notify_all();
    return true;
  }
  // Waits for an item (the consumer's to use until done()); null once closed and empty.
  T* take() {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return full_ || closed_; });
    return full_ ? &item_ : nullptr;
  }
  void done() { set([&] { item_ = T{}, full_ = false; }); }
  void stop() { set([&] { stopped_ = true; }); }   // the consumer gives up
  void close() { set([&] { closed_ = true; }); }   // the producer has nothing more

 private:
  template <class F>
  void set(F f) {
    std::lock_guard<std::mutex> l(m_);
    f();
    cv_.notify_all();
  }
  std::mutex m_;
  std::condition_variable cv_;
  T item_{};
  bool full_ = false, stopped_ = false, closed_ = false;
};

// A tensor on its way to the file: its index in the plan and, when quantized, its data (shared
// with the quantizing thread, which measures its error meanwhile) and its tensors' real shapes.
struct stage {
  std::size_t tensor = 0;
  std::shared_ptr<const lowbit::quant_tensor> q;
  std::vector<io::tensor_entry> entries;
};

// Gives the planned tensors of quantized stage `st` their real shapes (each at most the planned
// one), then writes its data.
lowbit::status write_quantized(io::safetensors_writer& w, const planned& t, const stage& st) {
  for (std::size_t k = 0; k < st.entries.size(); ++k) LOWBIT_TRY(w.reshape(t.first + k, st.entries[k].shape));
  return io::write_bnb(w, *st.q);
}

// The writer thread: writes each stage's tensor, in order.
int write_stages(handoff<stage>& slot, io::safetensors_writer& w, const std::vector<planned>& plan, progress& bar, std::mutex& print_mutex) {
  while (stage* st = slot.take()) {
    const planned& t = plan[st->tensor];
    const lowbit::status s = t.quantize ? write_quantized(w, t, *st) : w.write(t.src, static_cast<std::size_t>(t.info->nbytes()));
    if (!s) {
      slot.stop();
      std::lock_guard<std::mutex> lock(print_mutex);
      bar.finish();
      return fail(exit_output, s);
    }
    slot.done();
  }
  return exit_ok;
}

int cmd_quantize(int argc, char** argv) {
  conversion_args args;
  std::string fmt = "nf4", compute = "bfloat16";
  long long block = 64;
  bool dq = true, report = true;
  std::vector<std::string> skip = {"lm_head", "embed"};
  const int parsed = parse_args(argc, argv, args, [&](const std::string& a, int& i) -> int {
    auto value = [&](const char* what) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "lowbit: %s needs a value\n", what);
        return nullptr;
      }
      return argv[++i];
    };
    if (a == "--format") {
      const char* v = value("--format");
      if (!v) return -1;
      fmt = v;
      if (fmt != "nf4" && fmt != "fp4" && fmt != "int8") return std::fprintf(stderr, "lowbit: --format must be nf4, fp4 or int8, not \"%s\"\n", v), -1;
    } else if (a == "--block-size") {
      const char* v = value("--block-size");
      if (!v || !parse_int(v, 32, 4096, block) || (block & (block - 1)) != 0)
        return std::fprintf(stderr, "lowbit: --block-size must be a power of two in [32, 4096]\n"), -1;
    } else if (a == "--double-quant" || a == "--no-double-quant") {
      dq = a == "--double-quant";
    } else if (a == "--skip") {
      const char* v = value("--skip");
      if (!v || !*v) return std::fprintf(stderr, "lowbit: --skip needs a non-empty pattern\n"), -1;
      skip.push_back(v);
    } else if (a == "--compute-dtype") {
      const char* v = value("--compute-dtype");
      const std::string c = v ? v : "";
      if (c == "bf16" || c == "bfloat16") compute = "bfloat16";
      else if (c == "f16" || c == "float16") compute = "float16";
      else if (c == "f32" || c == "float32") compute = "float32";
      else return std::fprintf(stderr, "lowbit: --compute-dtype must be bf16, f16 or f32\n"), -1;
    } else if (a == "--no-report") {
      report = false;
    } else {
      return 0;
    }
    return 1;
  });
  if (parsed != exit_ok) return parsed;
  const long long threads = args.threads;
  const bool quiet = args.quiet;
  const std::vector<std::string>& pos = args.pos;
  io::checkpoint in;
  std::string config_text;
  output_folder folder;
  if (int r = open_conversion(args, in, config_text, folder)) return r;

  lowbit::quantize_params p;
  p.fmt = fmt == "nf4" ? lowbit::format::nf4 : fmt == "fp4" ? lowbit::format::bnb_fp4 : lowbit::format::int8_absmax;
  p.gran = fmt == "int8" ? lowbit::granularity::per_row() : lowbit::granularity::per_block(block);
  p.double_quant = fmt != "int8" && dq;
  p.options.threads = static_cast<int>(threads);

  io::bnb_quantization_config qc;
  qc.load_in_4bit = fmt != "int8";
  qc.load_in_8bit = fmt == "int8";
  qc.bnb_4bit_quant_type = fmt == "fp4" ? "fp4" : "nf4";
  qc.bnb_4bit_use_double_quant = p.double_quant;
  qc.bnb_4bit_compute_dtype = compute;
  qc.has_skip_modules = true;
  qc.llm_int8_skip_modules = skip;

  // 1. The plan: every output tensor's name, dtype and shape (at its largest), from the input's
  // header alone (see plan_tensor), so that each tensor is written as soon as it is quantized.
  std::vector<planned> plan;
  plan.reserve(in.names().size());
  std::vector<io::tensor_entry> entries;
  std::uint64_t work = 0, in_bytes = 0, out_bytes = 0;
  for (const auto& name : in.names()) {
    planned t;
    if (int r = plan_tensor(in, name, skip, p, t)) return r;
    in_bytes += t.info->nbytes();
    t.first = entries.size();
    entries.insert(entries.end(), t.entries.begin(), t.entries.end());
    plan.push_back(std::move(t));
  }
  work = in_bytes;
  if (int r = write_config_json(folder, config_text, &qc)) return r;
  io::safetensors_writer w;
  if (int r = open_model(folder, w, std::move(entries))) return r;

  // 2. The pipeline: a writer thread writes tensor i while this thread measures its error (with
  // the report) and quantizes tensor i + 1, each on every core. At most two quantized tensors
  // exist at a time: the one being written and the one being made.
  std::mutex print_mutex;  // the progress bar on stderr, against the writer's error message
  progress bar(work, !quiet);
  const auto t0 = std::chrono::steady_clock::now();
  if (report) std::printf("%-52s %-16s %8s %10s %10s %8s\n", "tensor", "shape", "bits", "max|err|", "mean|err|", "SQNR dB");
  else std::printf("%-52s %-16s %8s\n", "tensor", "shape", "bits");
  handoff<stage> slot;
  int consumed = exit_ok;  // the writer thread's result
  std::thread writer([&] { consumed = write_stages(slot, w, plan, bar, print_mutex); });
  int quantized = 0, produced = exit_ok;
  std::uint64_t done = 0;
  for (std::size_t i = 0; i < plan.size() && produced == exit_ok; ++i) {
    const planned& t = plan[i];
    stage st;
    st.tensor = i;
    std::uint64_t stored = t.info->nbytes();  // bytes of its tensors in the file
    if (t.quantize) {
      auto q = std::make_shared<lowbit::quant_tensor>();
      if ((produced = quantize_planned(t, p, *q, st.entries)) != exit_ok) break;
      st.q = q;
      stored = 0;
      for (const auto& e : st.entries) stored += e.nbytes();
      ++quantized;
    }
    out_bytes += stored;
    const std::shared_ptr<const lowbit::quant_tensor> q = st.q;
    if (!slot.put(std::move(st))) break;  // the writer failed (its message is printed)
    if (t.quantize) {
      lowbit::host::error_stats es;
      const double bits = bits_per_value(stored, t.info->numel());
      if (report) {
        if (auto s = lowbit::measure_error(t.src, t.dt, *q, es, p.options); !s) {
          produced = fail(exit_quantize, s);
          break;
        }
      }
      std::lock_guard<std::mutex> lock(print_mutex);
      bar.finish();
      if (report)
        std::printf("%-52s %-16s %8.3f %10.3g %10.3g %8.2f\n", t.info->name.c_str(), shape_string(t.info->shape).c_str(), bits, es.max_abs, es.mean_abs(),
                    es.sqnr_db());
      else std::printf("%-52s %-16s %8.3f\n", t.info->name.c_str(), shape_string(t.info->shape).c_str(), bits);
    }
    done += t.info->nbytes();
    std::lock_guard<std::mutex> lock(print_mutex);
    bar.update(done, t.info->name);
  }
  slot.close();
  writer.join();
  bar.finish();
  if (produced != exit_ok) return produced;
  if (consumed != exit_ok) return consumed;
  if (auto s = w.commit(); !s) return fail(exit_output, s);
  if (int r = commit_output(folder)) return r;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%d of %zu tensors quantized (%s%s, block %lld); %s -> %s in %.2f s (%s/s of input); wrote %s\n", quantized, in.names().size(), fmt.c_str(),
              p.double_quant ? " + double quant" : "", fmt == "int8" ? 0LL : block, human_bytes(static_cast<double>(in_bytes)).c_str(),
              human_bytes(static_cast<double>(out_bytes)).c_str(), secs, human_bytes(secs > 0 ? static_cast<double>(in_bytes) / secs : 0).c_str(), pos[1].c_str());
  return exit_ok;
}

// ---- inspect / dequantize: find the bitsandbytes weights of a checkpoint -----------------------
// Names of the companion tensors of a quantized weight (not listed on their own).
bool is_companion(const io::checkpoint& c, const std::string& name) {
  static const char* const parts[] = {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map"};
  for (const char* s : parts)
    if (ends_with(name, s) && io::has_bnb_quant_state(c, name.substr(0, name.size() - std::strlen(s)))) return true;
  const auto qs = name.find(".quant_state.");
  if (qs != std::string::npos && io::has_bnb_quant_state(c, name.substr(0, qs))) return true;
  for (const char* s : {"SCB", "weight_format"})
    if (ends_with(name, s)) {
      const std::string w = name.substr(0, name.size() - std::strlen(s)) + "weight";
      const auto l = c.find(w);
      if (l.tensor != nullptr && l.tensor->dtype == io::st_dtype::I8) return true;
    }
  return false;
}

// Loads `name` as a quantized tensor if it is one: 1 loaded, 0 not quantized, -1 error (printed).
// An LLM.int8 weight gets source dtype `int8_dtype` (its layout records none).
int load_quantized(const io::checkpoint& c, const std::string& name, lowbit::quant_tensor& q, lowbit::dtype int8_dtype = lowbit::dtype::f32) {
  lowbit::status s;
  if (io::has_bnb_quant_state(c, name)) s = io::load_bnb_4bit(c, name, q);
  else if (c.find(name).tensor->dtype == io::st_dtype::I8 && ends_with(name, "weight") &&
           c.find(name.substr(0, name.size() - 6) + "SCB").tensor != nullptr)
    s = io::load_bnb_int8(c, name, q, int8_dtype);
  else return 0;
  if (!s) return std::fprintf(stderr, "lowbit: %s\n", s.message()), -1;
  return 1;
}

std::uint64_t companion_bytes(const io::checkpoint& c, const std::string& w) {
  std::uint64_t b = 0;
  for (const auto& n : c.names())
    if (n == w || (n.compare(0, w.size(), w) == 0 && is_companion(c, n)) ||
        (ends_with(w, "weight") && (n == w.substr(0, w.size() - 6) + "SCB" || n == w.substr(0, w.size() - 6) + "weight_format")))
      b += c.find(n).tensor->nbytes();
  return b;
}

int cmd_inspect(int argc, char** argv) {
  if (argc != 1) return usage(stderr), exit_usage;
  io::checkpoint c;
  if (auto s = io::checkpoint::open(argv[0], c); !s) return fail(exit_input, s);
  std::printf("%-52s %-14s %-18s %12s %8s\n", "tensor", "format", "shape", "bytes", "bits");
  std::uint64_t total = 0;
  for (const auto& name : c.names()) {
    if (is_companion(c, name)) continue;
    lowbit::quant_tensor q;
    const int r = load_quantized(c, name, q);
    if (r < 0) return exit_input;
    if (r == 1) {
      const std::uint64_t b = companion_bytes(c, name);
      total += b;
      std::string f = lowbit::info(q.fmt()).name;
      if (q.double_quantized()) f += "+dq";
      std::printf("%-52s %-14s %-18s %12" PRIu64 " %8.3f\n", name.c_str(), f.c_str(), shape_string(q.shape()).c_str(), b, bits_per_value(b, q.numel()));
    } else {
      const io::tensor_info& t = *c.find(name).tensor;
      total += t.nbytes();
      std::printf("%-52s %-14s %-18s %12" PRIu64 " %8d\n", name.c_str(), io::info(t.dtype).name, shape_string(t.shape).c_str(), t.nbytes(),
                  io::info(t.dtype).size * 8);
    }
  }
  std::printf("%zu file(s), %s of tensor data\n", c.file_count(), human_bytes(static_cast<double>(total)).c_str());
  std::string config_text;  // a quantization method lowbit does not read: listed above, then refused
  return read_base_config(c, config_text);
}

int cmd_dequantize(int argc, char** argv) {
  conversion_args args;
  if (int r = parse_args(argc, argv, args, [](const std::string&, int&) { return 0; })) return r;
  const long long threads = args.threads;
  io::checkpoint in;
  std::string config_text;
  output_folder folder;
  if (int r = open_conversion(args, in, config_text, folder)) return r;
  // LLM.int8 weights record no dtype: the model's (config torch_dtype), else bitsandbytes' float32.
  nlohmann::json config;
  if (!config_text.empty() && !io::parse_json_text(config_text, in.folder() + "/config.json", config)) config = nullptr;
  const lowbit::dtype int8_dtype = io::recorded_dtype(config, lowbit::dtype::f32);
  std::vector<out_tensor> tensors;
  int count = 0;
  for (const auto& name : in.names()) {
    if (is_companion(in, name)) continue;
    out_tensor t;
    lowbit::quant_tensor q;
    const int r = load_quantized(in, name, q, int8_dtype);
    if (r < 0) return exit_input;
    if (r == 1) {
      t.dense.resize(static_cast<std::size_t>(q.numel()) * static_cast<std::size_t>(lowbit::dtype_size(q.source_dtype())));
      if (auto s = lowbit::dequantize(q, t.dense.data(), q.source_dtype(), lowbit::host::options{static_cast<int>(threads), false, true}); !s)
        return fail(exit_input, s);
      t.entries.push_back({name, io::to_st_dtype(q.source_dtype()), q.shape()});
      ++count;
    } else {
      const auto loc = in.find(name);
      t.entries.push_back({name, loc.tensor->dtype, loc.tensor->shape});
      t.raw = loc.file->data(*loc.tensor);
      t.raw_bytes = loc.tensor->nbytes();
    }
    tensors.push_back(std::move(t));
  }
  int r = write_output(folder, tensors, config_text, nullptr, args.quiet);
  if (r == exit_ok) r = commit_output(folder);
  if (r == exit_ok) std::printf("%d tensors dequantized; wrote %s\n", count, args.pos[1].c_str());
  return r;
}

}  // namespace

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Every weight's quantized tensor and scratch are allocated afresh and freed once written; from
  // the heap rather than mmap (glibc's default for blocks of 32 MiB and more, the largest
  // threshold it adapts to) the next weight reuses those pages instead of faulting in new zeroed
  // ones (page faults were ~8% of a run's CPU time).
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  start_signal_thread();
  if (argc < 2) return usage(stderr), exit_usage;
  const std::string cmd = argv[1];
  if (cmd == "quantize") return cmd_quantize(argc - 2, argv + 2);
  if (cmd == "inspect") return cmd_inspect(argc - 2, argv + 2);
  if (cmd == "dequantize") return cmd_dequantize(argc - 2, argv + 2);
  if (cmd == "-h" || cmd == "--help" || cmd == "help") return usage(stdout), exit_ok;
  if (cmd == "--version") return std::printf("lowbit %s\n", LOWBIT_TOOL_VERSION), exit_ok;  // CMake's project version
  std::fprintf(stderr, "lowbit: unknown command \"%s\"\n", cmd.c_str());
  usage(stderr);
  return exit_usage;
}
