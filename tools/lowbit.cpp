// SPDX-License-Identifier: Apache-2.0
// lowbit: quantize, inspect and dequantize safetensors checkpoints in bitsandbytes' layout.
//
//   lowbit quantize IN OUT [--format nf4|fp4|int8|fp8-block|mxfp4|ct-fp8|ct-nvfp4|ct-int4|ct-int8] [--block-size N]
//                          [--double-quant|--no-double-quant]
//                          [--skip PATTERN]... [--compute-dtype bf16|f16|f32] [--threads N] [--quiet] [--no-report]
//                          [--max-shard-size SIZE]
//   lowbit inspect FILE|FOLDER
//   lowbit dequantize IN OUT [--threads N] [--quiet] [--max-shard-size SIZE]
//   lowbit convert IN OUT --to gguf-q8_0|gguf-q4_0|gguf-q4_1|gguf-mxfp4|gguf-f16|gguf-bf16|gguf-f32|
//                              bnb-nf4|bnb-fp4|bnb-int8|fp8-block|mxfp4|ct-fp8|ct-nvfp4|ct-int4|ct-int8|
//                              safetensors-f32|safetensors-f16|safetensors-bf16
//                         [--skip PATTERN]... [--threads N] [--quiet] [--no-report] [--max-shard-size SIZE]
//   lowbit --version | --help
//
// GGUF (docs/gguf.md): inspect and dequantize also take a GGUF file (recognized by its magic);
// dequantize writes its tensors dense (block types as float32, shapes in PyTorch order, names
// unchanged). convert writes OUT/model.gguf from a safetensors checkpoint (bitsandbytes weights
// dequantized first) or a GGUF file: every float tensor of 2 or more dimensions whose rows are
// whole blocks in the target type, 1-D tensors in F32, others in F16; integer tensors unchanged.
// Names are kept (not mapped to llama.cpp's), with general.architecture from config.json's
// model_type, or the input GGUF's metadata. One tensor is in memory at a time; a float16/
// bfloat16/float32 tensor is widened, quantized and measured in chunks of 16384 elements, each on
// one thread while it is in cache (the input is read once). It prints each quantized tensor's
// stored bits per value, max and mean absolute error and SQNR against its float32 input (float32
// sums within spans of 2048 elements, double across them, in a fixed order: independent of
// --threads).
//
// IN is a .safetensors file or a folder (model.safetensors, or shards listed in
// model.safetensors.index.json). OUT is a new folder (or an existing empty one); it receives
// model.safetensors (or, with --max-shard-size SIZE, e.g. 5GB or 2GiB, and more than SIZE of
// tensor data, transformers' shards model-00001-of-0000N.safetensors of at most SIZE each, a
// quantized weight and its companions always in one shard, with model.safetensors.index.json;
// default: one file whatever the size, as before) and config.json (IN's config.json, when there is one, with transformers'
// quantization_config set, or removed by dequantize). The folder appears complete or not at all:
// everything is written into a temporary folder beside OUT (OUT.lowbit-tmp-<pid>-XXXXXX, mode
// 0777 minus the umask, as mkdir gives) that is renamed at the end and deleted on any error, on
// SIGINT, SIGTERM, SIGHUP or SIGPIPE (standard output closed, e.g. `| head`), and when the input
// is truncated by another process during the run (SIGBUS). One left by a killed run (SIGKILL) is
// removed by the next run writing the same OUT once its process no longer runs. OUT is checked
// before the input is read (see output_folder): an empty path, a symbolic link (dangling or not),
// a non-empty folder or a mount point is refused with exit 3. Input files must be regular files
// (a FIFO is refused, without blocking); JSON (headers, config.json, index) may nest at most
// io::max_json_depth levels. Input tensors are read through a memory mapping. quantize
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
// prints the same bits per value. --quiet: no progress bar. dequantize streams the same way:
// the output is planned from the input's headers and quant_states, and at most two dequantized
// tensors are in memory at a time. Both are linear in the number of tensors (hashed lookups).
//
// convert --to a safetensors layout (docs/convert-checkpoints.md) reads any input convert reads
// (GGUF, dense, bitsandbytes, fine-grained FP8, gpt-oss MXFP4; quantized weights dequantized to
// float32 first) and writes: with bnb-nf4/bnb-fp4 (block 64, double quantization) or bnb-int8,
// what `quantize --format` writes; with fp8-block, transformers' fine-grained FP8 (128 x 128
// tiles); the weights quantized are those quantize picks (2-D float tensors named "*weight"
// containing no --skip pattern; defaults "lm_head", "embed"); with mxfp4, gpt-oss's layout, which
// quantizes the 3-D expert stacks only (dense as transformers' parameters [E, K, rows], stored as
// X_blocks / X_scales of [E, rows, K], docs/mxfp4-gptoss.md); with ct-fp8 (FP8 per output
// channel), ct-nvfp4, ct-int4 (groups of 128) or ct-int8 (per channel), compressed-tensors'
// layouts (docs/compressed-tensors.md: one config group targeting "Linear", the skip patterns as
// "re:.*PATTERN" ignore entries; a weight without whole groups stays dense, as compressed-tensors'
// quantizer refuses it); other float tensors stay in their dtype (a dequantized
// one in the dtype `dequantize` would write it in), the rest is copied. safetensors-f32/f16/bf16
// writes every float tensor in that dtype (rounded to nearest even from float32) and no
// quantization_config. A writer thread writes tensor i while tensor i + 1 is converted, and its
// report has the GGUF path's figures. `quantize --format` of these layouts is this path.
// A config.json whose quantization_config names a method lowbit does not read (anything but
// bitsandbytes, e.g. "gptq") is refused by every command with exit 2 (inspect lists the tensors
// first). inspect and dequantize also read transformers' fine-grained FP8 weights (an F8_E4M3
// "X" with "X_scale_inv", blocks from config.json's quant_method "fp8", else 128 x 128;
// docs/fp8-block.md): dequantize writes them in config.json's torch_dtype, else bfloat16; convert
// reads them; quantize (to the bitsandbytes formats) refuses quant_method "fp8".
// dequantize writes each 4-bit weight in the dtype its quant_state records, and LLM.int8 weights
// (whose layout records none) in config.json's torch_dtype, or else in float32 (what
// bitsandbytes' int8_vectorwise_dequant returns).
//
// Exit codes: 0 success; 1 bad command line; 2 the input cannot be read or is invalid; 3 the output
// cannot be written (or OUT is not a usable new or empty folder); 4 a tensor cannot be quantized
// (e.g. NaN or Inf in it); 130 interrupted by SIGINT, SIGTERM, SIGHUP or SIGPIPE (nothing left
// behind). An input that becomes shorter while it is read is exit 2, naming the file.
#include <lowbit/io.hpp>
#include <lowbit/lowbit.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cinttypes>
#include <cstdarg>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <unordered_map>
#include <vector>

#include <dirent.h>
#if defined(__GLIBC__)
#  include <malloc.h>
#endif
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#if LOWBIT_HAVE_AVX2_KERNELS && defined(__x86_64__)
#  define LOWBIT_TOOL_F16C 1
#  include <immintrin.h>
#endif

namespace {

namespace io = lowbit::io;

enum exit_code : int { exit_ok = 0, exit_usage = 1, exit_input = 2, exit_output = 3, exit_quantize = 4, exit_interrupted = 130 };

// ---- cleanup on signals: the temporary folder and the files in it -------------------------------
// Everything a run writes is inside one temporary folder beside OUT, and nothing else is in it,
// so cleaning up is removing that folder's files and the folder (remove_folder_flat, which uses
// only async-signal-safe system calls and no lock, so a signal handler may call it too).
//
// SIGINT, SIGTERM, SIGHUP and SIGPIPE are blocked in every thread (the engine's worker threads
// inherit the mask) and taken by one thread with sigwait, which removes the temporary folder and
// exits 130. The main thread holds `g_cleanup_mutex` while it creates the folder and while it
// renames the finished folder into place, so such a signal never lands between the two. A write
// to a closed pipe raises SIGPIPE in the writing thread only, where it stays blocked: the write
// fails with EPIPE, and report() then ends the run the same way.
//
// SIGBUS is what reading a memory-mapped input raises once another process has truncated the
// file. Its handler (in whichever thread faulted) names the file whose mapping holds the faulting
// address, removes the temporary folder and exits 2.
std::mutex g_cleanup_mutex;
char g_tmp_dir[4096];                   // the temporary folder while it exists ("" otherwise)
std::atomic<bool> g_output_complete{false};
constexpr int handled_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};

// Removes every entry of folder `dir` (files only: lowbit puts nothing else there) and the folder,
// again while another thread still adds files to it (a writer thread beginning its next file):
// until the folder is gone or holds something that cannot be removed. Async-signal-safe: raw
// getdents64, unlinkat and rmdir.
void remove_folder_flat(const char* dir) noexcept {
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    alignas(8) char buf[4096];
    bool removed = false;
    for (int round = 0; round < 1000; ++round) {  // re-read from the start until only . and .. are left
      ::lseek(fd, 0, SEEK_SET);
      const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
      if (n <= 0) break;
      bool any = false;
      for (long at = 0; at < n;) {
        const char* name = buf + at + 19;  // struct linux_dirent64: ino(8) off(8) reclen(2) type(1) name
        unsigned short reclen;
        std::memcpy(&reclen, buf + at + 16, 2);
        if (!(name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))))
          any = ::unlinkat(fd, name, 0) == 0 || any;
        at += reclen;
      }
      removed = removed || any;
      if (!any) break;
    }
    ::close(fd);
    if (::rmdir(dir) == 0 || errno != ENOTEMPTY || (!removed && attempt > 0)) return;
  }
}

void remove_temporary() noexcept {  // with the mutex held, or from a signal handler
  if (g_tmp_dir[0] != '\0' && !g_output_complete.load()) remove_folder_flat(g_tmp_dir);
  g_tmp_dir[0] = '\0';
}

// Removes the temporary folder, says why and exits 130 (a signal that ends the run); returns if
// the output is already in place (too late to undo: the run finishes normally).
void end_interrupted(int sig) {
  std::lock_guard<std::mutex> lock(g_cleanup_mutex);
  if (g_output_complete.load()) return;
  const bool writing = g_tmp_dir[0] != '\0';
  remove_temporary();
  if (sig != SIGPIPE || writing)
    std::fprintf(stderr, "\nlowbit: %s%s\n", sig == SIGPIPE ? "standard output closed (SIGPIPE)" : "interrupted", writing ? "; no output written" : "");
  ::_exit(130);
}

// printf to standard output, flushed at once: a closed pipe (EPIPE) ends the run as the signals
// above do.
__attribute__((format(printf, 1, 2))) void report(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::vprintf(fmt, ap);
  va_end(ap);
  if (std::fflush(stdout) != 0 && errno == EPIPE) end_interrupted(SIGPIPE);
}

// The input files' mappings, for the SIGBUS handler: filled once the input is open, before any
// of its data is read, and not changed afterwards.
struct mapped_range {
  const std::uint8_t* begin;
  std::size_t size;
  const char* path;
};
std::vector<mapped_range> g_mapped;

void write_err(const char* s) noexcept {
  for (std::size_t n = std::strlen(s); n > 0;) {
    const ssize_t w = ::write(2, s, n);
    if (w <= 0) return;
    s += w, n -= static_cast<std::size_t>(w);
  }
}

void on_sigbus(int, siginfo_t* si, void*) {
  const auto* a = static_cast<const std::uint8_t*>(si->si_addr);
  const char* file = nullptr;
  for (const auto& m : g_mapped)
    if (a >= m.begin && a < m.begin + m.size) file = m.path;
  write_err("\nlowbit: ");
  write_err(file != nullptr ? file : "an input file");
  write_err(": became shorter while it was read (truncated by another process?); no output written\n");
  remove_temporary();
  ::_exit(2);  // exit_input
}

void register_input(const io::checkpoint& c) {
  g_mapped.clear();
  for (std::size_t i = 0; i < c.file_count(); ++i) {
    const io::safetensors_file& f = c.file(i);
    g_mapped.push_back({f.bytes(), f.file_size(), f.path().c_str()});
  }
}

void start_signal_thread() {
  static sigset_t set;
  sigemptyset(&set);
  for (int sig : handled_signals) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, nullptr);
  std::thread([] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      end_interrupted(sig);
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

// Removes, or reports, temporary folders that earlier runs writing `out` left beside it. Their
// names hold the writing process's id (OUT.lowbit-tmp-<pid>-XXXXXX): a folder whose process no
// longer runs (a run killed by SIGKILL or a power cut) is removed; one whose process runs is
// another run's, and is reported.
void clean_stale_temporaries(const std::string& out) {
  const std::string dir = io::detail::parent_dir(out), base = out.substr(out.find_last_of('/') + 1), prefix = base + ".lowbit-tmp-";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  std::vector<std::pair<std::string, long>> found;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + prefix.size(), &end, 10);
    found.emplace_back(name, end != nullptr && *end == '-' && pid > 0 ? pid : 0);
  }
  ::closedir(d);
  for (const auto& f : found) {
    const std::string path = dir + "/" + f.first;
    if (f.second > 0 && ::kill(static_cast<pid_t>(f.second), 0) != 0 && errno == ESRCH) {
      remove_folder_flat(path.c_str());
      if (!io::path_exists(path)) std::fprintf(stderr, "lowbit: removed %s, left by an earlier run (process %ld, no longer running)\n", path.c_str(), f.second);
      else std::fprintf(stderr, "lowbit: warning: %s was left by an earlier run (process %ld) and cannot be removed\n", path.c_str(), f.second);
    } else if (f.second > 0) {
      std::fprintf(stderr, "lowbit: warning: %s belongs to another run writing %s (process %ld)\n", path.c_str(), out.c_str(), f.second);
    } else {
      std::fprintf(stderr, "lowbit: warning: %s was left by an earlier run; remove it\n", path.c_str());
    }
  }
}

// The output folder: a temporary folder beside OUT, renamed onto OUT by commit().
//
// OUT is checked before anything is read (so that its problems are not found only after the
// work): it must be a non-empty path whose last part is not "." or ".."; it must not be a
// symbolic link (dangling or not: the finished folder is renamed onto OUT, which would replace
// the link rather than fill what it points to); if it exists it must be an empty folder that is
// not a mount point (a mount point cannot be replaced by a rename); and a temporary folder must
// be creatable beside it. The temporary folder gets mode 0777 minus the umask, as mkdir(1) gives.
class output_folder {
 public:
  ~output_folder() {
    std::lock_guard<std::mutex> lock(g_cleanup_mutex);
    if (!committed_ && !tmp_.empty()) remove_temporary();
  }
  lowbit::status open(const std::string& out) {
    using lowbit::errc;
    using lowbit::status;
    out_ = out;
    while (out_.size() > 1 && out_.back() == '/') out_.pop_back();
    if (out_.empty()) return status::error(errc::io, "the output path is empty");
    const std::string base = out_.substr(out_.find_last_of('/') + 1);
    if (base == "." || base == ".." || base == "/" || base.empty())
      return status::error(errc::io, "%s: name the output folder itself (not \".\", \"..\" or \"/\")", out_.c_str());
    struct stat st {};
    if (::lstat(out_.c_str(), &st) == 0) {
      if (S_ISLNK(st.st_mode)) {
        char target[4096] = {};
        const ssize_t n = ::readlink(out_.c_str(), target, sizeof target - 1);
        return status::error(errc::io, "%s: is a symbolic link (to %s%s); give the folder itself as OUT", out_.c_str(), n > 0 ? target : "?",
                             io::path_exists(out_) ? "" : ", which does not exist");
      }
      if (!S_ISDIR(st.st_mode)) return status::error(errc::io, "%s: exists and is not a folder", out_.c_str());
      DIR* d = ::opendir(out_.c_str());
      if (d == nullptr) return status::error(errc::io, "%s: cannot open: %s", out_.c_str(), std::strerror(errno));
      int entries = 0;
      while (dirent* e = ::readdir(d))
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) ++entries;
      ::closedir(d);
      if (entries > 0) return status::error(errc::io, "%s: folder exists and is not empty; refusing to overwrite", out_.c_str());
      struct stat parent {};
      if (::stat(io::detail::parent_dir(out_).c_str(), &parent) == 0 && (parent.st_dev != st.st_dev || parent.st_ino == st.st_ino))
        return status::error(errc::io, "%s: is a mount point, which the finished folder cannot be renamed onto; give a folder inside it", out_.c_str());
    } else if (errno != ENOENT) {
      return status::error(errc::io, "%s: %s", out_.c_str(), std::strerror(errno));
    }
    clean_stale_temporaries(out_);
    std::lock_guard<std::mutex> lock(g_cleanup_mutex);  // the folder exists only once it is registered
    std::string tmpl = out_ + ".lowbit-tmp-" + std::to_string(static_cast<long>(::getpid())) + "-XXXXXX";
    if (tmpl.size() >= sizeof g_tmp_dir) return status::error(errc::io, "%s: path too long", out_.c_str());
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (::mkdtemp(buf.data()) == nullptr)
      return status::error(errc::io, "%s: cannot create a temporary folder beside it: %s", out_.c_str(), std::strerror(errno));
    tmp_ = buf.data();
    std::memcpy(g_tmp_dir, tmp_.c_str(), tmp_.size() + 1);
    const mode_t um = ::umask(0);
    ::umask(um);
    if (::chmod(tmp_.c_str(), 0777 & ~um) != 0) return status::error(errc::io, "%s: cannot set its mode: %s", tmp_.c_str(), std::strerror(errno));
    return {};
  }
  // Path of `name` inside the temporary folder, and the folder.
  std::string file(const char* name) const { return tmp_ + "/" + name; }
  const std::string& dir() const { return tmp_; }
  lowbit::status commit() {
    if (io::is_directory(out_) && ::rmdir(out_.c_str()) != 0)
      return lowbit::status::error(lowbit::errc::io, "%s: cannot replace the empty folder: %s", out_.c_str(), std::strerror(errno));
    if (::rename(tmp_.c_str(), out_.c_str()) != 0)
      return lowbit::status::error(lowbit::errc::io, "%s: cannot rename %s onto it: %s", out_.c_str(), tmp_.c_str(), std::strerror(errno));
    committed_ = true;
    g_output_complete = true;
    g_tmp_dir[0] = '\0';
    return io::detail::sync_dir(io::detail::parent_dir(out_));
  }

 private:
  std::string out_, tmp_;
  bool committed_ = false;
};

// Writes config.json into `folder`: `config_text` with quantization_config set to `qc`, or
// removed when `qc` is null.
int write_config_json(output_folder& folder, const std::string& config_text, const io::bnb_quantization_config* qc) {
  const std::string cfg = folder.file("config.json");
  if (qc != nullptr) {
    if (auto s = io::write_config(cfg, config_text, *qc); !s) return fail(exit_output, s);
  } else {
    nlohmann::json j = nlohmann::json::object();  // keys sorted, as io::write_config writes them
    if (!config_text.empty() && (!io::parse_json_text(config_text, cfg, j).ok() || !j.is_object())) j = nlohmann::json::object();  // checked by read_base_config
    j.erase("quantization_config");
    if (auto s = io::write_file_atomic(cfg, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"); !s) return fail(exit_output, s);
  }
  return exit_ok;
}

// The model file(s) of the output, written group after group of tensors (a group, e.g. a
// quantized weight with its companions, always goes to one file). With no size limit, or when
// everything fits in one, that is model.safetensors; else shards named as transformers names
// them, model-00001-of-0000N.safetensors, each holding whole groups up to `max_shard_bytes` of
// tensor data (a group larger than that gets a shard of its own), and
// model.safetensors.index.json mapping every tensor to its shard with metadata.total_size, the
// bytes of tensor data. One shard file is open at a time: each is committed (header written
// last) before the next is begun.
class model_writer {
 public:
  // Plans the files for `groups` (tensor sizes at their largest, as planned).
  void plan(output_folder& folder, const std::vector<std::vector<io::tensor_entry>>& groups, std::uint64_t max_shard_bytes) {
    folder_ = &folder;
    shard_of_.clear();
    first_.clear();
    shards_.assign(1, {});
    std::uint64_t bytes = 0;
    for (const auto& g : groups) {
      std::uint64_t gb = 0;
      for (const auto& e : g) gb += e.nbytes();
      if (max_shard_bytes > 0 && !shards_.back().empty() && bytes + gb > max_shard_bytes) shards_.emplace_back(), bytes = 0;
      shard_of_.push_back(shards_.size() - 1);
      first_.push_back(shards_.back().size());
      shards_.back().insert(shards_.back().end(), g.begin(), g.end());
      bytes += gb;
    }
    open_ = none;
    next_ = 0;
  }
  // The writer of group `g`'s file and the index of the group's first tensor in it; opens that
  // file (committing the one before) when `g` is the first group of a file. Groups in order.
  lowbit::status at(std::size_t g, io::safetensors_writer*& w, std::size_t& first) {
    while (open_ != shard_of_[g]) {
      if (next_ > shard_of_[g]) return lowbit::status::error(lowbit::errc::invalid_argument, "internal error: tensor group %zu written after a later one", g);
      LOWBIT_TRY(advance());
    }
    w = &writer_;
    first = first_[g];
    return {};
  }
  // Commits the open file and any not yet begun, then writes the index when there are shards.
  lowbit::status finish() {
    while (open_ != none || next_ < shards_.size()) LOWBIT_TRY(advance());
    return shards_.size() == 1 ? lowbit::status{} : io::write_index(folder_->dir(), total_, weight_map_);
  }

 private:
  static constexpr std::size_t none = static_cast<std::size_t>(-1);
  std::string name(std::size_t s) const {
    if (shards_.size() == 1) return "model.safetensors";
    char buf[64];
    std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", s + 1, shards_.size());
    return buf;
  }
  // Commits the open file (its tensors go into the index) and opens the next, if any.
  lowbit::status advance() {
    if (open_ != none) {
      for (const auto& e : writer_.entries()) total_ += e.nbytes(), weight_map_[e.name] = name(open_);
      open_ = none;
      LOWBIT_TRY(writer_.commit());
    }
    if (next_ < shards_.size()) {
      LOWBIT_TRY(writer_.open(folder_->file(name(next_).c_str()), shards_[next_], {{"format", "pt"}}));
      open_ = next_++;
    }
    return {};
  }
  output_folder* folder_ = nullptr;
  std::vector<std::size_t> shard_of_, first_;
  std::vector<std::vector<io::tensor_entry>> shards_;
  std::size_t open_ = none, next_ = 0;
  io::safetensors_writer writer_;
  std::uint64_t total_ = 0;
  std::map<std::string, std::string> weight_map_;
};

// Renames the finished temporary folder onto OUT (after its files are written).
int commit_output(output_folder& folder) {
  std::lock_guard<std::mutex> lock(g_cleanup_mutex);
  if (auto s = folder.commit(); !s) return fail(exit_output, s);
  return exit_ok;
}

// What a command that reads the non-bitsandbytes layouts (fine-grained FP8, gpt-oss MXFP4) learns
// from config.json: their quantization_config, or the defaults (128 x 128 FP8 blocks) without one.
struct layout_input {
  bool fp8_configured = false;  // config.json says quant_method "fp8"
  io::fp8_block_config fp8;
  bool mx_configured = false;  // config.json says quant_method "mxfp4"
  io::mxfp4_config mx;
  bool ct_configured = false;  // config.json says quant_method "compressed-tensors"
  io::ct_config ct;
};

// config.json beside the input (a folder's own, or the one next to a single file), or "". With
// `li`, a quantization_config of method "fp8" or "mxfp4" is read into it rather than refused.
int read_base_config(const io::checkpoint& c, std::string& text, layout_input* li = nullptr) {
  const std::string p = c.folder() + "/config.json";
  text.clear();
  if (!io::path_exists(p)) return exit_ok;
  if (auto s = io::read_text_file(p, text); !s) return fail(exit_input, s);
  nlohmann::json j;
  if (auto s = io::parse_json_text(text, p, j); !s) return fail(exit_input, s);
  if (li != nullptr) {
    std::string method;
    if (auto s = io::quantization_method(j, p, method); !s) return fail(exit_input, s);
    if (method == "fp8") {
      if (auto s = io::from_json(j["quantization_config"], p, li->fp8); !s) return fail(exit_input, s);
      li->fp8_configured = true;
      return exit_ok;
    }
    if (method == "mxfp4") {
      if (auto s = io::from_json(j["quantization_config"], p, li->mx); !s) return fail(exit_input, s);
      li->mx_configured = true;
      return exit_ok;
    }
    if (method == "compressed-tensors") {
      if (auto s = io::from_json(j["quantization_config"], p, li->ct); !s) return fail(exit_input, s);
      li->ct_configured = true;
      return exit_ok;
    }
  }
  if (auto s = io::check_readable_quantization(j, p); !s) return fail(exit_input, s);
  return exit_ok;
}

// What a member of a checkpoint is, beyond bitsandbytes' kinds.
enum class ext_kind : char {
  none,          // a dense tensor or a bitsandbytes weight (io::bnb_member says which)
  fp8,           // transformers' fine-grained FP8: "X" with "X_scale_inv"
  mxfp4,         // gpt-oss MXFP4 as transformers names it: "X_blocks" + "X_scales", listed as "X"
  mxfp4_openai,  // openai's original checkpoint: "X.blocks" + "X.scales", listed as "X"
  ct,            // compressed-tensors: module X's "X.weight_scale" and the rest, listed as "X.weight"
};

// The tensors of a compressed-tensors module X besides X.weight itself: its weight's (every
// layout's) and its activations' quantization parameters.
const char* const ct_companions[] = {".weight_packed", ".weight_scale", ".weight_global_scale", ".weight_zero_point", ".weight_shape", ".weight_g_idx",
                                     ".input_scale", ".input_global_scale", ".input_zero_point"};

// Sorts the non-bitsandbytes weights out of `members` (io::bnb_members' list): fine-grained FP8
// weights (F8_E4M3 "X" with "X_scale_inv"; when config.json says quant_method "fp8", every F8_E4M3
// tensor, so that one without its scales is an error rather than copied through) and MXFP4 pairs
// (U8 "X_blocks" with "X_scales", or "X.blocks" with "X.scales"; with quant_method "mxfp4" every U8
// "X_blocks", for the same reason), listed once under the weight's name "X". Their companion
// tensors leave the list. `kind[i]` says what member i is.
void layout_members(const io::checkpoint& c, const layout_input& li, std::vector<io::bnb_member>& members, std::vector<ext_kind>& kind) {
  std::unordered_set<std::string> companions;
  std::unordered_map<std::string, std::pair<std::string, ext_kind>> mx;  // blocks tensor -> (weight, kind)
  for (const auto& m : members) {
    if (m.what != io::bnb_member::kind::dense) continue;
    if (io::is_fp8_block_weight(c, m.name)) companions.insert(io::fp8_scale_name(m.name));
    for (const io::mxfp4_naming n : {io::mxfp4_naming::transformers, io::mxfp4_naming::openai}) {
      std::string base;
      const bool configured = li.mx_configured && n == io::mxfp4_naming::transformers && c.find(m.name).tensor->dtype == io::st_dtype::U8;
      if (io::mxfp4_base_of(m.name, base, n) && (configured || io::is_mxfp4_pair(c, base, n))) {
        mx.emplace(m.name, std::make_pair(base, n == io::mxfp4_naming::openai ? ext_kind::mxfp4_openai : ext_kind::mxfp4));
        if (io::is_mxfp4_pair(c, base, n)) companions.insert(io::mxfp4_scales_name(base, n));
        break;
      }
    }
  }
  // compressed-tensors (quant_method "compressed-tensors"): every module X with an X.weight_scale,
  // listed once as "X.weight" where its first tensor is
  std::unordered_map<std::string, std::string> ct_weight;  // a tensor of a module -> "X.weight"
  if (li.ct_configured) {
    const std::string scale = ".weight_scale";
    for (const auto& m : members)
      if (m.what == io::bnb_member::kind::dense && ends_with(m.name, scale.c_str())) {
        const std::string x = m.name.substr(0, m.name.size() - scale.size());
        ct_weight.emplace(x + ".weight", x + ".weight");
        for (const char* sfx : ct_companions) ct_weight.emplace(x + sfx, x + ".weight");
      }
  }
  std::unordered_set<std::string> ct_listed;
  std::vector<io::bnb_member> kept;
  kept.reserve(members.size());
  kind.clear();
  for (auto& m : members) {
    if (m.what == io::bnb_member::kind::dense && !ct_weight.empty()) {
      const auto it = ct_weight.find(m.name);
      if (it != ct_weight.end()) {
        if (!ct_listed.insert(it->second).second) continue;  // the module is listed already
        m.name = it->second;
        m.companions.clear();
        kind.push_back(ext_kind::ct);
        kept.push_back(std::move(m));
        continue;
      }
    }
    if (m.what == io::bnb_member::kind::dense && companions.count(m.name) != 0) continue;
    ext_kind k = ext_kind::none;
    if (m.what == io::bnb_member::kind::dense) {
      const auto it = mx.find(m.name);
      if (it != mx.end()) {
        m.name = it->second.first;
        k = it->second.second;
      } else if (li.fp8_configured ? c.find(m.name).tensor->dtype == io::st_dtype::F8_E4M3 : io::is_fp8_block_weight(c, m.name)) {
        k = ext_kind::fp8;
      }
    }
    kind.push_back(k);
    kept.push_back(std::move(m));
  }
  members = std::move(kept);
}

// The header facts of weight `name` of kind `k` (not none), no data read: the dense shape the tool
// gives it (gpt-oss experts [E, rows, K] as transformers' parameters [E, K, rows], i.e. the last
// two dimensions swapped, for the transformers naming; the file's orientation otherwise), the
// bytes the file spends on it, its format and scale layout for inspect.
struct ext_facts {
  std::vector<std::int64_t> shape;
  std::uint64_t stored = 0;
  std::string format, scales;
  bool transposed = false;
};
// The bytes of module `x`'s weight tensors in `c` (X.weight and X.weight_*).
std::uint64_t ct_stored(const io::checkpoint& c, const std::string& x) {
  std::uint64_t b = 0;
  for (const std::string sfx : {".weight", ".weight_packed", ".weight_scale", ".weight_global_scale", ".weight_zero_point", ".weight_shape", ".weight_g_idx"})
    if (const io::tensor_info* t = c.find(x + sfx).tensor) b += t->nbytes();
  return b;
}

lowbit::status ext_weight_facts(const io::checkpoint& c, const layout_input& li, const std::string& name, ext_kind k, ext_facts& f) {
  if (k == ext_kind::ct) {
    const std::string x = name.substr(0, name.size() - 7);  // "X.weight" -> "X"
    const io::ct_scheme* sch = nullptr;
    std::string format;
    LOWBIT_TRY(io::detail::ct_module_scheme(c, li.ct, x, sch, format));
    const io::ct_quant_args& a = sch->weights;
    io::ct_layout l;
    if (format == "float-quantized" || (format == "naive-quantized" && a.type == "float")) {
      LOWBIT_TRY(io::check_ct_fp8_layout(c, x, a, l));
      f.format = "ct:fp8";
    } else if (format == "nvfp4-pack-quantized") {
      LOWBIT_TRY(io::check_ct_nvfp4_layout(c, x, a, l));
      f.format = "ct:nvfp4";
    } else if (format == "pack-quantized") {
      LOWBIT_TRY(io::check_ct_packed_layout(c, x, a, l));
      f.format = "ct:int" + std::to_string(a.num_bits);
    } else if (format == "int-quantized" || format == "naive-quantized") {
      const io::tensor_info* w = c.find(x + ".weight").tensor;
      if (w == nullptr || w->shape.size() != 2)
        return lowbit::status::error(lowbit::errc::invalid_argument, "%s: module \"%.100s\": no 2-D %s.weight for its %s layout", c.path().c_str(), x.c_str(), x.c_str(), format.c_str());
      l.rows = w->shape[0], l.cols = w->shape[1];
      f.format = "ct:int" + std::to_string(a.num_bits);
    } else {
      return lowbit::status::error(lowbit::errc::unsupported, "%s: module \"%.100s\": compressed-tensors format \"%.60s\" is not one lowbit reads", c.path().c_str(), x.c_str(), format.c_str());
    }
    f.shape = {l.rows, l.cols};
    f.stored = ct_stored(c, x);
    const io::tensor_info* sc = c.find(x + ".weight_scale").tensor;
    const std::string sdt = sc != nullptr ? lowbit::io::info(sc->dtype).name : "?";
    if (format == "nvfp4-pack-quantized") f.scales = "1x16 F8_E4M3 + F32 global";
    else if (a.strategy == "tensor") f.scales = "per tensor " + sdt;
    else if (a.strategy == "channel") f.scales = "per row " + sdt;
    else if (a.strategy == "group") f.scales = "1x" + std::to_string(a.group_size) + " " + sdt;
    else f.scales = std::to_string(a.block_rows) + "x" + std::to_string(a.block_cols) + " " + sdt;
    if (c.find(x + ".weight_zero_point").tensor != nullptr) f.scales += " + zero points";
    return {};
  }
  if (k == ext_kind::fp8) {
    io::fp8_block_layout l;
    LOWBIT_TRY(io::check_fp8_block_layout(c, name, li.fp8, l));
    f.shape = {l.rows, l.cols};
    f.stored = l.weight.tensor->nbytes() + l.scale.tensor->nbytes();
    f.format = "fp8_e4m3_block";
    f.scales = std::to_string(li.fp8.block_rows) + "x" + std::to_string(li.fp8.block_cols) + (l.scale.tensor->dtype == io::st_dtype::F32 ? " f32" : " bf16") + " scale_inv";
    return {};
  }
  io::mxfp4_load_options o;
  o.naming = k == ext_kind::mxfp4_openai ? io::mxfp4_naming::openai : io::mxfp4_naming::transformers;
  io::mxfp4_layout l;
  LOWBIT_TRY(io::check_mxfp4_layout(c, name, l, o));
  f.shape = l.shape;
  f.transposed = k == ext_kind::mxfp4 && l.shape.size() == 3;
  if (f.transposed) std::swap(f.shape[1], f.shape[2]);
  f.stored = l.blocks.tensor->nbytes() + l.scales.tensor->nbytes();
  f.format = "mxfp4";
  f.scales = f.transposed ? "1x32 e8m0 (along dim 1)" : "1x32 e8m0";
  return {};
}

// out[e][j][i] = in[e][i][j] for e < E, i < R, j < C, elements of `size` bytes (32 x 32 tiles).
void transpose_last2(const std::uint8_t* in, std::int64_t E, std::int64_t R, std::int64_t C, std::size_t size, std::uint8_t* out) {
  constexpr std::int64_t t = 32;
  for (std::int64_t e = 0; e < E; ++e) {
    const std::uint8_t* a = in + static_cast<std::size_t>(e * R * C) * size;
    std::uint8_t* b = out + static_cast<std::size_t>(e * R * C) * size;
    for (std::int64_t i0 = 0; i0 < R; i0 += t)
      for (std::int64_t j0 = 0; j0 < C; j0 += t)
        for (std::int64_t i = i0; i < std::min(R, i0 + t); ++i)
          for (std::int64_t j = j0; j < std::min(C, j0 + t); ++j)
            std::memcpy(b + static_cast<std::size_t>(j * R + i) * size, a + static_cast<std::size_t>(i * C + j) * size, size);
  }
}

// The dense values of weight `name` of kind `k` in dtype `dt` (f32, bf16 or f16), in the shape
// ext_weight_facts gives, into `out` (numel * size bytes).
void narrow_from_f32(const float* x, std::int64_t n, io::st_dtype d, std::uint8_t* out);

lowbit::status ext_weight_values(const io::checkpoint& c, const layout_input& li, const std::string& name, ext_kind k, lowbit::dtype dt, std::uint8_t* out, int threads) {
  const lowbit::host::options opt{threads, false, true};
  if (k == ext_kind::ct) {  // float32 values (compressed-tensors' own products), rounded once to dt
    std::vector<float> v;
    std::vector<std::int64_t> shape;
    io::ct_load_options o;
    o.source = dt;
    LOWBIT_TRY(io::dequantize_ct_weight(c, li.ct, name.substr(0, name.size() - 7), v, shape, o));
    narrow_from_f32(v.data(), static_cast<std::int64_t>(v.size()), io::to_st_dtype(dt), out);
    return {};
  }
  if (k == ext_kind::fp8) {
    lowbit::scaled_tensor sq;
    io::fp8_load_options fo;
    fo.source = dt;
    LOWBIT_TRY(io::load_fp8_block(c, name, li.fp8, sq, fo));
    return lowbit::dequantize(sq, out, dt, opt);
  }
  io::mxfp4_load_options o;
  o.naming = k == ext_kind::mxfp4_openai ? io::mxfp4_naming::openai : io::mxfp4_naming::transformers;
  o.source = dt;
  lowbit::scaled_tensor q;
  LOWBIT_TRY(io::load_mxfp4(c, name, q, o));
  if (!(k == ext_kind::mxfp4 && q.shape().size() == 3)) return lowbit::dequantize(q, out, dt, opt);
  std::vector<std::uint8_t> file_order(static_cast<std::size_t>(q.numel()) * static_cast<std::size_t>(lowbit::dtype_size(dt)));
  LOWBIT_TRY(lowbit::dequantize(q, file_order.data(), dt, opt));
  transpose_last2(file_order.data(), q.shape()[0], q.shape()[1], q.shape()[2], static_cast<std::size_t>(lowbit::dtype_size(dt)), out);
  return {};
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
      "usage: lowbit quantize IN OUT [--format nf4|fp4|int8|fp8-block|mxfp4|ct-fp8|ct-nvfp4|ct-int4|ct-int8] [--block-size N]\n"
      "                              [--double-quant|--no-double-quant]\n"
      "                              [--skip PATTERN]... [--compute-dtype bf16|f16|f32] [--threads N] [--quiet] [--no-report]\n"
      "                              [--max-shard-size SIZE]\n"
      "       lowbit inspect FILE|FOLDER\n"
      "       lowbit dequantize IN OUT [--threads N] [--quiet] [--max-shard-size SIZE]\n"
      "       lowbit convert IN OUT --to FORMAT [--skip PATTERN]... [--threads N] [--quiet] [--no-report] [--max-shard-size SIZE]\n"
      "              FORMAT: gguf-q8_0|gguf-q4_0|gguf-q4_1|gguf-mxfp4|gguf-f16|gguf-bf16|gguf-f32|bnb-nf4|bnb-fp4|bnb-int8|fp8-block|\n"
      "                      mxfp4|ct-fp8|ct-nvfp4|ct-int4|ct-int8|safetensors-f32|safetensors-f16|safetensors-bf16\n"
      "       lowbit --version | --help\n"
      "exit codes: 0 ok, 1 usage, 2 bad input, 3 cannot write output, 4 cannot quantize, 130 interrupted\n",
      f);
}

// The options both conversions take and the two paths IN OUT.
struct conversion_args {
  std::vector<std::string> pos;
  long long threads = 0;
  bool quiet = false;
  std::uint64_t max_shard_bytes = 0;  // 0: one model.safetensors
};

// A size as transformers' --max-shard-size takes it: bytes ("1000000"), or a number with a unit,
// KB/MB/GB/TB powers of 1000 and KiB/MiB/GiB/TiB powers of 1024, case-insensitive ("5GB",
// "500MiB", "1.5gb"). False for anything else, or less than one byte.
bool parse_size(const std::string& text, std::uint64_t& out) {
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end == text.c_str() || !(v >= 1.0) || v > 1e18) return false;
  std::string unit(end);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static const std::pair<const char*, double> units[] = {{"", 1.0},      {"B", 1.0},      {"KB", 1e3},           {"MB", 1e6},           {"GB", 1e9},
                                                         {"TB", 1e12},   {"KIB", 1024.0}, {"MIB", 1048576.0},    {"GIB", 1073741824.0}, {"TIB", 1099511627776.0}};
  for (const auto& u : units)
    if (unit == u.first) {
      const double bytes = v * u.second;
      if (bytes > 1e18 || (unit.empty() && v != static_cast<double>(static_cast<std::uint64_t>(v)))) return false;
      out = static_cast<std::uint64_t>(bytes);
      return out >= 1;
    }
  return false;
}

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
    } else if (a == "--max-shard-size") {
      if (i + 1 >= argc || !parse_size(argv[++i], args.max_shard_bytes))
        return std::fprintf(stderr, "lowbit: --max-shard-size must be a size such as 5GB, 500MB, 2GiB or a byte count\n"), exit_usage;
    } else if (a.size() > 1 && a[0] == '-') {
      return std::fprintf(stderr, "lowbit: unknown option %s\n", a.c_str()), usage(stderr), exit_usage;
    } else {
      args.pos.push_back(a);
    }
  }
  if (args.pos.size() != 2) return usage(stderr), exit_usage;
  return exit_ok;
}

// Opens the temporary output folder for OUT, then IN (and its config.json; `fp8` as for
// read_base_config).
int open_conversion(const conversion_args& args, io::checkpoint& in, std::string& config_text, output_folder& folder, layout_input* li = nullptr) {
  if (auto s = folder.open(args.pos[1]); !s) return fail(exit_output, s);  // OUT first: its problems before any work
  if (auto s = io::checkpoint::open(args.pos[0], in); !s) return fail(exit_input, s);
  register_input(in);
  if (int r = read_base_config(in, config_text, li)) return r;
  return exit_ok;
}

// The output's tensor names, checked before anything is written: none empty (safetensors writers
// refuse "", which readers accept), and none made twice, e.g. by a quantized weight "x.weight"
// whose companion "x.weight.absmax" is an input tensor too. `source[i]` is the input tensor that
// gives entries[i] (null: the entry's own name). Exit 2 naming the tensors.
int check_output_names(const io::checkpoint& in, const std::vector<io::tensor_entry>& entries, const std::vector<const std::string*>& source = {}) {
  std::unordered_map<std::string, std::size_t> seen;
  seen.reserve(entries.size());
  auto from = [&](std::size_t i) -> const std::string& { return i < source.size() && source[i] ? *source[i] : entries[i].name; };
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const std::string& n = entries[i].name;
    if (n.empty())
      return fail(exit_input, lowbit::status::error(lowbit::errc::invalid_argument, "%s: has a tensor named \"\" (empty), which a safetensors file cannot be written with",
                                                    in.path().c_str()));
    const auto ins = seen.emplace(n, i);
    if (!ins.second)
      return fail(exit_input, lowbit::status::error(lowbit::errc::invalid_argument,
                                                    "%s: output tensor \"%.100s\" would be written twice: for input tensor \"%.100s\" and for input tensor \"%.100s\" (--skip keeps a weight unquantized)",
                                                    in.path().c_str(), n.c_str(), from(ins.first->second).c_str(), from(i).c_str()));
  }
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

// Ends a conversion's pipeline: closes the hand-off, waits for the writer thread (whose result
// is `consumed`), then, if neither side failed, finishes the model files and puts the output
// folder in place.
template <class T>
int finish_conversion(handoff<T>& slot, std::thread& writer, progress& bar, int produced, const int& consumed, model_writer& mw, output_folder& folder) {
  slot.close();
  writer.join();
  bar.finish();
  if (produced != exit_ok) return produced;
  if (consumed != exit_ok) return consumed;
  if (auto s = mw.finish(); !s) return fail(exit_output, s);
  return commit_output(folder);
}

// A tensor on its way to the file: its index in the plan and, when quantized, its data (shared
// with the quantizing thread, which measures its error meanwhile) and its tensors' real shapes.
struct stage {
  std::size_t tensor = 0;
  std::shared_ptr<const lowbit::quant_tensor> q;
  std::vector<io::tensor_entry> entries;
};

// Gives the planned tensors of quantized stage `st` their real shapes (each at most the planned
// one), then writes its data.
lowbit::status write_quantized(io::safetensors_writer& w, std::size_t first, const stage& st) {
  for (std::size_t k = 0; k < st.entries.size(); ++k) LOWBIT_TRY(w.reshape(first + k, st.entries[k].shape));
  return io::write_bnb(w, *st.q);
}

// The writer thread: writes each stage's tensor, in order.
int write_stages(handoff<stage>& slot, model_writer& mw, const std::vector<planned>& plan, progress& bar, std::mutex& print_mutex) {
  while (stage* st = slot.take()) {
    const planned& t = plan[st->tensor];
    io::safetensors_writer* w = nullptr;
    std::size_t first = 0;
    lowbit::status s = mw.at(st->tensor, w, first);
    if (s) s = t.quantize ? write_quantized(*w, first, *st) : w->write(t.src, static_cast<std::size_t>(t.info->nbytes()));
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

// The formats of `quantize --format` that are safetensors layouts of other owners than
// bitsandbytes, written through convert's path (convert_safetensors).
const char* const layout_formats = "fp8-block, mxfp4, ct-fp8, ct-nvfp4, ct-int4, ct-int8";
bool is_layout_format(const std::string& f) {
  return f == "fp8-block" || f == "mxfp4" || f == "ct-fp8" || f == "ct-nvfp4" || f == "ct-int4" || f == "ct-int8";
}
int quantize_to_layout(const conversion_args& args, const std::string& fmt, const std::vector<std::string>& skip, bool with_report);

int cmd_quantize(int argc, char** argv) {
  conversion_args args;
  std::string fmt = "nf4", compute = "bfloat16";
  long long block = 64;
  bool dq = true, with_report = true;
  const char* bnb_only = nullptr;  // an option of the bitsandbytes formats only, if given
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
      if (fmt != "nf4" && fmt != "fp4" && fmt != "int8" && !is_layout_format(fmt))
        return std::fprintf(stderr, "lowbit: --format must be one of nf4, fp4, int8, %s; not \"%s\"\n", layout_formats, v), -1;
    } else if (a == "--block-size") {
      const char* v = value("--block-size");
      if (!v || !parse_int(v, 32, 4096, block) || (block & (block - 1)) != 0)
        return std::fprintf(stderr, "lowbit: --block-size must be a power of two in [32, 4096]\n"), -1;
      bnb_only = "--block-size";
    } else if (a == "--double-quant" || a == "--no-double-quant") {
      dq = a == "--double-quant";
      bnb_only = argv[i];
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
      bnb_only = "--compute-dtype";
    } else if (a == "--no-report") {
      with_report = false;
    } else {
      return 0;
    }
    return 1;
  });
  if (parsed != exit_ok) return parsed;
  if (is_layout_format(fmt)) {
    if (bnb_only != nullptr) return std::fprintf(stderr, "lowbit: %s applies to --format nf4, fp4 and int8 only, not %s\n", bnb_only, fmt.c_str()), exit_usage;
    return quantize_to_layout(args, fmt, skip, with_report);
  }
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
  std::vector<const std::string*> source;  // the input tensor of each entry
  std::uint64_t work = 0, in_bytes = 0, out_bytes = 0;
  for (const auto& name : in.names()) {
    planned t;
    if (int r = plan_tensor(in, name, skip, p, t)) return r;
    in_bytes += t.info->nbytes();
    entries.insert(entries.end(), t.entries.begin(), t.entries.end());
    source.insert(source.end(), t.entries.size(), &name);
    plan.push_back(std::move(t));
  }
  if (int r = check_output_names(in, entries, source)) return r;
  work = in_bytes;
  if (int r = write_config_json(folder, config_text, &qc)) return r;
  model_writer mw;
  std::vector<std::vector<io::tensor_entry>> groups;  // a weight and its companions stay in one file
  groups.reserve(plan.size());
  for (const auto& t : plan) groups.push_back(t.entries);
  mw.plan(folder, groups, args.max_shard_bytes);

  // 2. The pipeline: a writer thread writes tensor i while this thread measures its error (with
  // the report) and quantizes tensor i + 1, each on every core. At most two quantized tensors
  // exist at a time: the one being written and the one being made.
  std::mutex print_mutex;  // the progress bar on stderr, against the writer's error message
  progress bar(work, !quiet);
  const auto t0 = std::chrono::steady_clock::now();
  if (with_report) report("%-52s %-16s %8s %10s %10s %8s\n", "tensor", "shape", "bits", "max|err|", "mean|err|", "SQNR dB");
  else report("%-52s %-16s %8s\n", "tensor", "shape", "bits");
  handoff<stage> slot;
  int consumed = exit_ok;  // the writer thread's result
  std::thread writer([&] { consumed = write_stages(slot, mw, plan, bar, print_mutex); });
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
      if (with_report) {
        if (auto s = lowbit::measure_error(t.src, t.dt, *q, es, p.options); !s) {
          produced = fail(exit_quantize, s);
          break;
        }
      }
      std::lock_guard<std::mutex> lock(print_mutex);
      bar.finish();
      if (with_report)
        report("%-52s %-16s %8.3f %10.3g %10.3g %8.2f\n", t.info->name.c_str(), shape_string(t.info->shape).c_str(), bits, es.max_abs, es.mean_abs(),
               es.sqnr_db());
      else report("%-52s %-16s %8.3f\n", t.info->name.c_str(), shape_string(t.info->shape).c_str(), bits);
    }
    done += t.info->nbytes();
    std::lock_guard<std::mutex> lock(print_mutex);
    bar.update(done, t.info->name);
  }
  if (int r = finish_conversion(slot, writer, bar, produced, consumed, mw, folder)) return r;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report("%d of %zu tensors quantized (%s%s, block %lld); %s -> %s in %.2f s (%s/s of input); wrote %s\n", quantized, in.names().size(), fmt.c_str(),
         p.double_quant ? " + double quant" : "", fmt == "int8" ? 0LL : block, human_bytes(static_cast<double>(in_bytes)).c_str(),
         human_bytes(static_cast<double>(out_bytes)).c_str(), secs, human_bytes(secs > 0 ? static_cast<double>(in_bytes) / secs : 0).c_str(), pos[1].c_str());
  return exit_ok;
}

// ---- inspect / dequantize: the bitsandbytes weights of a checkpoint (io::bnb_members) ------------
// The layout of quantized member `m` (no data read). An LLM.int8 weight gets source dtype
// `int8_dtype` (its layout records none).
lowbit::status member_layout(const io::checkpoint& c, const io::bnb_member& m, io::bnb_layout& l,
                             lowbit::dtype int8_dtype = lowbit::dtype::f32) {
  return m.what == io::bnb_member::kind::bnb_4bit ? io::bnb_4bit_layout(c, m.name, l) : io::bnb_int8_layout(c, m.name, l, int8_dtype);
}

int inspect_gguf(const std::string& path);
int dequantize_gguf(const conversion_args& args);

int cmd_inspect(int argc, char** argv) {
  if (argc != 1) return usage(stderr), exit_usage;
  if (io::is_gguf_file(argv[0])) return inspect_gguf(argv[0]);
  io::checkpoint c;
  if (auto s = io::checkpoint::open(argv[0], c); !s) return fail(exit_input, s);
  register_input(c);
  std::string config_text;
  layout_input li;
  const int config_status = read_base_config(c, config_text, &li);  // printed now, returned after the listing
  std::vector<io::bnb_member> members;
  io::bnb_members(c, members);
  std::vector<ext_kind> kind;
  layout_members(c, li, members, kind);
  report("%-52s %-14s %-18s %12s %8s  %s\n", "tensor", "format", "shape", "bytes", "bits", "scales");
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < members.size(); ++i) {
    const io::bnb_member& m = members[i];
    if (kind[i] != ext_kind::none) {
      ext_facts f;
      if (auto s = ext_weight_facts(c, li, m.name, kind[i], f); !s) return fail(exit_input, s);
      total += f.stored;
      std::int64_t n = 1;
      for (auto d : f.shape) n *= d;
      report("%-52s %-14s %-18s %12" PRIu64 " %8.3f  %s\n", m.name.c_str(), f.format.c_str(), shape_string(f.shape).c_str(), f.stored, bits_per_value(f.stored, n),
             f.scales.c_str());
      continue;
    }
    const io::tensor_info& t = *c.find(m.name).tensor;
    if (m.what != io::bnb_member::kind::dense) {
      io::bnb_layout l;
      if (auto s = member_layout(c, m, l); !s) return fail(exit_input, s);
      std::uint64_t b = t.nbytes();  // every byte the file spends on the weight
      for (const auto& n : m.companions) b += c.find(n).tensor->nbytes();
      total += b;
      std::string f = lowbit::info(l.fmt).name;
      if (l.double_quant) f += "+dq";
      const std::string scales = l.fmt == lowbit::format::int8_absmax ? "per row f32 (SCB)"
                                 : l.double_quant ? "1x" + std::to_string(l.block_size) + " u8, per 256 f32 + offset"
                                                  : "1x" + std::to_string(l.block_size) + " f32";
      report("%-52s %-14s %-18s %12" PRIu64 " %8.3f  %s\n", m.name.c_str(), f.c_str(), shape_string(l.shape).c_str(), b, bits_per_value(b, l.numel()),
             scales.c_str());
    } else {
      total += t.nbytes();
      report("%-52s %-14s %-18s %12" PRIu64 " %8d  -\n", m.name.c_str(), io::info(t.dtype).name, shape_string(t.shape).c_str(), t.nbytes(),
             io::info(t.dtype).size * 8);
    }
  }
  report("%zu file(s), %s of tensor data\n", c.file_count(), human_bytes(static_cast<double>(total)).c_str());
  return config_status;  // a quantization method lowbit does not read: listed above, then refused
}

// A tensor of dequantize's output on its way to the file: a dequantized weight's bytes, or none
// for a tensor passed through from the input mapping.
struct dense_stage {
  std::size_t member = 0;
  bool dequantized = false;
  std::unique_ptr<std::uint8_t[]> bytes;
};

// dequantize streams like quantize: the output's tensors (names, dtypes, shapes) are planned from
// the input's headers and quant_states alone, then a writer thread writes tensor i while this
// thread dequantizes tensor i + 1. At most two dequantized tensors (and one quantized one) are in
// memory at a time, whatever the size of the model.
int cmd_dequantize(int argc, char** argv) {
  conversion_args args;
  if (int r = parse_args(argc, argv, args, [](const std::string&, int&) { return 0; })) return r;
  if (io::is_gguf_file(args.pos[0])) return dequantize_gguf(args);
  io::checkpoint in;
  std::string config_text;
  output_folder folder;
  layout_input li;
  if (int r = open_conversion(args, in, config_text, folder, &li)) return r;
  // LLM.int8 weights record no dtype: the model's (config torch_dtype), else bitsandbytes' float32.
  nlohmann::json config;
  if (!config_text.empty() && !io::parse_json_text(config_text, in.folder() + "/config.json", config)) config = nullptr;
  const lowbit::dtype int8_dtype = io::recorded_dtype(config, lowbit::dtype::f32);
  // Fine-grained FP8 and MXFP4 weights record none either: torch_dtype, else bfloat16
  // (transformers' dequantized FP8 and gpt-oss models, DeepSeek's fp8_cast_bf16.py).
  const lowbit::dtype ext_dtype = io::recorded_dtype(config, lowbit::dtype::bf16);
  std::vector<io::bnb_member> members;
  io::bnb_members(in, members);
  std::vector<ext_kind> kind;
  layout_members(in, li, members, kind);
  std::vector<io::tensor_entry> entries;
  std::vector<io::bnb_layout> layouts(members.size());
  entries.reserve(members.size());
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < members.size(); ++i) {
    const io::bnb_member& m = members[i];
    if (kind[i] != ext_kind::none) {
      ext_facts f;
      if (auto s = ext_weight_facts(in, li, m.name, kind[i], f); !s) return fail(exit_input, s);
      entries.push_back({m.name, io::to_st_dtype(ext_dtype), f.shape});
    } else if (m.what == io::bnb_member::kind::dense) {
      const io::tensor_info& t = *in.find(m.name).tensor;
      entries.push_back({m.name, t.dtype, t.shape});
    } else {
      if (auto s = member_layout(in, m, layouts[i], int8_dtype); !s) return fail(exit_input, s);
      entries.push_back({m.name, io::to_st_dtype(layouts[i].source), layouts[i].shape});
    }
    total += entries.back().nbytes();
  }
  if (int r = check_output_names(in, entries)) return r;
  if (int r = write_config_json(folder, config_text, nullptr)) return r;
  model_writer mw;
  std::vector<std::vector<io::tensor_entry>> groups;
  groups.reserve(entries.size());
  for (const auto& e : entries) groups.push_back({e});
  mw.plan(folder, groups, args.max_shard_bytes);

  progress bar(total, !args.quiet);
  handoff<dense_stage> slot;
  int consumed = exit_ok;
  std::thread writer([&] {
    std::uint64_t done = 0;
    while (dense_stage* st = slot.take()) {
      const io::tensor_entry& e = entries[st->member];
      io::safetensors_writer* w = nullptr;
      std::size_t first = 0;
      lowbit::status s = mw.at(st->member, w, first);
      if (s && st->dequantized) {
        s = w->write(st->bytes.get(), static_cast<std::size_t>(e.nbytes()));
      } else if (s) {
        const auto loc = in.find(e.name);
        s = w->write(loc.file->data(*loc.tensor), static_cast<std::size_t>(loc.tensor->nbytes()));
      }
      if (!s) {
        slot.stop();
        bar.finish();
        consumed = fail(exit_output, s);
        return;
      }
      done += e.nbytes();
      bar.update(done, "writing " + e.name);
      slot.done();
    }
  });
  int produced = exit_ok, count = 0;
  for (std::size_t i = 0; i < members.size() && produced == exit_ok; ++i) {
    dense_stage st;
    st.member = i;
    if (members[i].what != io::bnb_member::kind::dense || kind[i] != ext_kind::none) {
      st.dequantized = true;
      st.bytes.reset(new (std::nothrow) std::uint8_t[static_cast<std::size_t>(entries[i].nbytes()) + 1]);
      if (!st.bytes) {
        produced = fail(exit_input, lowbit::status::error(lowbit::errc::out_of_memory, "tensor \"%s\": cannot allocate %llu bytes for its dequantized values",
                                                          members[i].name.c_str(), static_cast<unsigned long long>(entries[i].nbytes())));
        break;
      }
      const lowbit::host::options dopt{static_cast<int>(args.threads), false, true};
      lowbit::status s;
      if (kind[i] != ext_kind::none) {
        s = ext_weight_values(in, li, members[i].name, kind[i], ext_dtype, st.bytes.get(), static_cast<int>(args.threads));
      } else {
        lowbit::quant_tensor q;
        s = members[i].what == io::bnb_member::kind::bnb_4bit ? io::load_bnb_4bit(in, members[i].name, q) : io::load_bnb_int8(in, members[i].name, q, int8_dtype);
        if (s) s = lowbit::dequantize(q, st.bytes.get(), q.source_dtype(), dopt);
      }
      if (!s) {
        produced = fail(exit_input, s);
        break;
      }
      ++count;
    }
    if (!slot.put(std::move(st))) break;  // the writer failed (its message is printed)
  }
  if (int r = finish_conversion(slot, writer, bar, produced, consumed, mw, folder)) return r;
  report("%d tensors dequantized; wrote %s\n", count, args.pos[1].c_str());
  return exit_ok;
}

// ---- GGUF: inspect, dequantize and convert --------------------------------------------------------
// A GGUF input is recognized by its magic, whatever its name. Tensor shapes are printed and
// written in PyTorch order (GGUF stores them innermost first).

void register_input(const io::gguf_file& g) {
  g_mapped.assign(1, {g.bytes(), g.file_size(), g.path().c_str()});
}

std::string gguf_type_label(std::uint32_t t) { return lowbit::ggml::type_name(t); }

int inspect_gguf(const std::string& path) {
  io::gguf_file g;
  if (auto s = io::gguf_file::open(path, g); !s) return fail(exit_input, s);
  register_input(g);
  report("%-52s %-14s %-18s %12s %8s  %s\n", "tensor", "format", "shape", "bytes", "bits", "scales");
  std::uint64_t total = 0;
  for (const auto& t : g.tensors()) {
    total += t.nbytes;
    const char* scales = t.type == 2 || t.type == 8 ? "1x32 f16 (in the block)" : t.type == 3 ? "1x32 f16 + f16 min (in the block)"
                         : t.type == 39                ? "1x32 e8m0 (in the block)"
                                                       : "-";
    report("%-52s %-14s %-18s %12" PRIu64 " %8.3f  %s\n", t.name.c_str(), ("gguf:" + gguf_type_label(t.type)).c_str(), shape_string(t.shape()).c_str(), t.nbytes,
           bits_per_value(t.nbytes, t.numel()), scales);
  }
  const io::gguf_value* arch = g.find("general.architecture");
  report("GGUF v%u, alignment %u, %zu key-value pairs%s%s, %s of tensor data\n", g.version(), g.alignment(), g.metadata().size(),
         arch != nullptr && arch->type == io::gguf_type::string && !arch->strings.empty() ? ", general.architecture " : "",
         arch != nullptr && arch->type == io::gguf_type::string && !arch->strings.empty() ? arch->strings[0].c_str() : "", human_bytes(static_cast<double>(total)).c_str());
  return exit_ok;
}

// The safetensors dtype a GGUF tensor is written as by dequantize: its own for the plain types,
// float32 for the block types (ggml's dequantization gives float32); false for a type lowbit does
// not decode.
bool gguf_dense_dtype(std::uint32_t t, io::st_dtype& d) {
  switch (t) {
    case 0: d = io::st_dtype::F32; return true;
    case 1: d = io::st_dtype::F16; return true;
    case 30: d = io::st_dtype::BF16; return true;
    case 24: d = io::st_dtype::I8; return true;
    case 25: d = io::st_dtype::I16; return true;
    case 26: d = io::st_dtype::I32; return true;
    case 27: d = io::st_dtype::I64; return true;
    case 28: d = io::st_dtype::F64; return true;
    default: {
      lowbit::ggml::type_traits tr{};
      if (!lowbit::ggml::traits_of(t, tr) || !tr.handled) return false;
      d = io::st_dtype::F32;
      return true;
    }
  }
}

// dequantize of a GGUF file: OUT/model.safetensors (or shards) with every tensor dense, names
// unchanged, one tensor in memory at a time.
int dequantize_gguf(const conversion_args& args) {
  output_folder folder;
  if (auto s = folder.open(args.pos[1]); !s) return fail(exit_output, s);
  io::gguf_file g;
  if (auto s = io::gguf_file::open(args.pos[0], g); !s) return fail(exit_input, s);
  register_input(g);
  std::vector<std::vector<io::tensor_entry>> groups;
  std::uint64_t total = 0;
  for (const auto& t : g.tensors()) {
    io::st_dtype d{};
    if (!gguf_dense_dtype(t.type, d))
      return fail(exit_input, lowbit::status::error(lowbit::errc::unsupported, "%s: tensor \"%s\" is ggml type %s, which lowbit does not decode (it decodes f32, f16, bf16, q8_0, q4_0, q4_1, mxfp4 and the integer types)",
                                                    g.path().c_str(), t.name.c_str(), gguf_type_label(t.type).c_str()));
    if (t.name.empty())
      return fail(exit_input, lowbit::status::error(lowbit::errc::invalid_argument, "%s: has a tensor named \"\" (empty), which a safetensors file cannot be written with", g.path().c_str()));
    groups.push_back({{t.name, d, t.shape()}});
    total += groups.back()[0].nbytes();
  }
  model_writer mw;
  mw.plan(folder, groups, args.max_shard_bytes);
  progress bar(total, !args.quiet);
  std::uint64_t done = 0;
  int count = 0;
  std::vector<float> buf;
  for (std::size_t i = 0; i < g.tensors().size(); ++i) {
    const io::gguf_tensor& t = g.tensors()[i];
    io::safetensors_writer* w = nullptr;
    std::size_t first = 0;
    lowbit::status s = mw.at(i, w, first);
    lowbit::ggml::type_traits tr{};
    if (s && lowbit::ggml::traits_of(t.type, tr) && tr.block > 1) {
      buf.resize(static_cast<std::size_t>(t.numel()));
      if (auto d = io::gguf_file::dequantize(t, buf.data(), static_cast<int>(args.threads)); !d) return bar.finish(), fail(exit_input, d);
      s = w->write(buf.data(), buf.size() * 4);
      ++count;
    } else if (s) {
      s = w->write(t.data, static_cast<std::size_t>(t.nbytes));
    }
    if (!s) return bar.finish(), fail(exit_output, s);
    done += groups[i][0].nbytes();
    bar.update(done, "writing " + t.name);
  }
  bar.finish();
  if (auto s = mw.finish(); !s) return fail(exit_output, s);
  if (int r = commit_output(folder)) return r;
  report("%d tensors dequantized; wrote %s\n", count, args.pos[1].c_str());
  return exit_ok;
}

// One tensor of convert's input: its name, PyTorch shape, and how to get its values.
struct convert_source {
  std::string name;
  std::vector<std::int64_t> shape;
  bool floating = true;              // values go through float32; else bytes passed through
  std::uint32_t raw_type = 0;        // ggml type of passed-through bytes (GGUF output)
  io::st_dtype raw_st = io::st_dtype::U8;  // their safetensors dtype (safetensors output)
  const std::uint8_t* raw = nullptr;
  std::uint64_t raw_bytes = 0;
  // Floating tensors: the safetensors dtype a safetensors output keeps the tensor in when it does
  // not quantize it (its own for dense tensors; what `lowbit dequantize` writes for quantized
  // ones: the quant_state's dtype, config.json's torch_dtype, or float32 for GGUF block types).
  io::st_dtype keep = io::st_dtype::F32;
};

// The ggml type of integer/float64 tensors passed through unchanged.
bool ggml_type_of_dense(io::st_dtype d, std::uint32_t& t) {
  switch (d) {
    case io::st_dtype::I8: t = 24; return true;
    case io::st_dtype::I16: t = 25; return true;
    case io::st_dtype::I32: t = 26; return true;
    case io::st_dtype::I64: t = 27; return true;
    case io::st_dtype::F64: t = 28; return true;
    default: return false;
  }
}

// out[j] = element k0 + j of a float32/float16/bfloat16 array, j < n, widened exactly
// (lowbit::f16_bits_to_float's rules; F16C's vcvtph2ps gives the same bits, NaNs quieted alike).
#if LOWBIT_TOOL_F16C
__attribute__((target("avx,f16c"))) void widen_f16_f16c(const std::uint8_t* b, std::size_t k0, std::size_t n, float* out) {
  b += 2 * k0;
  std::size_t j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(out + j, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2 * j))));
  for (; j < n; ++j) {
    std::uint16_t h;
    std::memcpy(&h, b + 2 * j, 2);
    out[j] = lowbit::f16_bits_to_float(h);
  }
}
#endif
void widen_to_f32(const std::uint8_t* b, lowbit::dtype dt, std::size_t k0, std::size_t n, float* out) {
  if (dt == lowbit::dtype::f32) {
    std::memcpy(out, b + 4 * k0, 4 * n);
  } else if (dt == lowbit::dtype::bf16) {
    b += 2 * k0;
    for (std::size_t j = 0; j < n; ++j) {  // a shift: the compiler vectorizes it
      std::uint16_t h;
      std::memcpy(&h, b + 2 * j, 2);
      const std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
      std::memcpy(&out[j], &u, 4);
    }
  } else {
#if LOWBIT_TOOL_F16C
    // the engine's AVX2 check includes F16C and the OS's YMM state (clang 14 does not know
    // __builtin_cpu_supports("f16c"))
    if (lowbit::host::avx2::available()) return widen_f16_f16c(b, k0, n, out);
#endif
    b += 2 * k0;
    for (std::size_t j = 0; j < n; ++j) {
      std::uint16_t h;
      std::memcpy(&h, b + 2 * j, 2);
      out[j] = lowbit::f16_bits_to_float(h);
    }
  }
}

// The error figures of a quantized tensor against its input.
struct error_figures {
  double max_abs = 0, mean_abs = 0, sqnr_db = 0;
};

// Sums of one chunk of a tensor's error: float32 sums in 16 independent lanes over spans of 2048
// elements (the compiler vectorizes the lanes; one running sum could not be), then double across
// spans and lanes, in a fixed order: the figures are a function of the input alone
// (host::measure_error's scheme, within 1e-5 of the exact sums).
struct error_sums {
  double se = 0, sx = 0, sabs = 0, maxe = 0;
  // Adds x[0, m) (the input) against y[0, m) (its dequantization).
  void add(const float* xc, const float* yc, std::int64_t m) {
    constexpr int L = 16;
    constexpr std::int64_t span = 2048;
    for (std::int64_t p0 = 0; p0 < m; p0 += span) {
      const std::int64_t p1 = std::min(m, p0 + span);
      float fe[L] = {}, fx[L] = {}, fabs_[L] = {}, fmax[L] = {};
      std::int64_t k = p0;
      for (; k + L <= p1; k += L)
        for (int j = 0; j < L; ++j) {
          const float xv = xc[k + j], d = xv - yc[k + j], ad = std::fabs(d);
          fe[j] += d * d;
          fx[j] += xv * xv;
          fabs_[j] += ad;
          fmax[j] = fmax[j] < ad ? ad : fmax[j];
        }
      for (int j = 0; k < p1; ++k, ++j) {
        const float xv = xc[k], d = xv - yc[k], ad = std::fabs(d);
        fe[j] += d * d;
        fx[j] += xv * xv;
        fabs_[j] += ad;
        fmax[j] = fmax[j] < ad ? ad : fmax[j];
      }
      for (int j = 0; j < L; ++j) se += fe[j], sx += fx[j], sabs += fabs_[j], maxe = std::max(maxe, static_cast<double>(fmax[j]));
    }
  }
  // The figures of a tensor of n elements from its chunks' sums, added in chunk order.
  static error_figures total(const std::vector<error_sums>& part, std::int64_t n) {
    error_sums t;
    for (const error_sums& s : part) t.se += s.se, t.sx += s.sx, t.sabs += s.sabs, t.maxe = std::max(t.maxe, s.maxe);
    error_figures e;
    e.max_abs = t.maxe;
    e.mean_abs = n == 0 ? 0.0 : t.sabs / static_cast<double>(n);
    e.sqnr_db = t.se > 0 ? 10.0 * std::log10(t.sx / t.se) : std::numeric_limits<double>::infinity();
    return e;
  }
};

// Chunk size of the error figures (and of the GGUF quantizer): a multiple of every ggml block
// size (32, 256).
constexpr std::int64_t error_chunk = std::int64_t{1} << 14;

// Quantizes one tensor of n float values to GGUF type ty (a block type or F16/BF16/F32) into q,
// in chunks of a fixed size, each on one thread from input to codes while it is in cache: the
// values (`dense` widened from float16/bfloat16/float32 bytes, else read from `x`), the quantized
// bytes and, with `err`, the chunk's dequantized values against its input. The chunks' sums are
// added in chunk order, so the figures do not depend on the thread count; the bytes are ggml's
// whatever the chunking (blocks are independent). NaN/Inf in a block type's input: the error
// names the first such element of the tensor, as ggml::quantize's does, and q is partial (the
// caller discards the output).
lowbit::status quantize_gguf_tensor(lowbit::ggml::type ty, const std::uint8_t* dense, lowbit::dtype dense_dt, const float* x, std::int64_t n,
                                    std::uint8_t* q, int threads, error_figures* err) {
  const lowbit::ggml::type_traits tr = lowbit::ggml::traits(ty);
  constexpr std::int64_t chunk = error_chunk;
  const std::int64_t chunks = (n + chunk - 1) / chunk;
  std::vector<error_sums> part(err != nullptr ? static_cast<std::size_t>(chunks) : 0);
  std::mutex error_mutex;
  std::int64_t bad_index = -1;  // the first non-finite element found
  lowbit::status other_error;
  std::atomic<bool> failed{false};
  lowbit::host::parallel_for(chunks, 1, 1, threads, [&](std::int64_t c0, std::int64_t c1) {
    std::vector<float> xb(dense != nullptr ? static_cast<std::size_t>(chunk) : 0), yb(err != nullptr ? static_cast<std::size_t>(chunk) : 0);
    for (std::int64_t c = c0; c < c1; ++c) {
      const std::int64_t k0 = c * chunk, m = std::min(chunk, n - k0);
      const float* xc = x + k0;
      if (dense != nullptr) {
        widen_to_f32(dense, dense_dt, static_cast<std::size_t>(k0), static_cast<std::size_t>(m), xb.data());
        xc = xb.data();
      }
      std::uint8_t* qc = q + static_cast<std::size_t>(k0 / tr.block) * static_cast<std::size_t>(tr.bytes);
      if (auto e = lowbit::ggml::quantize(ty, xc, m, qc, 1); !e) {
        std::lock_guard<std::mutex> lock(error_mutex);
        failed = true;
        if (e.code() == lowbit::errc::non_finite) {
          std::int64_t j = 0;
          while (j < m && std::isfinite(xc[j])) ++j;
          if (bad_index < 0 || k0 + j < bad_index) bad_index = k0 + j;
        } else if (other_error.ok()) {
          other_error = e;
        }
        return;
      }
      if (err == nullptr) continue;
      if (auto e = lowbit::ggml::dequantize(ty, qc, m, yb.data(), 1); !e) {
        std::lock_guard<std::mutex> lock(error_mutex);
        failed = true;
        if (other_error.ok()) other_error = e;
        return;
      }
      part[static_cast<std::size_t>(c)].add(xc, yb.data(), m);
    }
  });
  if (failed) {
    if (bad_index >= 0) {
      float v = 0;
      if (dense != nullptr) widen_to_f32(dense, dense_dt, static_cast<std::size_t>(bad_index), 1, &v);
      else v = x[bad_index];
      return lowbit::status::error(lowbit::errc::non_finite, "ggml::quantize: x[%lld] is %s; ggml's %s result for it is undefined", static_cast<long long>(bad_index),
                                   std::isnan(v) ? "NaN" : "Inf", tr.name);
    }
    return other_error;
  }
  if (err != nullptr) *err = error_sums::total(part, n);
  return {};
}

// convert's input, any layout lowbit reads: a GGUF file, or a safetensors checkpoint with dense
// tensors, bitsandbytes weights and transformers' fine-grained FP8 weights (quantized weights are
// dequantized, as `lowbit dequantize` would).
struct convert_input {
  bool from_gguf = false;
  io::gguf_file g;
  io::checkpoint in;
  std::string config_text;
  std::vector<io::bnb_member> members;
  std::vector<ext_kind> kind;
  layout_input li;
  lowbit::dtype int8_dtype = lowbit::dtype::f32, ext_dtype = lowbit::dtype::bf16;
  std::vector<convert_source> src;

  // Opens `path` and lists its tensors (headers only). `gguf_out`: the output is GGUF, so tensors
  // without a float type must have a ggml type. Returns an exit code, the error printed.
  int open(const std::string& path, bool gguf_out) {
    from_gguf = io::is_gguf_file(path);
    if (from_gguf) {
      if (auto s = io::gguf_file::open(path, g); !s) return fail(exit_input, s);
      register_input(g);
      for (const auto& t : g.tensors()) {
        convert_source c{t.name, t.shape()};
        lowbit::ggml::type_traits tr{};
        io::st_dtype d{};
        if (lowbit::ggml::traits_of(t.type, tr) && tr.handled) {
          c.floating = true;
          c.keep = gguf_dense_dtype(t.type, d) ? d : io::st_dtype::F32;
        } else if (t.type >= 24 && t.type <= 28 && gguf_dense_dtype(t.type, d)) {
          c.floating = false, c.raw_type = t.type, c.raw_st = d, c.raw = t.data, c.raw_bytes = t.nbytes;
        } else {
          return fail(exit_input, lowbit::status::error(lowbit::errc::unsupported, "%s: tensor \"%s\" is ggml type %s, which lowbit does not decode", g.path().c_str(),
                                                        t.name.c_str(), gguf_type_label(t.type).c_str()));
        }
        src.push_back(c);
      }
      return exit_ok;
    }
    if (auto s = io::checkpoint::open(path, in); !s) return fail(exit_input, s);
    register_input(in);
    if (int r = read_base_config(in, config_text, &li)) return r;
    nlohmann::json config;
    if (!config_text.empty() && !io::parse_json_text(config_text, in.folder() + "/config.json", config)) config = nullptr;
    int8_dtype = io::recorded_dtype(config, lowbit::dtype::f32);
    ext_dtype = io::recorded_dtype(config, lowbit::dtype::bf16);
    io::bnb_members(in, members);
    layout_members(in, li, members, kind);
    for (std::size_t i = 0; i < members.size(); ++i) {
      const io::bnb_member& m = members[i];
      convert_source c{m.name, {}};
      if (kind[i] != ext_kind::none) {
        ext_facts f;
        if (auto s = ext_weight_facts(in, li, m.name, kind[i], f); !s) return fail(exit_input, s);
        c.shape = f.shape;
        c.keep = io::to_st_dtype(ext_dtype);
      } else if (m.what != io::bnb_member::kind::dense) {
        io::bnb_layout l;
        if (auto s = member_layout(in, m, l, int8_dtype); !s) return fail(exit_input, s);
        c.shape = l.shape;
        c.keep = io::to_st_dtype(l.source);
      } else {
        const io::tensor_info& t = *in.find(m.name).tensor;
        c.shape = t.shape;
        lowbit::dtype dt{};
        if (io::to_dtype(t.dtype, dt)) {
          c.keep = t.dtype;
        } else {
          if (gguf_out && !ggml_type_of_dense(t.dtype, c.raw_type))
            return fail(exit_input, lowbit::status::error(lowbit::errc::unsupported, "%s: tensor \"%s\" is %s, which GGUF has no type for", in.path().c_str(), m.name.c_str(),
                                                          io::info(t.dtype).name));
          c.floating = false, c.raw_st = t.dtype, c.raw = in.find(m.name).file->data(t), c.raw_bytes = t.nbytes();
        }
      }
      src.push_back(c);
    }
    return exit_ok;
  }

  // The values of floating tensor i: float16/bfloat16/float32 bytes in the input mapping
  // (`dense`, of dtype `dense_dt`), or else decoded into `x` as float32 (`dense` null).
  lowbit::status values(std::size_t i, int threads, std::vector<float>& x, const std::uint8_t*& dense, lowbit::dtype& dense_dt) {
    dense = nullptr;
    const std::int64_t n = numel(src[i].shape);
    if (from_gguf) {
      lowbit::ggml::type_traits tr{};
      const io::gguf_tensor& t = g.tensors()[i];
      if (lowbit::ggml::traits_of(t.type, tr) && tr.block == 1 && (t.type == 0 || t.type == 1 || t.type == 30)) {
        dense = t.data;
        dense_dt = t.type == 0 ? lowbit::dtype::f32 : t.type == 1 ? lowbit::dtype::f16 : lowbit::dtype::bf16;
        return {};
      }
      x.resize(static_cast<std::size_t>(n));
      return io::gguf_file::dequantize(t, x.data(), threads);
    }
    const io::bnb_member& m = members[i];
    if (m.what == io::bnb_member::kind::dense && kind[i] == ext_kind::none) {
      const auto loc = in.find(m.name);
      io::to_dtype(loc.tensor->dtype, dense_dt);
      dense = loc.file->data(*loc.tensor);
      return {};
    }
    x.resize(static_cast<std::size_t>(n));
    const lowbit::host::options opt{threads, false, true};
    if (kind[i] != ext_kind::none) return ext_weight_values(in, li, m.name, kind[i], lowbit::dtype::f32, reinterpret_cast<std::uint8_t*>(x.data()), threads);
    lowbit::quant_tensor qt;
    LOWBIT_TRY(m.what == io::bnb_member::kind::bnb_4bit ? io::load_bnb_4bit(in, m.name, qt) : io::load_bnb_int8(in, m.name, qt, int8_dtype));
    return lowbit::dequantize(qt, x.data(), lowbit::dtype::f32, opt);
  }

  static std::int64_t numel(const std::vector<std::int64_t>& shape) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// ---- convert to a safetensors layout --------------------------------------------------------------
// A quantized weight of a safetensors output, ready to be written: its tensors (real shapes,
// each at most the planned one) and how to write their bytes and dequantize it.
struct encoded_weight {
  virtual ~encoded_weight() = default;
  std::vector<io::tensor_entry> entries;
  virtual lowbit::status write(io::safetensors_writer& w) const = 0;
  virtual lowbit::status dequantize(float* y, int threads) const = 0;
};

// A quantized weight held as lowbit's quant_tensor or scaled_tensor `Q`, written by `Write`.
template <class Q, lowbit::status (*Write)(io::safetensors_writer&, const Q&)>
struct held_weight final : encoded_weight {
  Q q;
  lowbit::status write(io::safetensors_writer& w) const override { return Write(w, q); }
  lowbit::status dequantize(float* y, int threads) const override { return lowbit::dequantize(q, y, lowbit::dtype::f32, lowbit::host::options{threads, false, true}); }
};

// A safetensors layout convert writes a checkpoint's weights in.
struct st_layout {
  virtual ~st_layout() = default;
  virtual const char* label() const = 0;  // the format column of the report
  // Writes OUT/config.json: IN's config with this layout's quantization_config; `skip`: the
  // patterns of the weights left unquantized.
  virtual int write_config(output_folder& folder, const std::string& config_text, const std::vector<std::string>& skip) const = 0;
  // The entries of weight `name` (shape `shape`, quantized from dtype `dt`) at their largest.
  virtual lowbit::status plan(const std::string& name, const std::vector<std::int64_t>& shape, lowbit::dtype dt, std::vector<io::tensor_entry>& out) const = 0;
  // True if the float tensor `name` of `shape` is one this layout quantizes (before the skip
  // patterns): 2-D weights, as quantize and transformers' quantizers pick them.
  virtual bool takes(const std::string& name, const std::vector<std::int64_t>& shape) const { return shape.size() == 2 && ends_with(name, "weight"); }
  // Quantizes the weight (`data` of dtype `dt`, row-major `shape`).
  virtual lowbit::status encode(const std::string& name, const std::vector<std::int64_t>& shape, const void* data, lowbit::dtype dt, int threads,
                                std::unique_ptr<encoded_weight>& out) const = 0;
};

// bitsandbytes' layout (nf4 / fp4 with block 64 and double quantization, or LLM.int8), as
// `lowbit quantize` writes it.
struct bnb_st_layout final : st_layout {
  lowbit::format fmt;
  explicit bnb_st_layout(lowbit::format f) : fmt(f) {}
  const char* label() const override { return fmt == lowbit::format::nf4 ? "nf4+dq" : fmt == lowbit::format::bnb_fp4 ? "fp4+dq" : "int8"; }
  lowbit::quantize_params params(int threads) const {
    lowbit::quantize_params p;
    p.fmt = fmt;
    p.gran = fmt == lowbit::format::int8_absmax ? lowbit::granularity::per_row() : lowbit::granularity::per_block(64);
    p.double_quant = fmt != lowbit::format::int8_absmax;
    p.options.threads = threads;
    return p;
  }
  int write_config(output_folder& folder, const std::string& config_text, const std::vector<std::string>& skip) const override {
    io::bnb_quantization_config qc;
    qc.load_in_4bit = fmt != lowbit::format::int8_absmax;
    qc.load_in_8bit = !qc.load_in_4bit;
    qc.bnb_4bit_quant_type = fmt == lowbit::format::bnb_fp4 ? "fp4" : "nf4";
    qc.bnb_4bit_use_double_quant = qc.load_in_4bit;
    qc.has_skip_modules = true;
    qc.llm_int8_skip_modules = skip;
    return write_config_json(folder, config_text, &qc);
  }
  lowbit::status plan(const std::string& name, const std::vector<std::int64_t>& shape, lowbit::dtype dt, std::vector<io::tensor_entry>& out) const override {
    const lowbit::quantize_params p = params(1);
    io::bnb_layout l;
    l.fmt = fmt;
    l.source = fmt == lowbit::format::int8_absmax ? lowbit::dtype::f16 : dt;
    l.shape = shape;
    l.double_quant = p.double_quant;
    LOWBIT_TRY(lowbit::resolve_block_size(p.gran, shape, l.block_size));
    return io::bnb_entries_largest(name, l, out);
  }
  using weight = held_weight<lowbit::quant_tensor, io::write_bnb>;
  lowbit::status encode(const std::string& name, const std::vector<std::int64_t>& shape, const void* data, lowbit::dtype dt, int threads,
                        std::unique_ptr<encoded_weight>& out) const override {
    auto e = std::make_unique<weight>();
    std::vector<lowbit::f16> half;
    if (fmt == lowbit::format::int8_absmax && dt != lowbit::dtype::f16) {  // bitsandbytes quantizes float16 weights
      half.resize(static_cast<std::size_t>(convert_input::numel(shape)));
      std::vector<float> row(4096);
      for (std::size_t k0 = 0; k0 < half.size(); k0 += row.size()) {
        const std::size_t m = std::min(row.size(), half.size() - k0);
        widen_to_f32(static_cast<const std::uint8_t*>(data), dt, k0, m, row.data());
        for (std::size_t j = 0; j < m; ++j) half[k0 + j] = lowbit::from_float<lowbit::f16>(row[j]);
      }
      data = half.data();
      dt = lowbit::dtype::f16;
    }
    LOWBIT_TRY(lowbit::quantize(data, dt, shape, params(threads), e->q));
    LOWBIT_TRY(io::bnb_entries(name, e->q, e->entries));
    out = std::move(e);
    return {};
  }
};

// transformers' fine-grained FP8 (quant_method "fp8", 128 x 128 tiles; docs/fp8-block.md).
struct fp8_block_st_layout final : st_layout {
  io::fp8_block_config cfg;
  const char* label() const override { return "fp8_e4m3_block"; }
  int write_config(output_folder& folder, const std::string& config_text, const std::vector<std::string>& skip) const override {
    io::fp8_block_config c = cfg;
    c.modules_to_not_convert = skip;
    c.has_modules_to_not_convert = true;
    if (auto s = io::write_fp8_block_config(folder.file("config.json"), config_text, c); !s) return fail(exit_output, s);
    return exit_ok;
  }
  lowbit::status plan(const std::string& name, const std::vector<std::int64_t>& shape, lowbit::dtype, std::vector<io::tensor_entry>& out) const override {
    out.push_back({name, io::st_dtype::F8_E4M3, shape});
    out.push_back({io::fp8_scale_name(name), io::st_dtype::F32, {(shape[0] + cfg.block_rows - 1) / cfg.block_rows, (shape[1] + cfg.block_cols - 1) / cfg.block_cols}});
    return {};
  }
  using weight = held_weight<lowbit::scaled_tensor, io::write_fp8_block>;
  lowbit::status encode(const std::string& name, const std::vector<std::int64_t>& shape, const void* data, lowbit::dtype dt, int threads,
                        std::unique_ptr<encoded_weight>& out) const override {
    auto e = std::make_unique<weight>();
    LOWBIT_TRY(io::quantize_fp8_block(data, dt, shape, cfg, e->q, lowbit::host::options{threads, false, true}));
    LOWBIT_TRY(io::fp8_block_entries(name, e->q, e->entries));
    out = std::move(e);
    return {};
  }
};

// gpt-oss MXFP4 (transformers' quant_method "mxfp4"; docs/mxfp4-gptoss.md): the 3-D expert stacks,
// dense as transformers' parameters [E, K, rows], stored as X_blocks / X_scales of [E, rows, K]
// (blocks of 32 along K, the rceil scale rule of gpt-oss's own quantizer). gpt-oss quantizes
// nothing else; 2-D weights stay dense.
struct mxfp4_st_layout final : st_layout {
  const char* label() const override { return "mxfp4"; }
  bool takes(const std::string&, const std::vector<std::int64_t>& shape) const override { return shape.size() == 3 && shape[1] > 0 && shape[1] % 32 == 0; }
  int write_config(output_folder& folder, const std::string& config_text, const std::vector<std::string>& skip) const override {
    io::mxfp4_config c;
    c.modules_to_not_convert = skip;
    c.has_modules_to_not_convert = true;
    if (auto s = io::write_mxfp4_config(folder.file("config.json"), config_text, c); !s) return fail(exit_output, s);
    return exit_ok;
  }
  lowbit::status plan(const std::string& name, const std::vector<std::int64_t>& shape, lowbit::dtype, std::vector<io::tensor_entry>& out) const override {
    out.push_back({io::mxfp4_blocks_name(name), io::st_dtype::U8, {shape[0], shape[2], shape[1] / 32, 16}});
    out.push_back({io::mxfp4_scales_name(name), io::st_dtype::U8, {shape[0], shape[2], shape[1] / 32}});
    return {};
  }
  struct weight final : encoded_weight {
    lowbit::scaled_tensor q;  // [E, rows, K]
    lowbit::status write(io::safetensors_writer& w) const override { return io::write_mxfp4(w, q); }
    lowbit::status dequantize(float* y, int threads) const override {
      std::vector<float> f(static_cast<std::size_t>(q.numel()));
      LOWBIT_TRY(lowbit::dequantize(q, f.data(), lowbit::dtype::f32, lowbit::host::options{threads, false, true}));
      transpose_last2(reinterpret_cast<const std::uint8_t*>(f.data()), q.shape()[0], q.shape()[1], q.shape()[2], 4, reinterpret_cast<std::uint8_t*>(y));
      return {};
    }
  };
  lowbit::status encode(const std::string& name, const std::vector<std::int64_t>& shape, const void* data, lowbit::dtype dt, int threads,
                        std::unique_ptr<encoded_weight>& out) const override {
    const std::size_t size = static_cast<std::size_t>(lowbit::dtype_size(dt));
    std::vector<std::uint8_t> rows_major(static_cast<std::size_t>(convert_input::numel(shape)) * size);
    transpose_last2(static_cast<const std::uint8_t*>(data), shape[0], shape[1], shape[2], size, rows_major.data());
    auto e = std::make_unique<weight>();
    io::mxfp4_quantize_options o;
    o.engine = lowbit::host::options{threads, false, true};
    LOWBIT_TRY(io::quantize_mxfp4(rows_major.data(), dt, {shape[0], shape[2], shape[1]}, e->q, o));
    LOWBIT_TRY(io::mxfp4_entries(name, e->q, e->entries));
    out = std::move(e);
    return {};
  }
};

// compressed-tensors (llm-compressor; docs/compressed-tensors.md): one config group "group_0"
// targeting "Linear" with these weight arguments in `format`; the skip patterns become `ignore`
// regexes ("re:.*PATTERN", a substring as re.match reads it).
struct ct_st_layout final : st_layout {
  std::string format, name;
  io::ct_quant_args args;
  ct_st_layout(std::string f, std::string label, io::ct_quant_args a) : format(std::move(f)), name(std::move(label)), args(std::move(a)) {}
  const char* label() const override { return name.c_str(); }
  bool takes(const std::string& n, const std::vector<std::int64_t>& shape) const override {
    // whole groups only: compressed-tensors' own quantizer refuses a partial one (so do its loaders)
    const std::int64_t g = format == "nvfp4-pack-quantized" ? 16 : args.strategy == "group" ? args.group_size : 1;
    return shape.size() == 2 && ends_with(n, ".weight") && shape[1] % g == 0;
  }
  int write_config(output_folder& folder, const std::string& config_text, const std::vector<std::string>& skip) const override {
    io::ct_config c;
    c.format = format;
    io::ct_scheme sch;
    sch.targets = {"Linear"};
    sch.has_weights = true;
    sch.weights = args;
    c.config_groups.push_back({"group_0", sch});
    for (const auto& pat : skip) {
      std::string re = "re:.*";
      for (char ch : pat) {
        if (std::strchr("\\^$.|?*+()[]{}", ch) != nullptr) re += '\\';
        re += ch;
      }
      c.ignore.push_back(re);
    }
    if (auto s = io::write_ct_config(folder.file("config.json"), config_text, c); !s) return fail(exit_output, s);
    return exit_ok;
  }
  lowbit::status plan(const std::string& n, const std::vector<std::int64_t>& shape, lowbit::dtype, std::vector<io::tensor_entry>& out) const override {
    const std::string x = n.substr(0, n.size() - 7);  // "X.weight" -> "X"
    const std::int64_t N = shape[0], K = shape[1];
    if (format == "float-quantized") {
      out.push_back({n, io::st_dtype::F8_E4M3, shape});
      out.push_back({x + ".weight_scale", io::st_dtype::F32, {N, 1}});
    } else if (format == "nvfp4-pack-quantized") {
      out.push_back({x + ".weight_packed", io::st_dtype::U8, {N, K / 2}});
      out.push_back({x + ".weight_scale", io::st_dtype::F8_E4M3, {N, K / 16}});
      out.push_back({x + ".weight_global_scale", io::st_dtype::F32, {1}});
    } else {
      const int pf = 32 / args.num_bits;
      out.push_back({x + ".weight_packed", io::st_dtype::I32, {N, (K + pf - 1) / pf}});
      out.push_back({x + ".weight_scale", io::st_dtype::BF16, {N, args.strategy == "group" ? (K + args.group_size - 1) / args.group_size : 1}});
      out.push_back({x + ".weight_shape", io::st_dtype::I64, {2}});
    }
    return {};
  }
  struct int_weight final : encoded_weight {
    io::ct_int_weight w;
    io::ct_encoded e;
    lowbit::status write(io::safetensors_writer& wr) const override { return io::write_ct_encoded(wr, e); }
    lowbit::status dequantize(float* y, int) const override {
      std::vector<float> v;
      LOWBIT_TRY(io::dequantize(w, v));
      std::memcpy(y, v.data(), v.size() * 4);
      return {};
    }
  };
  lowbit::status encode(const std::string& n, const std::vector<std::int64_t>& shape, const void* data, lowbit::dtype dt, int threads,
                        std::unique_ptr<encoded_weight>& out) const override {
    const std::string x = n.substr(0, n.size() - 7);
    const lowbit::host::options opt{threads, false, true};
    if (format == "nvfp4-pack-quantized") {
      auto e = std::make_unique<held_weight<lowbit::scaled_tensor, io::write_ct_nvfp4>>();
      LOWBIT_TRY(io::quantize_ct_nvfp4(data, dt, shape, args, e->q, opt));
      LOWBIT_TRY(io::ct_nvfp4_entries(x, e->q, e->entries));
      out = std::move(e);
      return {};
    }
    if (format == "float-quantized") {
      auto e = std::make_unique<held_weight<lowbit::scaled_tensor, io::write_ct_fp8>>();
      LOWBIT_TRY(io::quantize_ct_fp8(data, dt, shape, args, e->q, opt));
      LOWBIT_TRY(io::ct_fp8_entries(x, e->q, args, e->entries));
      out = std::move(e);
      return {};
    }
    std::vector<float> f;
    const float* v = static_cast<const float*>(data);
    if (dt != lowbit::dtype::f32) {  // compressed-tensors' integer rule runs on float32 values
      f.resize(static_cast<std::size_t>(shape[0] * shape[1]));
      widen_to_f32(static_cast<const std::uint8_t*>(data), dt, 0, f.size(), f.data());
      v = f.data();
    }
    auto e = std::make_unique<int_weight>();
    LOWBIT_TRY(io::quantize_ct_int(v, shape, args, io::st_dtype::BF16, e->w));
    LOWBIT_TRY(io::ct_packed_entries(x, e->w, e->e));
    e->entries = e->e.entries;
    out = std::move(e);
    return {};
  }
};

// A tensor of a safetensors output on its way to the file: a quantized weight, converted dense
// bytes, or nothing (bytes passed through from the input mapping).
struct st_stage {
  std::size_t tensor = 0;
  std::shared_ptr<const encoded_weight> q;
  std::unique_ptr<std::uint8_t[]> bytes;
};

// What convert does with each input tensor for a safetensors output.
struct st_planned {
  enum class action { quantize, cast, pass } what = action::pass;
  io::st_dtype dtype = io::st_dtype::F32;  // cast: the output dtype
  std::vector<io::tensor_entry> entries;
};

// out = the float32 values x[0, n) rounded to `d` (F32, F16 or BF16: round to nearest even).
void narrow_from_f32(const float* x, std::int64_t n, io::st_dtype d, std::uint8_t* out) {
  if (d == io::st_dtype::F32) return std::memcpy(out, x, static_cast<std::size_t>(n) * 4), void();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint16_t h = d == io::st_dtype::F16 ? lowbit::float_to_f16_bits(x[i]) : lowbit::float_to_bf16_bits(x[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}

// The error figures of a dequantized tensor y against its input (dense bytes or x), with the
// GGUF path's chunks and sums (error_sums): independent of `threads`.
error_figures measure_tensor(const std::uint8_t* dense, lowbit::dtype dense_dt, const float* x, const float* y, std::int64_t n, int threads) {
  const std::int64_t chunks = (n + error_chunk - 1) / error_chunk;
  std::vector<error_sums> part(static_cast<std::size_t>(chunks));
  lowbit::host::parallel_for(chunks, 1, 1, threads, [&](std::int64_t c0, std::int64_t c1) {
    std::vector<float> xb(dense != nullptr ? static_cast<std::size_t>(error_chunk) : 0);
    for (std::int64_t c = c0; c < c1; ++c) {
      const std::int64_t k0 = c * error_chunk, m = std::min(error_chunk, n - k0);
      const float* xc = x + k0;
      if (dense != nullptr) widen_to_f32(dense, dense_dt, static_cast<std::size_t>(k0), static_cast<std::size_t>(m), xb.data()), xc = xb.data();
      part[static_cast<std::size_t>(c)].add(xc, y + k0, m);
    }
  });
  return error_sums::total(part, n);
}

// convert to a safetensors output: weights (2-D float tensors whose name ends in "weight" and
// contains no skip pattern) in `layout`, or, with `layout` null, every float tensor cast to
// `cast_to`; other float tensors in their `keep` dtype; other tensors passed through.
int convert_safetensors(const conversion_args& args, convert_input& ci, output_folder& folder, const st_layout* layout, io::st_dtype cast_to,
                        const std::vector<std::string>& skip, bool with_report) {
  const int threads = static_cast<int>(args.threads);
  std::vector<st_planned> plan(ci.src.size());
  std::vector<io::tensor_entry> entries;
  std::vector<std::vector<io::tensor_entry>> groups;
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < ci.src.size(); ++i) {
    const convert_source& c = ci.src[i];
    st_planned& t = plan[i];
    bool quantize = layout != nullptr && c.floating && layout->takes(c.name, c.shape);
    for (const auto& pat : skip) quantize = quantize && c.name.find(pat) == std::string::npos;
    if (quantize) {
      t.what = st_planned::action::quantize;
      lowbit::dtype dt = lowbit::dtype::f32;
      io::to_dtype(c.keep, dt);
      if (auto s = layout->plan(c.name, c.shape, dt, t.entries); !s) return fail(exit_quantize, s);
    } else if (c.floating) {
      t.what = st_planned::action::cast;
      t.dtype = layout == nullptr ? cast_to : c.keep;
      t.entries.push_back({c.name, t.dtype, c.shape});
    } else {
      t.entries.push_back({c.name, c.raw_st, c.shape});
    }
    for (const auto& e : t.entries) total += e.nbytes();
    entries.insert(entries.end(), t.entries.begin(), t.entries.end());
    groups.push_back(t.entries);
  }
  if (int r = check_output_names(ci.in, entries)) return r;
  if (ci.from_gguf) {
    nlohmann::json j = nlohmann::json::object();
    const io::gguf_value* arch = ci.g.find("general.architecture");
    if (arch != nullptr && arch->type == io::gguf_type::string && !arch->strings.empty()) j["model_type"] = arch->strings[0];
    ci.config_text = j.dump();
  }
  if (layout != nullptr) {
    if (int r = layout->write_config(folder, ci.config_text, skip)) return r;
  } else if (int r = write_config_json(folder, ci.config_text, nullptr)) {
    return r;
  }
  model_writer mw;
  mw.plan(folder, groups, args.max_shard_bytes);

  std::mutex print_mutex;
  progress bar(total, !args.quiet);
  handoff<st_stage> slot;
  int consumed = exit_ok;
  std::thread writer([&] {
    std::uint64_t done = 0;
    while (st_stage* st = slot.take()) {
      const st_planned& t = plan[st->tensor];
      io::safetensors_writer* w = nullptr;
      std::size_t first = 0;
      lowbit::status s = mw.at(st->tensor, w, first);
      if (s && st->q) {
        for (std::size_t k = 0; s && k < st->q->entries.size(); ++k) s = w->reshape(first + k, st->q->entries[k].shape);
        if (s) s = st->q->write(*w);
      } else if (s && st->bytes) {
        s = w->write(st->bytes.get(), static_cast<std::size_t>(t.entries[0].nbytes()));
      } else if (s) {
        const convert_source& c = ci.src[st->tensor];
        const io::tensor_info* ti = c.raw == nullptr && !ci.from_gguf ? ci.in.find(c.name).tensor : nullptr;
        s = c.raw != nullptr ? w->write(c.raw, static_cast<std::size_t>(c.raw_bytes))
            : ti != nullptr  ? w->write(ci.in.find(c.name).file->data(*ti), static_cast<std::size_t>(ti->nbytes()))
                             : w->write(ci.g.tensors()[st->tensor].data, static_cast<std::size_t>(ci.g.tensors()[st->tensor].nbytes));
      }
      if (!s) {
        slot.stop();
        std::lock_guard<std::mutex> lock(print_mutex);
        bar.finish();
        consumed = fail(exit_output, s);
        return;
      }
      for (const auto& e : t.entries) done += e.nbytes();
      std::lock_guard<std::mutex> lock(print_mutex);
      bar.update(done, "writing " + ci.src[st->tensor].name);
      slot.done();
    }
  });
  int produced = exit_ok, count = 0;
  std::vector<float> x, y;
  for (std::size_t i = 0; i < ci.src.size() && produced == exit_ok; ++i) {
    const convert_source& c = ci.src[i];
    const st_planned& t = plan[i];
    st_stage st;
    st.tensor = i;
    const std::uint8_t* dense = nullptr;
    lowbit::dtype dense_dt = lowbit::dtype::f32;
    if (t.what != st_planned::action::pass) {
      if (auto s = ci.values(i, threads, x, dense, dense_dt); !s) {
        produced = fail(exit_input, s);
        break;
      }
    }
    const std::int64_t n = convert_input::numel(c.shape);
    std::shared_ptr<const encoded_weight> q;
    if (t.what == st_planned::action::quantize) {
      std::unique_ptr<encoded_weight> e;
      if (auto s = layout->encode(c.name, c.shape, dense != nullptr ? static_cast<const void*>(dense) : x.data(), dense != nullptr ? dense_dt : lowbit::dtype::f32,
                                  threads, e); !s) {
        std::lock_guard<std::mutex> lock(print_mutex);
        bar.finish();
        std::fprintf(stderr, "lowbit: tensor \"%s\": %s\n", c.name.c_str(), s.message());
        produced = exit_quantize;
        break;
      }
      bool same = e->entries.size() == t.entries.size();
      for (std::size_t k = 0; same && k < e->entries.size(); ++k) same = e->entries[k].name == t.entries[k].name && e->entries[k].dtype == t.entries[k].dtype;
      if (!same) {
        produced = fail(exit_quantize, lowbit::status::error(lowbit::errc::invalid_argument, "internal error: tensor \"%s\": quantized into other tensors than planned", c.name.c_str()));
        break;
      }
      st.q = q = std::move(e);
      ++count;
    } else if (t.what == st_planned::action::cast && !(dense != nullptr && io::to_st_dtype(dense_dt) == t.dtype)) {
      const std::uint64_t nb = t.entries[0].nbytes();
      st.bytes.reset(new (std::nothrow) std::uint8_t[static_cast<std::size_t>(nb) + 1]);
      if (!st.bytes) {
        produced = fail(exit_input, lowbit::status::error(lowbit::errc::out_of_memory, "tensor \"%s\": cannot allocate %llu bytes", c.name.c_str(), static_cast<unsigned long long>(nb)));
        break;
      }
      if (dense != nullptr) {  // float16 <-> bfloat16 / float32 through float32, in rows of 4096
        std::vector<float> row(4096);
        for (std::int64_t k0 = 0; k0 < n; k0 += 4096) {
          const std::int64_t m = std::min<std::int64_t>(4096, n - k0);
          widen_to_f32(dense, dense_dt, static_cast<std::size_t>(k0), static_cast<std::size_t>(m), row.data());
          narrow_from_f32(row.data(), m, t.dtype, st.bytes.get() + k0 * io::info(t.dtype).size);
        }
      } else {
        narrow_from_f32(x.data(), n, t.dtype, st.bytes.get());
      }
    }
    // (dense bytes already in the output dtype are written from the input mapping)
    if (!slot.put(std::move(st))) break;  // the writer failed (its message is printed)
    if (q) {
      std::uint64_t stored = 0;
      for (const auto& e : q->entries) stored += e.nbytes();
      error_figures ef;
      if (with_report) {
        y.resize(static_cast<std::size_t>(n));
        if (auto s = q->dequantize(y.data(), threads); !s) {
          produced = fail(exit_quantize, s);
          break;
        }
        ef = measure_tensor(dense, dense_dt, x.data(), y.data(), n, threads);
      }
      std::lock_guard<std::mutex> lock(print_mutex);
      bar.finish();
      if (with_report)
        report("%-52s %-14s %8.3f bits  max|err| %.3e  mean|err| %.3e  SQNR %6.2f dB\n", c.name.c_str(), layout->label(), bits_per_value(stored, n), ef.max_abs,
               ef.mean_abs, ef.sqnr_db);
      else report("%-52s %-14s %8.3f bits\n", c.name.c_str(), layout->label(), bits_per_value(stored, n));
    }
  }
  if (int r = finish_conversion(slot, writer, bar, produced, consumed, mw, folder)) return r;
  if (layout != nullptr) report("%d of %zu tensors quantized to %s; wrote %s\n", count, ci.src.size(), layout->label(), args.pos[1].c_str());
  else report("%zu tensors written as %s; wrote %s\n", ci.src.size(), io::info(cast_to).name, args.pos[1].c_str());
  return exit_ok;
}

// A quantized GGUF tensor on its way to the file (no bytes: passed through from the input).
struct gguf_stage {
  std::size_t tensor = 0;
  std::vector<std::uint8_t> bytes;
};

// convert to GGUF: OUT/model.gguf (docs/gguf.md). A writer thread writes tensor i while this
// thread quantizes tensor i + 1.
int convert_gguf(const conversion_args& args, convert_input& ci, output_folder& folder, lowbit::ggml::type target, bool with_report) {
  const lowbit::ggml::type_traits ttr = lowbit::ggml::traits(target);
  const std::vector<convert_source>& src = ci.src;
  // The plan: every tensor's GGUF type, fixed before any is converted. A float tensor of 2 or
  // more dimensions whose rows are whole blocks gets the target type; 1-D tensors (biases, norms)
  // F32, as llama.cpp's converter keeps them; others F16 when the target is a block type.
  std::vector<io::gguf_tensor> tensors;
  std::uint64_t total = 0;
  for (const auto& c : src) {
    if (c.shape.size() > 4)
      return fail(exit_input, lowbit::status::error(lowbit::errc::unsupported, "tensor \"%s\" has %zu dimensions; GGUF holds at most 4", c.name.c_str(), c.shape.size()));
    io::gguf_tensor t;
    t.name = c.name;
    t.ne.assign(c.shape.rbegin(), c.shape.rend());
    const std::int64_t inner = t.ne.empty() ? 1 : t.ne[0];
    if (!c.floating) t.type = c.raw_type;
    else if (c.shape.size() >= 2 && inner % ttr.block == 0) t.type = static_cast<std::uint32_t>(target);
    else if (c.shape.size() <= 1) t.type = 0;
    else t.type = ttr.block > 1 ? 1u : static_cast<std::uint32_t>(target);
    tensors.push_back(t);
  }
  std::vector<io::gguf_kv> kv;
  {
    nlohmann::json config;
    if (!ci.config_text.empty() && io::parse_json_text(ci.config_text, ci.in.folder() + "/config.json", config) && config.is_object() && config.contains("model_type") &&
        config["model_type"].is_string())
      kv.push_back({"general.architecture", io::gguf_value::string(config["model_type"].get<std::string>())});
  }
  if (ci.from_gguf)  // the input's metadata is kept (its alignment too)
    for (const auto& e : ci.g.metadata()) kv.push_back(e);
  if (ttr.block > 1 && (!ci.from_gguf || ci.g.find("general.quantization_version") == nullptr))
    kv.push_back({"general.quantization_version", io::gguf_value::scalar(io::gguf_type::u32, std::uint32_t{2})});
  if (!ci.from_gguf)
    if (int r = write_config_json(folder, ci.config_text, nullptr)) return r;
  io::gguf_writer w;
  if (auto s = w.open(folder.file("model.gguf"), kv, tensors); !s) return fail(s.code() == lowbit::errc::io ? exit_output : exit_input, s);
  for (const auto& t : w.tensors()) total += t.nbytes;

  std::mutex print_mutex;
  progress bar(total, !args.quiet);
  handoff<gguf_stage> slot;
  int consumed = exit_ok;
  std::thread writer([&] {
    std::uint64_t done = 0;
    while (gguf_stage* st = slot.take()) {
      const convert_source& c = src[st->tensor];
      const lowbit::status s = c.floating ? w.write(st->bytes.data(), st->bytes.size()) : w.write(c.raw, static_cast<std::size_t>(c.raw_bytes));
      if (!s) {
        slot.stop();
        std::lock_guard<std::mutex> lock(print_mutex);
        bar.finish();
        consumed = fail(exit_output, s);
        return;
      }
      done += w.tensors()[st->tensor].nbytes;
      std::lock_guard<std::mutex> lock(print_mutex);
      bar.update(done, "writing " + c.name);
      slot.done();
    }
  });
  int count = 0, produced = exit_ok;
  std::vector<float> x;
  const int threads = static_cast<int>(args.threads);
  for (std::size_t i = 0; i < src.size() && produced == exit_ok; ++i) {
    const convert_source& c = src[i];
    const io::gguf_tensor& t = w.tensors()[i];
    gguf_stage st;
    st.tensor = i;
    const auto ty = static_cast<lowbit::ggml::type>(t.type);
    const bool measure = with_report && c.floating && lowbit::ggml::traits(ty).block > 1;
    error_figures ge;
    if (c.floating) {
      // Its values: float16/bfloat16/float32 bytes are widened chunk by chunk as they are
      // quantized; other inputs are decoded to float32 first.
      const std::uint8_t* dense = nullptr;
      lowbit::dtype dense_dt = lowbit::dtype::f32;
      if (auto r = ci.values(i, threads, x, dense, dense_dt); !r) {
        produced = fail(exit_input, r);
        break;
      }
      st.bytes.resize(static_cast<std::size_t>(t.nbytes));
      if (auto e = quantize_gguf_tensor(ty, dense, dense_dt, x.data(), t.numel(), st.bytes.data(), threads, measure ? &ge : nullptr); !e) {
        std::lock_guard<std::mutex> lock(print_mutex);
        bar.finish();
        std::fprintf(stderr, "lowbit: tensor \"%s\": %s\n", c.name.c_str(), e.message());
        produced = exit_quantize;
        break;
      }
      if (lowbit::ggml::traits(ty).block > 1) ++count;
    }
    if (!slot.put(std::move(st))) break;  // the writer failed (its message is printed)
    if (measure) {
      std::lock_guard<std::mutex> lock(print_mutex);
      bar.finish();
      report("%-52s %-10s %8.3f bits  max|err| %.3e  mean|err| %.3e  SQNR %6.2f dB\n", c.name.c_str(), lowbit::ggml::traits(ty).name, bits_per_value(t.nbytes, t.numel()),
             ge.max_abs, ge.mean_abs, ge.sqnr_db);
    }
  }
  slot.close();
  writer.join();
  bar.finish();
  if (produced != exit_ok) return produced;
  if (consumed != exit_ok) return consumed;
  if (auto s = w.commit(); !s) return fail(exit_output, s);
  if (int r = commit_output(folder)) return r;
  report("%d of %zu tensors quantized to %s; wrote %s/model.gguf\n", count, src.size(), ttr.name, args.pos[1].c_str());
  return exit_ok;
}

// The formats `convert --to` takes, for the usage message and errors.
const char* const convert_targets =
    "gguf-f32, gguf-f16, gguf-bf16, gguf-q8_0, gguf-q4_0, gguf-q4_1, gguf-mxfp4, bnb-nf4, bnb-fp4, bnb-int8, fp8-block, mxfp4, ct-fp8, "
    "ct-nvfp4, ct-int4, ct-int8, safetensors-f32, safetensors-f16, safetensors-bf16";

// The safetensors layout of `to` (null: not one; `cast` then says whether `to` is a plain
// safetensors-<dtype>, in `cast_to`).
std::unique_ptr<st_layout> st_layout_of(const std::string& to, bool& cast, io::st_dtype& cast_to) {
  cast = true;
  if (to == "safetensors-f32") return cast_to = io::st_dtype::F32, nullptr;
  if (to == "safetensors-f16") return cast_to = io::st_dtype::F16, nullptr;
  if (to == "safetensors-bf16") return cast_to = io::st_dtype::BF16, nullptr;
  cast = false;
  if (to == "bnb-nf4") return std::make_unique<bnb_st_layout>(lowbit::format::nf4);
  if (to == "bnb-fp4") return std::make_unique<bnb_st_layout>(lowbit::format::bnb_fp4);
  if (to == "bnb-int8") return std::make_unique<bnb_st_layout>(lowbit::format::int8_absmax);
  if (to == "fp8-block") return std::make_unique<fp8_block_st_layout>();
  if (to == "mxfp4") return std::make_unique<mxfp4_st_layout>();
  io::ct_quant_args a;
  a.symmetric = true;
  if (to == "ct-fp8") {  // FP8 E4M3 per output channel (llm-compressor's FP8 / FP8_DYNAMIC weights)
    a.num_bits = 8, a.type = "float", a.strategy = "channel";
    return std::make_unique<ct_st_layout>("float-quantized", "ct:fp8", a);
  }
  if (to == "ct-nvfp4") {  // NVFP4 (llm-compressor's NVFP4A16 weights)
    a.num_bits = 4, a.type = "float", a.strategy = "tensor_group", a.group_size = 16;
    return std::make_unique<ct_st_layout>("nvfp4-pack-quantized", "ct:nvfp4", a);
  }
  if (to == "ct-int4") {  // W4A16: int4, groups of 128, symmetric
    a.num_bits = 4, a.type = "int", a.strategy = "group", a.group_size = 128;
    return std::make_unique<ct_st_layout>("pack-quantized", "ct:int4", a);
  }
  if (to == "ct-int8") {  // W8A16: int8 per output channel, symmetric
    a.num_bits = 8, a.type = "int", a.strategy = "channel";
    return std::make_unique<ct_st_layout>("pack-quantized", "ct:int8", a);
  }
  return nullptr;
}

int cmd_convert(int argc, char** argv) {
  conversion_args args;
  std::string to;
  bool with_report = true, skip_given = false;
  std::vector<std::string> skip = {"lm_head", "embed"};
  const int parsed = parse_args(argc, argv, args, [&](const std::string& a, int& i) -> int {
    if (a == "--to") {
      if (i + 1 >= argc) return std::fprintf(stderr, "lowbit: --to needs a format\n"), -1;
      to = argv[++i];
      return 1;
    }
    if (a == "--skip") {
      if (i + 1 >= argc || !*argv[i + 1]) return std::fprintf(stderr, "lowbit: --skip needs a non-empty pattern\n"), -1;
      skip.push_back(argv[++i]);
      return skip_given = true, 1;
    }
    if (a == "--no-report") return with_report = false, 1;
    return 0;
  });
  if (parsed != exit_ok) return parsed;
  static const std::pair<const char*, lowbit::ggml::type> gguf_targets[] = {
      {"gguf-f32", lowbit::ggml::type::f32},   {"gguf-f16", lowbit::ggml::type::f16},   {"gguf-bf16", lowbit::ggml::type::bf16}, {"gguf-q8_0", lowbit::ggml::type::q8_0},
      {"gguf-q4_0", lowbit::ggml::type::q4_0}, {"gguf-q4_1", lowbit::ggml::type::q4_1}, {"gguf-mxfp4", lowbit::ggml::type::mxfp4}};
  const lowbit::ggml::type* target = nullptr;
  for (const auto& t : gguf_targets)
    if (to == t.first) target = &t.second;
  bool cast = false;
  io::st_dtype cast_to = io::st_dtype::F32;
  const std::unique_ptr<st_layout> layout = target == nullptr ? st_layout_of(to, cast, cast_to) : nullptr;
  if (target == nullptr && layout == nullptr && !cast)
    return std::fprintf(stderr, "lowbit: --to must be one of %s%s%s%s\n", convert_targets, to.empty() ? "" : " (not \"", to.c_str(), to.empty() ? "" : "\")"), exit_usage;
  if (target != nullptr && args.max_shard_bytes != 0) return std::fprintf(stderr, "lowbit: --max-shard-size does not apply to a GGUF output (one file)\n"), exit_usage;
  if (layout == nullptr && skip_given) return std::fprintf(stderr, "lowbit: --skip applies to the quantized safetensors layouts only (--to %s)\n", to.c_str()), exit_usage;

  output_folder folder;
  if (auto s = folder.open(args.pos[1]); !s) return fail(exit_output, s);  // OUT first: its problems before any work
  convert_input ci;
  if (int r = ci.open(args.pos[0], target != nullptr)) return r;
  if (target != nullptr) return convert_gguf(args, ci, folder, *target, with_report);
  return convert_safetensors(args, ci, folder, layout.get(), cast_to, skip, with_report);
}

// quantize --format of a layout: convert's safetensors path from a dense (or any readable) input.
int quantize_to_layout(const conversion_args& args, const std::string& fmt, const std::vector<std::string>& skip, bool with_report) {
  bool cast = false;
  io::st_dtype cast_to{};
  const std::unique_ptr<st_layout> layout = st_layout_of(fmt, cast, cast_to);
  output_folder folder;
  if (auto s = folder.open(args.pos[1]); !s) return fail(exit_output, s);
  convert_input ci;
  if (int r = ci.open(args.pos[0], false)) return r;
  return convert_safetensors(args, ci, folder, layout.get(), cast_to, skip, with_report);
}

}  // namespace

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Every weight's quantized tensor and scratch are allocated afresh and freed once written; from
  // the heap rather than mmap the next weight reuses those pages instead of faulting in new zeroed
  // ones. M_MMAP_MAX 0 keeps every block on the heap: glibc refuses an M_MMAP_THRESHOLD above
  // 32 MiB (what this used to set, silently ignored), and a 4096 x 8192 FP8 weight's codes alone
  // are 32 MiB. A 1 GB convert to fp8-block faulted in 512 MiB of fresh pages (1.0-1.5 s of
  // kernel time zeroing 2 MiB pages); with the heap, none.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  start_signal_thread();
  if (argc < 2) return usage(stderr), exit_usage;
  const std::string cmd = argv[1];
  if (cmd == "quantize") return cmd_quantize(argc - 2, argv + 2);
  if (cmd == "inspect") return cmd_inspect(argc - 2, argv + 2);
  if (cmd == "dequantize") return cmd_dequantize(argc - 2, argv + 2);
  if (cmd == "convert") return cmd_convert(argc - 2, argv + 2);
  if (cmd == "-h" || cmd == "--help" || cmd == "help") return usage(stdout), exit_ok;
  if (cmd == "--version") return std::printf("lowbit %s\n", LOWBIT_TOOL_VERSION), exit_ok;  // CMake's project version
  std::fprintf(stderr, "lowbit: unknown command \"%s\"\n", cmd.c_str());
  usage(stderr);
  return exit_usage;
}
