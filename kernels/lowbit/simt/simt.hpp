// SPDX-License-Identifier: Apache-2.0
/// @file simt.hpp
/// @brief The SIMT executor: runs the unmodified source of a CUDA kernel on the CPU, compiled by a
///        plain C++17 compiler (g++, clang++), each CUDA thread a fiber.
///
/// Under nvcc (`__CUDACC__`) this header defines only LOWBIT_DYNAMIC_SHARED. Everywhere else it maps
/// the CUDA dialect a lowbit kernel may use onto a cooperative fiber scheduler:
///
/// - `__global__`/`__device__`/`__host__` expand to nothing, `__forceinline__` to `inline`.
///   `threadIdx`, `blockIdx`, `blockDim`, `gridDim` read the running fiber's state; `warpSize` is 32.
///   `dim3`, `uint3`, `float4`, ... come from CUDA's own `<vector_types.h>`.
/// - Static shared memory is declared with `LOWBIT_SHARED(type, name)` (under nvcc:
///   `__shared__ type name`): each declaration gets a slot of the launch's shared-memory arena, at
///   the same offset in every block, and the arena is filled with a random poison byte before every
///   block, so reads of shared memory no thread of the block wrote show up as garbage, with every
///   compiler. Plain `__shared__` is a compile error here: a function-static variable can be neither
///   per-block nor checked.
/// - `LOWBIT_DYNAMIC_SHARED(type, name)` declares `type* name`, the block's dynamic shared memory
///   (the launch's size; 16-byte aligned; poisoned before every block).
/// - "Device" memory is simt::device_malloc'd: exactly the size asked for, between 256-byte redzones
///   (poisoned for ASan), filled with a poison byte; the host marks what it writes there with
///   simt::device_written.
/// - `__syncthreads()` (also `_count`, `_and`, `_or`) parks the fiber at the block barrier. Warp
///   operations (`__shfl{,_up,_down,_xor}_sync` with `width`, `__ballot_sync`, `__any_sync`,
///   `__all_sync`, `__syncwarp`) synchronize exactly the lanes named in their mask; the last lane to
///   arrive computes every lane's result with the PTX `shfl.sync` formula. All of them are macros
///   that record `__FILE__`/`__LINE__`, which appear in every error message.
/// - Atomics are read-modify-writes (fibers never run concurrently) that the checker records as
///   atomic. `__trap()` stops the launch with an error naming its site; LOWBIT_ASSUME_BLOCK (in
///   cuda/detail/arch.cuh) checks the block shape a kernel was written for.
/// - Vector accesses through lowbit::cuda::detail::load_vector / store_vector are checked in every
///   build for alignment and bounds, and stores to device memory for coalescing: when a block ends,
///   the lanes of each warp that made their k-th store at one call site must have covered one
///   contiguous range of bytes (check_coalesced; a warp-wide store on a GPU).
/// - With LOWBIT_SIMT_RACECHECK and `-fsanitize=thread` instrumentation, checker.hpp checks every
///   memory access of kernel code: races, uninitialized reads, out-of-bounds and misaligned
///   accesses (see that file).
///
/// The scheduler makes passes over the runnable fibers of a block in `order::forward`,
/// `order::reverse` or a seeded `order::random` order (blocks run in the same order: ascending,
/// descending, shuffled). A fiber runs until it reaches a barrier or exits. In strict mode (the default)
/// these are reported as `lowbit::simt::error` instead of hanging or silently passing: threads that
/// exited while others wait at `__syncthreads`, threads waiting at different `__syncthreads` sites, a
/// warp mask that names an exited or nonexistent lane (or not the caller), lanes of one mask waiting at
/// different warp operations, a shuffle that reads a lane outside its mask (undefined on a GPU), and
/// any deadlock between warp and block barriers (reported in both modes). With `strict = false`,
/// exited threads count as arrived at every barrier, as on the hardware.
///
/// Fibers use Boost.Context's fcontext when `LOWBIT_SIMT_BOOST_CONTEXT` is defined (link
/// `boost_context`; about 15x faster), else glibc's `ucontext` (no dependency; every switch costs a
/// `sigprocmask` system call). Each fiber has a 64 KiB stack (`LOWBIT_SIMT_STACK_SIZE`) above a
/// `PROT_NONE` guard page; stacks are pooled and reused across blocks and launches. ASan builds annotate
/// every switch (`__sanitizer_start_switch_fiber`).
///
/// Limits: blocks run one after another (no grid sync; races between blocks are still found by the
/// checker, which treats blocks of a launch as unordered whatever order they ran in); fibers are
/// sequentially consistent (memory-ordering and fence bugs are invisible); `extern __shared__` must
/// be written with LOWBIT_DYNAMIC_SHARED; `<<<>>>` is not C++ (call `simt::launch`); launches are
/// serialized process-wide; device memory must not be allocated or freed by another thread during
/// a launch; objects on a fiber's stack leak when a strict error aborts a block; builtins used
/// outside a kernel dereference a null pointer. Include CUDA headers (`cuda_fp16.h`, ...) before this
/// header: its `warpSize`/`blockDim`/`__shfl*` macros clash with their declarations.
#pragma once

#include <lowbit/config.hpp>

LOWBIT_NAMESPACE_BEGIN
namespace simt {
/// `T` itself: lets LOWBIT_SHARED take array types (`LOWBIT_SHARED(float[256], table)`).
template <class T>
using shared_type = T;
}  // namespace simt
LOWBIT_NAMESPACE_END

#if defined(__CUDACC__)

/// Declares `type* name`, the block's dynamic shared memory (16-byte aligned). One `unsigned char`
/// array under nvcc, so that kernels of different element types may use the same name in one
/// translation unit (nvcc rejects `extern __shared__` arrays of one name with different types).
#  define LOWBIT_DYNAMIC_SHARED(type, name)                          \
    extern __shared__ __align__(16) unsigned char name##_storage[]; \
    type* name = reinterpret_cast<type*>(name##_storage)

/// Declares `name`, a variable of `type` (arrays allowed: `float[256]`) in the block's static
/// shared memory. The only way a lowbit kernel declares static shared memory: under the executor
/// it lives in a per-block arena (poisoned before every block, with every compiler, and watched
/// by the race/init checker); under nvcc it is `__shared__ type name`.
#  define LOWBIT_SHARED(type, name) __shared__ ::lowbit::simt::shared_type<type> name

#else  // !defined(__CUDACC__): the CPU executor

// CUDA's headers first: the macros below clash with declarations in them.
#  include <vector_types.h>
#  include <vector_functions.h>
#  include <cuda_fp16.h>
#  include <cuda_bf16.h>
#  include <cuda_fp8.h>

#  include <algorithm>
#  include <cmath>
#  include <cstdarg>
#  include <cstddef>
#  include <cstdint>
#  include <cstdio>
#  include <cstring>
#  include <exception>
#  include <limits>
#  include <memory>
#  include <mutex>
#  include <new>
#  include <stdexcept>
#  include <string>
#  include <tuple>
#  include <type_traits>
#  include <utility>
#  include <vector>

#  include <map>
#  include <unordered_map>

#  include <dlfcn.h>
#  include <link.h>
#  include <sys/mman.h>
#  include <unistd.h>

#  if defined(LOWBIT_SIMT_BOOST_CONTEXT)
#    include <boost/context/detail/fcontext.hpp>
#  else
#    include <ucontext.h>
#  endif

#  if defined(__SANITIZE_ADDRESS__)
#    define LOWBIT_SIMT_ASAN 1
#  elif defined(__has_feature)
#    if __has_feature(address_sanitizer)
#      define LOWBIT_SIMT_ASAN 1
#    endif
#  endif
#  if !defined(LOWBIT_SIMT_ASAN)
#    define LOWBIT_SIMT_ASAN 0
#  endif
#  if LOWBIT_SIMT_ASAN
#    include <sanitizer/asan_interface.h>
#    include <sanitizer/common_interface_defs.h>
#    define LOWBIT_SIMT_NO_ASAN __attribute__((no_sanitize_address))
#  else
#    define LOWBIT_SIMT_NO_ASAN
#  endif

/// 1 when this build runs kernels on the SIMT executor (always, outside nvcc).
#  define LOWBIT_SIMT_EXECUTOR 1

/// The checker (kernels/lowbit/simt/checker.hpp): with LOWBIT_SIMT_RACECHECK defined and the
/// translation unit compiled with g++'s or clang's `-fsanitize=thread` instrumentation (but linked
/// WITHOUT the ThreadSanitizer runtime), every load and store of the program calls the checker,
/// which watches the memory kernels share: races, uninitialized reads, out-of-bounds and misaligned
/// accesses. Without it the executor still poisons shared and fresh device memory and keeps
/// redzones around device allocations (found by ASan builds).
#  if defined(LOWBIT_SIMT_RACECHECK)
#    if !defined(__SANITIZE_THREAD__)
#      if defined(__has_feature)
#        if !__has_feature(thread_sanitizer)
#          error "LOWBIT_SIMT_RACECHECK needs -fsanitize=thread at compile time (and not at link time)"
#        endif
#      else
#        error "LOWBIT_SIMT_RACECHECK needs -fsanitize=thread at compile time (and not at link time)"
#      endif
#    endif
#    define LOWBIT_SIMT_CHECKER 1
#    define LOWBIT_SIMT_UNCHECKED __attribute__((no_sanitize_thread))
#  else
#    define LOWBIT_SIMT_CHECKER 0
#    define LOWBIT_SIMT_UNCHECKED
#  endif

/// Usable bytes of each fiber's stack (a PROT_NONE guard page lies below).
#  if !defined(LOWBIT_SIMT_STACK_SIZE)
#    define LOWBIT_SIMT_STACK_SIZE (64 * 1024)
#  endif


LOWBIT_NAMESPACE_BEGIN
namespace simt {

/// The order in which the scheduler resumes the runnable fibers of a block (and runs the blocks).
enum class order { forward, reverse, random };

/// How one launch is executed.
struct launch_options {
  order ord = order::forward;  ///< pass order over runnable fibers, and block order
  std::uint64_t seed = 0;      ///< seeds order::random and the poison bytes
  bool strict = true;          ///< report barrier divergence and bad warp masks as errors
};

/// A kernel bug found by the executor (strict mode), a deadlock, or an invalid launch.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

// ---- process-wide state ------------------------------------------------------------------------

inline std::mutex& options_mutex() {
  static std::mutex m;
  return m;
}
inline launch_options& default_options_storage() {
  static launch_options o;
  return o;
}

/// Serializes launches: `__shared__` variables are process-wide statics.
inline std::mutex& launch_mutex() {
  static std::mutex m;
  return m;
}

inline std::uint64_t splitmix64(std::uint64_t& s) noexcept {
  std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// A uniformly distributed integer in [0, n) (n > 0).
inline std::uint64_t below(std::uint64_t& s, std::uint64_t n) noexcept {
  const std::uint64_t limit = ~0ull - (~0ull % n);
  std::uint64_t r;
  do r = splitmix64(s);
  while (r >= limit);
  return r % n;
}

/// Where a barrier or warp operation appears in the kernel source.
struct src_loc {
  const char* file = "";
  int line = 0;
};
inline bool same_loc(const src_loc& a, const src_loc& b) noexcept {
  return a.line == b.line && (a.file == b.file || std::strcmp(a.file, b.file) == 0);
}

/// Warp operations.
enum class wop : std::uint8_t { shfl_idx, shfl_up, shfl_down, shfl_xor, ballot, any, all, syncwarp };
inline const char* wop_name(wop k) noexcept {
  switch (k) {
    case wop::shfl_idx: return "__shfl_sync";
    case wop::shfl_up: return "__shfl_up_sync";
    case wop::shfl_down: return "__shfl_down_sync";
    case wop::shfl_xor: return "__shfl_xor_sync";
    case wop::ballot: return "__ballot_sync";
    case wop::any: return "__any_sync";
    case wop::all: return "__all_sync";
    case wop::syncwarp: return "__syncwarp";
  }
  return "?";
}
inline bool is_shfl(wop k) noexcept { return k <= wop::shfl_xor; }

/// Block barriers: __syncthreads, __syncthreads_count, __syncthreads_and, __syncthreads_or.
enum class bar : std::uint8_t { plain, count, all, any };
inline const char* bar_name(bar k) noexcept {
  switch (k) {
    case bar::plain: return "__syncthreads()";
    case bar::count: return "__syncthreads_count()";
    case bar::all: return "__syncthreads_and()";
    case bar::any: return "__syncthreads_or()";
  }
  return "?";
}

enum class fstate : std::uint8_t { runnable, block_wait, warp_wait, exited };

/// One fiber stack: LOWBIT_SIMT_STACK_SIZE usable bytes above a PROT_NONE guard page.
class fiber_stack {
 public:
  fiber_stack() {
    const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
    guard_ = page;
    size_ = (static_cast<std::size_t>(LOWBIT_SIMT_STACK_SIZE) + page - 1) / page * page;
    void* p = ::mmap(nullptr, size_ + guard_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    if (::mprotect(p, guard_, PROT_NONE) != 0) {
      ::munmap(p, size_ + guard_);
      throw std::bad_alloc();
    }
    base_ = static_cast<unsigned char*>(p);
  }
  fiber_stack(const fiber_stack&) = delete;
  fiber_stack& operator=(const fiber_stack&) = delete;
  ~fiber_stack() { ::munmap(base_, size_ + guard_); }
  unsigned char* lo() const noexcept { return base_ + guard_; }
  unsigned char* hi() const noexcept { return base_ + guard_ + size_; }
  std::size_t size() const noexcept { return size_; }

 private:
  unsigned char* base_ = nullptr;
  std::size_t size_ = 0, guard_ = 0;
};

/// The state of one CUDA thread.
struct fiber {
#  if defined(LOWBIT_SIMT_BOOST_CONTEXT)
  boost::context::detail::fcontext_t ctx = nullptr;
#  else
  ucontext_t uc{};
  bool uc_ready = false;
#  endif
  fiber_stack* stack = nullptr;
  std::size_t color = 0;  // bytes left unused at the stack's top (see run_grid)
  void* asan_fake = nullptr;
  uint3 tid{};
  unsigned linear = 0;
  fstate st = fstate::runnable;
  // block barrier
  bar bkind = bar::plain;
  src_loc bsite;
  int bpred = 0;
  int bresult = 0;
  // warp operation
  wop op = wop::syncwarp;
  src_loc wsite;
  unsigned mask = 0;
  int b = 0;
  int width = 32;
  std::uint64_t in = 0;
  std::uint64_t out = 0;
  // vector stores to device memory made so far in this block, per source site (coalescing check)
  std::vector<std::pair<src_loc, std::uint32_t>> vstore_counts;
};

/// Lanes of one warp that wait in a warp operation, and lanes that have exited.
struct warp_state {
  unsigned waiting = 0;
  unsigned exited = 0;
};

/// The state of the running launch.
struct exec {
  launch_options opt;
  dim3 grid, block;
  uint3 bidx{};
  unsigned n = 0;  // threads per block
  unsigned char* dyn = nullptr;
  std::size_t dyn_bytes = 0;
  void (*invoke)(const void*) = nullptr;
  const void* kargs = nullptr;
  std::uint64_t rng = 0;
  unsigned char poison = 0xA5;
  fiber* fibers = nullptr;
  warp_state* warps = nullptr;
  unsigned live = 0, runnable = 0, n_block_wait = 0, n_warp_wait = 0, n_exited = 0;
  int first_exited = -1;
  bool failed = false;
  std::string msg;
  std::exception_ptr exc;
#  if defined(LOWBIT_SIMT_BOOST_CONTEXT)
  boost::context::detail::fcontext_t sched_ctx = nullptr;
#  else
  ucontext_t sched_uc{};
#  endif
  const void* main_lo = nullptr;
  std::size_t main_size = 0;
  // static shared memory: LOWBIT_SHARED variables, laid out on first use, the same for every block
  unsigned char* smem = nullptr;
  std::size_t smem_used = 0;
  std::vector<std::pair<const void*, std::size_t>> smem_slots;
  // what the checker needs (maintained in every build; cheap)
  const void* kernel = nullptr;      // the kernel function, for reports
  std::uint32_t launch_id = 0;       // serial number of this launch in the process
  std::uint64_t cta_serial = 0;      // serial number of the running block in the process
  std::uint32_t block_linear = 0;    // linear index of the running block in the grid
  std::uint32_t bar_epoch = 0;       // block barriers the running block has completed
  std::vector<std::vector<unsigned>> warp_syncs;  // per warp: masks of its completed __syncwarp
  std::vector<const void*> report_pcs;            // code addresses a report names ("{@k}")
  // the running block's vector stores to device memory, for the coalescing check (check_vector)
  struct vstore_rec {
    src_loc site;
    std::uint32_t warp, k, lane;  // the k-th store at `site` of lane `lane` of warp `warp`
    std::uintptr_t addr;
    std::uint32_t bytes;
  };
  std::vector<vstore_rec> vstores;
  // fence + atomic synchronization between blocks of one launch (the checker's, checker.hpp)
  struct release_rec {
    std::uint64_t fence_time, atomic_time;  // a __threadfence, then an atomic on `loc`
    const void* loc;
    std::uint32_t fence_bar;  // the block's barriers completed at the fence
    std::uint16_t thread;
  };
  struct acquire_rec {
    std::uint64_t atomic_time, fence_time;  // an atomic on `loc`, then (fence_time != 0) a __threadfence
    const void* loc;
  };
  std::uint64_t clock = 0;                                                  // advances at every checked event
  std::unordered_map<std::uint64_t, std::vector<release_rec>> releases;    // by block serial
  std::unordered_map<std::uint64_t, std::vector<acquire_rec>> acquires;    // by sync_key(block, thread)
  std::unordered_map<std::uint64_t, std::pair<std::uint64_t, std::uint32_t>> last_fence;  // same key: time, barriers
};

/// Bytes of static shared memory a block may declare (CUDA's limit for static allocations).
inline constexpr std::size_t static_shared_limit = 48 * 1024;
/// Bytes of redzone on either side of every device allocation (cudaMalloc aligns to 256 bytes),
/// and after the launch's dynamic shared memory.
inline constexpr std::size_t device_redzone = 256;

inline exec* g_exec = nullptr;
inline fiber* g_cur = nullptr;
inline thread_local bool t_in_launch = false;
/// True while a fiber (kernel code) runs on this thread, false in the scheduler.
inline thread_local bool t_in_fiber = false;
/// Set while the checker itself runs (its own memory accesses are not kernel accesses).
inline thread_local bool t_checker_busy = false;
inline std::uint32_t g_launch_serial = 0;
inline std::uint64_t g_cta_serial = 0;

// The checker's per-launch set-up: defined in checker.hpp with LOWBIT_SIMT_RACECHECK, empty otherwise.
inline void check_launch_begin(exec& ex);

/// Fiber stacks and states, reused across blocks and launches (guarded by launch_mutex()).
struct pool {
  std::vector<std::unique_ptr<fiber_stack>> stacks;
  std::vector<fiber> fibers;
  std::vector<warp_state> warps;
  std::unique_ptr<unsigned char[]> smem;  // the static shared memory arena (static_shared_limit bytes)
  bool dirty = false;  // an aborted block left stale ASan stack poison behind
};
inline pool& the_pool() {
  static pool p;
  return p;
}

// ---- sanitizer annotations ---------------------------------------------------------------------

#  if LOWBIT_SIMT_ASAN
inline void asan_start(void** fake, const void* lo, std::size_t size) { __sanitizer_start_switch_fiber(fake, lo, size); }
inline void asan_finish(void* fake, const void** lo, std::size_t* size) { __sanitizer_finish_switch_fiber(fake, lo, size); }
#  else
inline void asan_start(void**, const void*, std::size_t) noexcept {}
inline void asan_finish(void*, const void**, std::size_t*) noexcept {}
#  endif

/// Fills [lo, hi) with v, also where ASan places redzones between globals.
LOWBIT_SIMT_NO_ASAN inline void poison_bytes(unsigned char* lo, unsigned char* hi, unsigned char v) noexcept {
#  if LOWBIT_SIMT_ASAN
  for (volatile unsigned char* p = lo; p < hi; ++p) *p = v;
#  else
  if (hi > lo) std::memset(lo, v, static_cast<std::size_t>(hi - lo));
#  endif
}

// ---- messages ----------------------------------------------------------------------------------

__attribute__((format(printf, 2, 3))) inline void append(std::string& s, const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  const int k = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (k > 0) s.append(buf, std::min(static_cast<std::size_t>(k), sizeof buf - 1));
}
inline void append_thread(std::string& s, const exec& ex, const fiber& f) {
  append(s, "thread (%u,%u,%u) of block (%u,%u,%u)", f.tid.x, f.tid.y, f.tid.z, ex.bidx.x, ex.bidx.y, ex.bidx.z);
}
inline void append_loc(std::string& s, const src_loc& l) { append(s, "%s:%d", l.file, l.line); }

/// The source location of code address `pc` ("file:line", innermost inlined frame first, then the
/// frames it is inlined into: "a.cuh:10 <- b.cuh:20 (in kernel<float>)"), or with `function_only`
/// the name of the function at `pc`. Asks addr2line (binutils); without it, or without debug
/// information, "binary+0xoffset".
inline std::string describe_code_address(const void* pc, bool function_only) {
  char fallback[64];
  std::snprintf(fallback, sizeof fallback, "%p", pc);
  Dl_info info{};
  if (pc == nullptr || ::dladdr(pc, &info) == 0 || info.dli_fname == nullptr) return fallback;
  // a return address (function_only: a function's entry): the call instruction is just before it
  auto addr = reinterpret_cast<std::uintptr_t>(pc) - (function_only ? 0 : 1);
  const auto* eh = static_cast<const ElfW(Ehdr)*>(info.dli_fbase);
  if (eh != nullptr && eh->e_type == ET_DYN) addr -= reinterpret_cast<std::uintptr_t>(info.dli_fbase);
  std::string file = info.dli_fname;
  if (file.empty() || file[0] != '/') {  // the main program: its path (a child's /proc/self/exe is its own)
    char exe[4096];
    const ssize_t len = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return fallback;
    file.assign(exe, static_cast<std::size_t>(len));
  }
  char hex[32];
  std::snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(addr));
  const std::string where = file + "+" + hex;
  if (file.find('\'') != std::string::npos) return where;  // not quotable for the shell below
  const std::string cmd = "addr2line -C -f -i -e '" + file + "' " + hex + " 2>/dev/null";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return where;
  std::vector<std::string> lines;
  char buf[1024];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) {
    std::string l = buf;
    while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
    lines.push_back(l);
  }
  ::pclose(pipe);
  if (lines.size() < 2 || lines[1].rfind("??", 0) == 0) return function_only && !lines.empty() && lines[0] != "??" ? lines[0] : where;
  if (function_only) return lines[lines.size() - 2];
  std::string out;
  for (std::size_t k = 1; k < lines.size(); k += 2) {
    std::string loc = lines[k];
    const std::size_t d = loc.find(" (discriminator");
    if (d != std::string::npos) loc.erase(d);
    if (!out.empty()) out += " <- ";
    out += loc;
  }
  return out + " (in " + lines[lines.size() - 2] + ")";
}

/// `msg` with every "{@k}" replaced by the location of pcs[k] and every "{#k}" by the name of the
/// function at pcs[k].
inline std::string resolve_code_addresses(const std::string& msg, const std::vector<const void*>& pcs) {
  std::string out;
  for (std::size_t i = 0; i < msg.size(); ++i) {
    if (msg[i] == '{' && i + 3 < msg.size() && (msg[i + 1] == '@' || msg[i + 1] == '#')) {
      const std::size_t close = msg.find('}', i);
      if (close != std::string::npos) {
        const std::size_t k = static_cast<std::size_t>(std::strtoul(msg.c_str() + i + 2, nullptr, 10));
        if (k < pcs.size()) {
          out += describe_code_address(pcs[k], msg[i + 1] == '#');
          i = close;
          continue;
        }
      }
    }
    out += msg[i];
  }
  return out;
}

// ---- context switching -------------------------------------------------------------------------

#  if defined(LOWBIT_SIMT_BOOST_CONTEXT)
inline void fiber_main(exec& ex, fiber& f);
inline void entry_fc(boost::context::detail::transfer_t t) {
  exec& ex = *g_exec;
  asan_finish(nullptr, &ex.main_lo, &ex.main_size);
  ex.sched_ctx = t.fctx;
  fiber_main(ex, *static_cast<fiber*>(t.data));
}
inline void make_context(exec&, fiber& f) {
  f.ctx = boost::context::detail::make_fcontext(f.stack->hi() - f.color, f.stack->size() - f.color, &entry_fc);
}
/// Scheduler -> fiber; returns when the fiber parks, exits or fails.
inline void resume(exec&, fiber& f) {
  g_cur = &f;
  void* fake = nullptr;
  asan_start(&fake, f.stack->lo(), f.stack->size());
  t_in_fiber = true;
  const boost::context::detail::transfer_t t = boost::context::detail::jump_fcontext(f.ctx, &f);
  t_in_fiber = false;
  asan_finish(fake, nullptr, nullptr);
  f.ctx = t.fctx;
}
/// Fiber -> scheduler; returns when the scheduler resumes this fiber.
inline void suspend(exec& ex, fiber& f) {
  asan_start(&f.asan_fake, ex.main_lo, ex.main_size);
  const boost::context::detail::transfer_t t = boost::context::detail::jump_fcontext(ex.sched_ctx, nullptr);
  asan_finish(f.asan_fake, &ex.main_lo, &ex.main_size);
  ex.sched_ctx = t.fctx;
}
/// Fiber -> scheduler, for good.
[[noreturn]] inline void leave(exec& ex) {
  asan_start(nullptr, ex.main_lo, ex.main_size);
  boost::context::detail::jump_fcontext(ex.sched_ctx, nullptr);
  std::abort();  // never resumed
}
#  else
inline void fiber_main(exec& ex, fiber& f);
inline void entry_uc() {
  exec& ex = *g_exec;
  asan_finish(nullptr, &ex.main_lo, &ex.main_size);
  fiber_main(ex, *g_cur);
}
inline void make_context(exec& ex, fiber& f) {
  if (!f.uc_ready) {
    if (::getcontext(&f.uc) != 0) throw error("simt: getcontext failed");
    f.uc_ready = true;
  }
  f.uc.uc_stack.ss_sp = f.stack->lo();
  f.uc.uc_stack.ss_size = f.stack->size() - f.color;
  f.uc.uc_link = &ex.sched_uc;
  ::makecontext(&f.uc, &entry_uc, 0);
}
inline void resume(exec& ex, fiber& f) {
  g_cur = &f;
  void* fake = nullptr;
  asan_start(&fake, f.stack->lo(), f.stack->size());
  t_in_fiber = true;
  ::swapcontext(&ex.sched_uc, &f.uc);
  t_in_fiber = false;
  asan_finish(fake, nullptr, nullptr);
}
inline void suspend(exec& ex, fiber& f) {
  asan_start(&f.asan_fake, ex.main_lo, ex.main_size);
  ::swapcontext(&f.uc, &ex.sched_uc);
  asan_finish(f.asan_fake, &ex.main_lo, &ex.main_size);
}
[[noreturn]] inline void leave(exec& ex) {
  asan_start(nullptr, ex.main_lo, ex.main_size);
  ::setcontext(&ex.sched_uc);
  std::abort();  // never resumed
}
#  endif

/// Records a strict-mode failure (message already in ex.msg) and abandons the fiber.
[[noreturn]] inline void fail(exec& ex) {
  ex.failed = true;
  leave(ex);
}

// ---- warp operations ---------------------------------------------------------------------------

/// The source lane of a shfl.sync (PTX ISA: "shfl.sync"), with c = ((32 - width) << 8) | (up ? 0 : 31)
/// as CUDA's __shfl*_sync build it. Returns `lane` itself when the source is out of range.
LOWBIT_SIMT_UNCHECKED inline unsigned shfl_source(wop k, unsigned lane, int b, int width) noexcept {
  const unsigned segmask = static_cast<unsigned>(32 - width) & 31u;
  const unsigned cval = k == wop::shfl_up ? 0u : 31u;
  const unsigned bval = static_cast<unsigned>(b) & 31u;
  const int max_lane = static_cast<int>((lane & segmask) | (cval & ~segmask));
  const int min_lane = static_cast<int>(lane & segmask);
  const int l = static_cast<int>(lane);
  int j = l;
  bool ok = false;
  switch (k) {
    case wop::shfl_up: j = l - static_cast<int>(bval); ok = j >= max_lane; break;
    case wop::shfl_down: j = l + static_cast<int>(bval); ok = j <= max_lane; break;
    case wop::shfl_xor: j = l ^ static_cast<int>(bval); ok = j <= max_lane; break;
    default: j = min_lane | static_cast<int>(bval & ~segmask); ok = j <= max_lane; break;
  }
  return ok ? static_cast<unsigned>(j) : lane;
}

LOWBIT_SIMT_UNCHECKED inline unsigned lanes_in_warp(const exec& ex, unsigned base) noexcept {
  return ex.n - base < 32u ? ex.n - base : 32u;
}

/// Completes the warp operation lane `i` of the warp at `base` waits in, if every other lane named
/// in its mask waits too (exited and nonexistent lanes are skipped: strict mode rejected them
/// already). Runs in a fiber. Returns whether the lanes were released.
LOWBIT_SIMT_UNCHECKED inline bool try_complete(exec& ex, unsigned base, unsigned i) {
  fiber* w = ex.fibers + base;
  warp_state& ws = ex.warps[base / 32u];
  const unsigned nl = lanes_in_warp(ex, base);
  const unsigned m = w[i].mask;
  const unsigned present = m & ~ws.exited & (nl == 32u ? ~0u : (1u << nl) - 1u);
  if ((present & ~ws.waiting) != 0) return false;
  if (ex.opt.strict) {
    for (unsigned j = 0; j < nl; ++j) {
      if (!((present >> j) & 1u) || j == i) continue;
      const bool same_kind = w[j].op == w[i].op;
      const bool same_site = same_loc(w[j].wsite, w[i].wsite) || (same_kind && w[i].op == wop::syncwarp);
      if (!same_kind || !same_site) {
        ex.msg = "warp op divergence: lane ";
        append(ex.msg, "%u (", j);
        append_thread(ex.msg, ex, w[j]);
        append(ex.msg, ") waits in %s at ", wop_name(w[j].op));
        append_loc(ex.msg, w[j].wsite);
        append(ex.msg, " but lane %u waits in %s at ", i, wop_name(w[i].op));
        append_loc(ex.msg, w[i].wsite);
        append(ex.msg, " (mask 0x%08x)", m);
        fail(ex);
      }
      if (w[j].mask != m) {
        ex.msg = "warp op mask mismatch: ";
        append(ex.msg, "%s at ", wop_name(w[i].op));
        append_loc(ex.msg, w[i].wsite);
        append(ex.msg, ": lane %u uses mask 0x%08x, lane %u mask 0x%08x (", j, w[j].mask, i, m);
        append_thread(ex.msg, ex, w[i]);
        ex.msg += ')';
        fail(ex);
      }
    }
  }
  if (ex.opt.strict && is_shfl(w[i].op)) {
    // CUDA Programming Guide, "Warp Shuffle Functions": "Threads may only read data from another
    // thread which is actively participating in the __shfl_sync() command. If the target thread is
    // inactive, the retrieved value is undefined."
    for (unsigned j = 0; j < nl; ++j) {
      if (!((present >> j) & 1u)) continue;
      const unsigned src = shfl_source(w[j].op, j, w[j].b, w[j].width);
      if (src == j || ((m >> src) & 1u)) continue;
      ex.msg = "invalid warp mask (a shuffle reads a lane outside its mask): lane ";
      append(ex.msg, "%u (", j);
      append_thread(ex.msg, ex, w[j]);
      append(ex.msg, ") reads lane %u in %s(mask 0x%08x", src, wop_name(w[j].op), m);
      append(ex.msg, ", %s %d, width %d) at ", w[j].op == wop::shfl_idx ? "srcLane" : (w[j].op == wop::shfl_xor ? "laneMask" : "delta"),
             w[j].b, w[j].width);
      append_loc(ex.msg, w[j].wsite);
      append(ex.msg, ", but lane %u is not in the mask: the value is undefined", src);
      fail(ex);
    }
  }
  if (w[i].op == wop::syncwarp) ex.warp_syncs[base / 32u].push_back(present);
  std::uint64_t poison = 0;
  std::memset(&poison, ex.poison, sizeof poison);
  unsigned votes = 0;
  for (unsigned j = 0; j < nl; ++j)
    if (((present >> j) & 1u) && w[j].in != 0) votes |= 1u << j;
  for (unsigned j = 0; j < nl; ++j) {
    if (!((present >> j) & 1u)) continue;
    fiber& f = w[j];
    switch (f.op) {
      case wop::ballot: f.out = votes; break;
      case wop::any: f.out = votes != 0; break;
      case wop::all: f.out = votes == present; break;
      case wop::syncwarp: break;
      default: {
        // A source lane outside the mask (or exited) gives an undefined value: poison.
        const unsigned s = shfl_source(f.op, j, f.b, f.width);
        f.out = ((present >> s) & 1u) ? w[s].in : poison;
        break;
      }
    }
    f.st = fstate::runnable;
  }
  ws.waiting &= ~present;
  const unsigned k = static_cast<unsigned>(__builtin_popcount(present));
  ex.runnable += k;
  ex.n_warp_wait -= k;
  return true;
}

/// A lane arrives at a warp operation; returns its result bits when the operation completes.
LOWBIT_SIMT_UNCHECKED inline std::uint64_t warp_arrive(src_loc loc, wop k, unsigned mask, std::uint64_t in, int b, int width) {
  exec& ex = *g_exec;
  fiber& f = *g_cur;
  const unsigned lane = f.linear & 31u, base = f.linear - lane;
  const unsigned nl = lanes_in_warp(ex, base);
  const unsigned exist = nl == 32u ? ~0u : (1u << nl) - 1u;
  if (ex.opt.strict) {
    const char* problem = nullptr;
    int bad = -1;
    if (!((mask >> lane) & 1u)) {
      problem = "does not name the calling lane";
      bad = static_cast<int>(lane);
    } else if (mask & ~exist) {
      problem = "names a lane that does not exist in this warp";
      bad = __builtin_ctz(mask & ~exist);
    } else if (is_shfl(k) && (width < 1 || width > 32 || (width & (width - 1)) != 0)) {
      problem = "has a width that is not a power of two in [1, 32]";
    } else if (mask & ex.warps[base / 32u].exited) {
      problem = "names a lane that has exited";
      bad = __builtin_ctz(mask & ex.warps[base / 32u].exited);
    }
    if (problem) {
      ex.msg = "invalid warp mask: ";
      append(ex.msg, "%s(mask 0x%08x", wop_name(k), mask);
      if (is_shfl(k)) append(ex.msg, ", width %d", width);
      append(ex.msg, ") at ");
      append_loc(ex.msg, loc);
      append(ex.msg, " by ");
      append_thread(ex.msg, ex, f);
      append(ex.msg, " %s", problem);
      if (bad >= 0 && static_cast<unsigned>(bad) < nl && static_cast<unsigned>(bad) != lane) {
        append(ex.msg, ": lane %d = ", bad);
        append_thread(ex.msg, ex, ex.fibers[base + static_cast<unsigned>(bad)]);
      } else if (bad >= 0 && static_cast<unsigned>(bad) >= nl) {
        append(ex.msg, ": lane %d (the warp has %u lanes)", bad, nl);
      }
      fail(ex);
    }
  } else {
    mask = (mask | (1u << lane)) & exist;
  }
  f.op = k;
  f.wsite = loc;
  f.mask = mask;
  f.b = b;
  f.width = width;
  f.in = in;
  f.st = fstate::warp_wait;
  ex.warps[base / 32u].waiting |= 1u << lane;
  --ex.runnable;
  ++ex.n_warp_wait;
  if (!try_complete(ex, base, lane)) suspend(ex, f);
  return f.out;
}

template <class T>
std::uint64_t to_bits(const T& v) noexcept {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                "simt: warp shuffles take trivially copyable values of at most 8 bytes");
  std::uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  return u;
}
template <class T>
T from_bits(std::uint64_t u) noexcept {
  T v;
  std::memcpy(&v, &u, sizeof(T));
  return v;
}

/// The object behind the warp-op macros: carries the call site.
struct site {
  const char* file;
  int line;
  src_loc loc() const noexcept { return src_loc{file, line}; }

  template <class T>
  T shfl(unsigned mask, T v, int src_lane, int width = 32) const {
    return from_bits<T>(warp_arrive(loc(), wop::shfl_idx, mask, to_bits(v), src_lane, width));
  }
  template <class T>
  T shfl_up(unsigned mask, T v, unsigned delta, int width = 32) const {
    return from_bits<T>(warp_arrive(loc(), wop::shfl_up, mask, to_bits(v), static_cast<int>(delta), width));
  }
  template <class T>
  T shfl_down(unsigned mask, T v, unsigned delta, int width = 32) const {
    return from_bits<T>(warp_arrive(loc(), wop::shfl_down, mask, to_bits(v), static_cast<int>(delta), width));
  }
  template <class T>
  T shfl_xor(unsigned mask, T v, int lane_mask, int width = 32) const {
    return from_bits<T>(warp_arrive(loc(), wop::shfl_xor, mask, to_bits(v), lane_mask, width));
  }
  unsigned ballot(unsigned mask, int pred) const {
    return static_cast<unsigned>(warp_arrive(loc(), wop::ballot, mask, pred != 0, 0, 32));
  }
  int any(unsigned mask, int pred) const {
    return static_cast<int>(warp_arrive(loc(), wop::any, mask, pred != 0, 0, 32));
  }
  int all(unsigned mask, int pred) const {
    return static_cast<int>(warp_arrive(loc(), wop::all, mask, pred != 0, 0, 32));
  }
  void syncwarp(unsigned mask = 0xFFFFFFFFu) const { warp_arrive(loc(), wop::syncwarp, mask, 0, 0, 32); }

  /// __syncthreads and friends.
  LOWBIT_SIMT_UNCHECKED int sync_block(bar k, int pred) const {
    exec& ex = *g_exec;
    fiber& f = *g_cur;
    f.bkind = k;
    f.bsite = loc();
    f.bpred = pred != 0;
    f.st = fstate::block_wait;
    --ex.runnable;
    ++ex.n_block_wait;
    suspend(ex, f);
    return f.bresult;
  }
};

#  if !LOWBIT_SIMT_CHECKER
/// Marks a device-side atomic read-modify-write for the checker (nothing without it).
struct atomic_scope {
  constexpr atomic_scope(const void*, std::size_t, const void*) noexcept {}
};
inline void check_launch_begin(exec&) {}
#  endif

// ---- thread exit and the scheduler ------------------------------------------------------------

LOWBIT_SIMT_UNCHECKED inline void thread_exit(exec& ex, fiber& f) {
  f.st = fstate::exited;
  --ex.live;
  --ex.runnable;
  ++ex.n_exited;
  if (ex.first_exited < 0) ex.first_exited = static_cast<int>(f.linear);
  const unsigned lane = f.linear & 31u, base = f.linear - lane;
  warp_state& ws = ex.warps[base / 32u];
  ws.exited |= 1u << lane;
  for (unsigned waiting = ws.waiting; waiting != 0; waiting &= waiting - 1) {
    const unsigned j = static_cast<unsigned>(__builtin_ctz(waiting));
    fiber& w = ex.fibers[base + j];
    if (w.st != fstate::warp_wait || !((w.mask >> lane) & 1u)) continue;
    if (ex.opt.strict) {
      ex.msg = "invalid warp mask: ";
      append(ex.msg, "lane %u (", lane);
      append_thread(ex.msg, ex, f);
      append(ex.msg, ") exited while lane %u waits in %s(mask 0x%08x) at ", j, wop_name(w.op), w.mask);
      append_loc(ex.msg, w.wsite);
      append(ex.msg, ", whose mask names it");
      fail(ex);
    }
    try_complete(ex, base, j);
  }
}

inline void fiber_main(exec& ex, fiber& f) {
  bool threw = false;
  try {
    ex.invoke(ex.kargs);
  } catch (...) {
    threw = true;
    if (!ex.failed) ex.exc = std::current_exception();
  }
  // Outside the handler: the C++ runtime's per-thread exception state must not be left pointing
  // into an abandoned fiber.
  if (threw) {
    if (!ex.exc) ex.msg = "simt: kernel threw";
    fail(ex);
  }
  thread_exit(ex, f);
  leave(ex);
}

/// Called by the scheduler when no fiber is runnable but some are alive: releases the block
/// barrier, or throws (deadlock, strict-mode divergence).
inline void resolve_stall(exec& ex) {
  fiber* fs = ex.fibers;
  const fiber* first_block = nullptr;
  for (unsigned i = 0; i < ex.n && !first_block; ++i)
    if (fs[i].st == fstate::block_wait) first_block = &fs[i];
  std::string m;
  if (ex.n_warp_wait > 0) {
    const fiber* fw = nullptr;
    for (unsigned i = 0; i < ex.n && !fw; ++i)
      if (fs[i].st == fstate::warp_wait) fw = &fs[i];
    m = "deadlock: ";
    append(m, "%u threads wait in a warp op (first: ", ex.n_warp_wait);
    append_thread(m, ex, *fw);
    append(m, " in %s(mask 0x%08x) at ", wop_name(fw->op), fw->mask);
    append_loc(m, fw->wsite);
    append(m, ")");
    if (first_block) {
      append(m, " while %u wait at %s at ", ex.n_block_wait, bar_name(first_block->bkind));
      append_loc(m, first_block->bsite);
    }
    const unsigned lane = fw->linear & 31u, base = fw->linear - lane;
    const unsigned nl = lanes_in_warp(ex, base);
    for (unsigned j = 0; j < 32; ++j) {
      if (!((fw->mask >> j) & 1u)) continue;
      if (j >= nl) {
        append(m, "; lane %u named in its mask does not exist", j);
        break;
      }
      const fiber& o = fs[base + j];
      if (o.st == fstate::exited) {
        append(m, "; lane %u named in its mask has exited", j);
        break;
      }
      if (o.st == fstate::block_wait) {
        append(m, "; lane %u named in its mask waits at %s at ", j, bar_name(o.bkind));
        append_loc(m, o.bsite);
        break;
      }
    }
    throw error(m);
  }
  // Every live thread waits at a block barrier.
  if (ex.opt.strict && ex.n_exited > 0) {
    m = "barrier divergence: ";
    append(m, "%u threads exited (first: ", ex.n_exited);
    append_thread(m, ex, fs[ex.first_exited]);
    append(m, ") while %u wait at %s at ", ex.n_block_wait, bar_name(first_block->bkind));
    append_loc(m, first_block->bsite);
    throw error(m);
  }
  if (ex.opt.strict) {
    for (unsigned i = 0; i < ex.n; ++i) {
      const fiber& f = fs[i];
      if (f.st != fstate::block_wait) continue;
      if (f.bkind == first_block->bkind && same_loc(f.bsite, first_block->bsite)) continue;
      unsigned n0 = 0, n1 = 0;
      for (unsigned j = 0; j < ex.n; ++j) {
        if (fs[j].st != fstate::block_wait) continue;
        if (fs[j].bkind == first_block->bkind && same_loc(fs[j].bsite, first_block->bsite)) ++n0;
        else if (fs[j].bkind == f.bkind && same_loc(fs[j].bsite, f.bsite)) ++n1;
      }
      m = "barrier mismatch: ";
      append(m, "%u threads (first: ", n0);
      append_thread(m, ex, *first_block);
      append(m, ") wait at %s at ", bar_name(first_block->bkind));
      append_loc(m, first_block->bsite);
      append(m, " but %u (first: ", n1);
      append_thread(m, ex, f);
      append(m, ") wait at %s at ", bar_name(f.bkind));
      append_loc(m, f.bsite);
      throw error(m);
    }
  }
  int count = 0;
  for (unsigned i = 0; i < ex.n; ++i)
    if (fs[i].st == fstate::block_wait) count += fs[i].bpred;
  for (unsigned i = 0; i < ex.n; ++i) {
    fiber& f = fs[i];
    if (f.st != fstate::block_wait) continue;
    switch (f.bkind) {
      case bar::plain: f.bresult = 0; break;
      case bar::count: f.bresult = count; break;
      case bar::all: f.bresult = count == static_cast<int>(ex.n_block_wait); break;
      case bar::any: f.bresult = count != 0; break;
    }
    f.st = fstate::runnable;
  }
  ex.runnable = ex.n_block_wait;
  ex.n_block_wait = 0;
  ++ex.bar_epoch;
}

inline void check_coalesced(exec& ex);

/// Runs every thread of block `bidx`.
inline void run_block(exec& ex, uint3 bidx, std::vector<unsigned>& perm) {
  ex.bidx = bidx;
  const unsigned n = ex.n;
  for (unsigned i = 0; i < n; ++i) {
    fiber& f = ex.fibers[i];
    f.linear = i;
    f.tid = make_uint3(i % ex.block.x, (i / ex.block.x) % ex.block.y, i / (ex.block.x * ex.block.y));
    f.st = fstate::runnable;
    f.asan_fake = nullptr;
    f.vstore_counts.clear();
    make_context(ex, f);
  }
  ex.vstores.clear();
  for (unsigned i = 0; i < (n + 31u) / 32u; ++i) ex.warps[i] = warp_state{};
  ex.live = ex.runnable = n;
  ex.n_block_wait = ex.n_warp_wait = ex.n_exited = 0;
  ex.first_exited = -1;
  ex.poison = static_cast<unsigned char>(1 + below(ex.rng, 255));
  // every block starts with poisoned shared memory, static (the arena part laid out so far) and dynamic
  poison_bytes(ex.smem, ex.smem + ex.smem_used, ex.poison);
  if (ex.dyn_bytes) std::memset(ex.dyn, ex.poison, ex.dyn_bytes);
  ex.block_linear = bidx.x + ex.grid.x * (bidx.y + ex.grid.y * bidx.z);
  ex.cta_serial = ++g_cta_serial;
  ex.bar_epoch = 0;
  for (auto& w : ex.warp_syncs) w.clear();

  auto step = [&](fiber& f) {
    if (f.st != fstate::runnable) return;
    resume(ex, f);
    if (ex.failed) {
      if (ex.exc) std::rethrow_exception(ex.exc);
      throw error(resolve_code_addresses(ex.msg, ex.report_pcs));
    }
  };
  while (ex.live > 0) {
    if (ex.runnable == 0) resolve_stall(ex);
    switch (ex.opt.ord) {
      case order::forward:
        for (unsigned i = 0; i < n; ++i) step(ex.fibers[i]);
        break;
      case order::reverse:
        for (unsigned i = n; i-- > 0;) step(ex.fibers[i]);
        break;
      case order::random:
        for (unsigned i = n; i > 1; --i) std::swap(perm[i - 1], perm[below(ex.rng, i)]);
        for (unsigned i = 0; i < n; ++i) step(ex.fibers[perm[i]]);
        break;
    }
  }
  check_coalesced(ex);
}

/// Clears ASan's stale stack poison left by fibers abandoned in an aborted block.
inline void clean_stacks(pool& p) {
#  if LOWBIT_SIMT_ASAN
  if (p.dirty)
    for (auto& s : p.stacks) __asan_unpoison_memory_region(s->lo(), s->size());
#  endif
  p.dirty = false;
}

inline void check_config(dim3 grid, dim3 block) {
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      threads > 1024 || grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7FFFFFFFu || grid.y > 65535 ||
      grid.z > 65535) {
    std::string m = "simt: invalid launch configuration: ";
    append(m, "grid (%u,%u,%u), block (%u,%u,%u)", grid.x, grid.y, grid.z, block.x, block.y, block.z);
    throw error(m);
  }
}

/// Runs a whole grid; `invoke(kargs)` calls the kernel in the current fiber.
inline void run_grid(const launch_options& opt, dim3 grid, dim3 block, std::size_t smem,
                     void (*invoke)(const void*), const void* kargs, const void* kernel) {
  check_config(grid, block);
  if (t_in_launch) throw error("simt: launch from inside a kernel");
  std::lock_guard<std::mutex> lock(launch_mutex());
  t_in_launch = true;
  pool& p = the_pool();
  exec ex;
  struct reset {
    ~reset() {
      g_exec = nullptr;
      g_cur = nullptr;
      t_in_launch = false;
    }
  } guard;
  (void)guard;
  ex.opt = opt;
  ex.grid = grid;
  ex.block = block;
  ex.n = block.x * block.y * block.z;
  ex.invoke = invoke;
  ex.kargs = kargs;
  ex.kernel = kernel;
  ex.launch_id = ++g_launch_serial;
  ex.rng = opt.seed ^ 0x6C6F776269742121ull;
  while (p.stacks.size() < ex.n) p.stacks.push_back(std::make_unique<fiber_stack>());
  if (p.fibers.size() < ex.n) {
    p.fibers.resize(ex.n);
#  if !defined(LOWBIT_SIMT_BOOST_CONTEXT)
    // A moved ucontext_t points into its old storage (uc_mcontext.fpregs): re-initialize.
    for (auto& f : p.fibers) f.uc_ready = false;
#  endif
  }
  for (unsigned i = 0; i < ex.n; ++i) {
    // Staggered stack tops: otherwise every fiber's saved context has the same page offset and
    // they all compete for one L1 cache set.
    p.fibers[i].stack = p.stacks[i].get();
    p.fibers[i].color = (i % 61u) * 64u;
  }
  clean_stacks(p);
  ex.fibers = p.fibers.data();
  if (p.warps.size() < (ex.n + 31u) / 32u) p.warps.resize((ex.n + 31u) / 32u);
  ex.warps = p.warps.data();
  ex.warp_syncs.resize((ex.n + 31u) / 32u);
  if (!p.smem) p.smem.reset(new unsigned char[static_shared_limit]);
  ex.smem = p.smem.get();
  struct dyn_buffer {
    unsigned char* ptr;
    ~dyn_buffer() { ::operator delete(ptr, std::align_val_t{16}); }
  } dyn{static_cast<unsigned char*>(::operator new(smem + device_redzone, std::align_val_t{16}))};
  ex.dyn = dyn.ptr;
  ex.dyn_bytes = smem;
  g_exec = &ex;
  check_launch_begin(ex);

  const std::uint64_t nblocks = 1ull * grid.x * grid.y * grid.z;
  std::vector<unsigned> perm;
  if (opt.ord == order::random) {
    perm.resize(ex.n);
    for (unsigned i = 0; i < ex.n; ++i) perm[i] = i;
  }
  // Block order: ascending, descending, or a random permutation (shuffled list for up to 2^20
  // blocks; above, a random affine bijection i -> (a i + c) mod nblocks).
  std::vector<std::uint64_t> border;
  std::uint64_t a = 1, c = 0;
  if (opt.ord == order::random) {
    if (nblocks <= (1ull << 20)) {
      border.resize(nblocks);
      for (std::uint64_t i = 0; i < nblocks; ++i) border[i] = i;
      for (std::uint64_t i = nblocks; i > 1; --i) std::swap(border[i - 1], border[below(ex.rng, i)]);
    } else {
      auto gcd = [](std::uint64_t x, std::uint64_t y) {
        while (y) {
          const std::uint64_t t = x % y;
          x = y;
          y = t;
        }
        return x;
      };
      do a = 1 + below(ex.rng, nblocks - 1);
      while (gcd(a, nblocks) != 1);
      c = below(ex.rng, nblocks);
    }
  }
  try {
    for (std::uint64_t k = 0; k < nblocks; ++k) {
      std::uint64_t b = k;
      if (opt.ord == order::reverse) b = nblocks - 1 - k;
      else if (opt.ord == order::random)
        b = border.empty() ? static_cast<std::uint64_t>((static_cast<unsigned __int128>(a) * k + c) % nblocks)
                           : border[k];
      const uint3 bidx = make_uint3(static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                                    static_cast<unsigned>(b / (1ull * grid.x * grid.y)));
      run_block(ex, bidx, perm);
    }
  } catch (...) {
    p.dirty = true;  // fibers were abandoned mid-kernel
    throw;
  }
}

/// The calling fiber's builtins.
// By value: the checker does not look at the executor's own memory.
LOWBIT_SIMT_UNCHECKED inline uint3 thread_idx() noexcept { return g_cur->tid; }
LOWBIT_SIMT_UNCHECKED inline uint3 block_idx() noexcept { return g_exec->bidx; }
LOWBIT_SIMT_UNCHECKED inline dim3 block_dim() noexcept { return g_exec->block; }
LOWBIT_SIMT_UNCHECKED inline dim3 grid_dim() noexcept { return g_exec->grid; }
LOWBIT_SIMT_UNCHECKED inline unsigned char* dynamic_shared() noexcept { return g_exec->dyn; }

/// The storage of the LOWBIT_SHARED variable declared at `key` (a static tag unique to the
/// declaration): laid out in the launch's static shared memory arena on its first execution, at
/// the same offset for every block of the launch, and poisoned like the rest of the arena.
template <class T>
LOWBIT_SIMT_UNCHECKED T& shared_slot(const void* key, const char* name, const char* file, int line) {
  static_assert(std::is_trivially_destructible<T>::value, "LOWBIT_SHARED: CUDA shared variables have no destructors");
  exec& ex = *g_exec;
  for (const auto& slot : ex.smem_slots)
    if (slot.first == key) return *reinterpret_cast<T*>(ex.smem + slot.second);
  const std::size_t align = alignof(T) < 16 ? 16 : alignof(T);
  const std::size_t offset = (ex.smem_used + align - 1) / align * align;
  if (offset + sizeof(T) > static_shared_limit) {
    ex.msg = "too much static shared memory: ";
    append(ex.msg, "LOWBIT_SHARED(%s) (%zu bytes) at %s:%d would end at byte %zu of the block's static shared memory, "
           "more than the %zu bytes CUDA allows", name, sizeof(T), file, line, offset + sizeof(T), static_shared_limit);
    fail(ex);
  }
  ex.smem_slots.emplace_back(key, offset);
  poison_bytes(ex.smem + ex.smem_used, ex.smem + offset + sizeof(T), ex.poison);
  ex.smem_used = offset + sizeof(T);
  return *reinterpret_cast<T*>(ex.smem + offset);
}

/// `__trap()`: the kernel stops the launch; reported as an error naming the site.
[[noreturn]] inline void trap(const char* file, int line) {
  exec& ex = *g_exec;
  ex.msg = "__trap() at ";
  append(ex.msg, "%s:%d by ", file, line);
  append_thread(ex.msg, ex, *g_cur);
  fail(ex);
}

/// LOWBIT_ASSUME_BLOCK(threads): the kernel was written for blocks of `threads` x 1 x 1 threads.
LOWBIT_SIMT_UNCHECKED inline void assume_block(unsigned threads, const char* file, int line) {
  exec& ex = *g_exec;
  if (ex.block.x == threads && ex.block.y == 1 && ex.block.z == 1) return;
  ex.msg = "launch configuration: ";
  append(ex.msg, "the kernel assumes blocks of (%u,1,1) threads (%s:%d) but was launched with (%u,%u,%u)", threads, file,
         line, ex.block.x, ex.block.y, ex.block.z);
  fail(ex);
}

// ---- "device" memory ----------------------------------------------------------------------------

/// One memory access as the checker remembers it (pc null: none).
struct access_rec {
  const void* pc = nullptr;   // the instruction (return address of the checker's hook)
  std::uint64_t cta = 0;      // serial number of the block in the process
  std::uint32_t launch = 0;   // serial number of the launch
  std::uint32_t block = 0;    // linear block index in its grid
  std::uint32_t bar = 0;      // block barriers the block had completed
  std::uint32_t wseq = 0;     // __syncwarp operations the thread's warp had completed
  std::uint16_t thread = 0;   // linear thread index in the block
  std::uint8_t atomic = 0;    // 1: an atomic read-modify-write
  std::uint64_t time = 0;     // the checker's clock at the access (exec::clock)
};
/// The checker's state of one byte: the last write, the last two reads by different threads, and
/// whether the byte holds a written value (device memory: 1 once written by the host or a kernel;
/// shared memory: the serial number of the block that last wrote it).
struct shadow_cell {
  access_rec w, r1, r2;
  std::uint64_t init = 0;
};

/// One live device allocation: `bytes` usable bytes at `ptr`, redzones around them.
struct device_block {
  unsigned char* ptr = nullptr;
  std::size_t bytes = 0;
  std::unique_ptr<shadow_cell[]> shadow;  // the checker's, one per byte (LOWBIT_SIMT_RACECHECK)
};

inline std::mutex& device_mutex() {
  static std::mutex m;
  return m;
}
/// Live allocations by address. Only the launching thread reads it during a launch.
inline std::map<std::uintptr_t, device_block>& device_blocks() {
  static std::map<std::uintptr_t, device_block> m;
  return m;
}
/// Changes whenever device_blocks() does (lookups may cache what they found).
inline std::uint64_t g_device_generation = 0;
#  if LOWBIT_SIMT_CHECKER
inline void attach_shadow(device_block& b) { b.shadow.reset(new shadow_cell[b.bytes ? b.bytes : 1]); }
inline void shadow_initialized(device_block& b, std::size_t off, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) b.shadow[off + i].init = 1;
}
#  else
inline void attach_shadow(device_block&) noexcept {}
#  endif

/// Where an address lies among the memory kernels share: the block's static or dynamic shared
/// memory, a device allocation, or the 256-byte redzone before one (`before`: `off` bytes before
/// it); `none` for everything else (a thread's stack, constants, host memory). Used by the vector
/// access check below and by the checker; the last device allocation found is cached.
struct mem_region {
  enum kind_t : std::uint8_t { none, smem, dyn, device } kind = none;
  std::size_t off = 0;   ///< offset of the address in that memory (or distance before it)
  std::size_t size = 0;  ///< bytes of that memory (static shared memory: as declared so far)
  bool before = false;   ///< in the redzone in front of a device allocation
  device_block* block = nullptr;

  /// Whether `n` bytes from the address stay inside the memory.
  bool holds(std::size_t n) const noexcept { return !before && off + n <= size; }
};

LOWBIT_SIMT_UNCHECKED inline mem_region locate(const exec& ex, std::uintptr_t a) {
  struct cache_t {
    std::uint64_t generation = ~0ull;
    std::uintptr_t lo = 0, hi = 0;  // the allocation and its trailing redzone
    device_block* block = nullptr;
  };
  static cache_t cache;
  mem_region r;
  const auto smem = reinterpret_cast<std::uintptr_t>(ex.smem), dyn = reinterpret_cast<std::uintptr_t>(ex.dyn);
  if (a >= smem && a < smem + static_shared_limit) {
    r.kind = mem_region::smem;
    r.off = a - smem;
    r.size = ex.smem_used;
    return r;
  }
  if (ex.dyn_bytes > 0 && a >= dyn && a < dyn + ex.dyn_bytes + device_redzone) {
    r.kind = mem_region::dyn;
    r.off = a - dyn;
    r.size = ex.dyn_bytes;
    return r;
  }
  if (!(cache.generation == g_device_generation && a >= cache.lo && a < cache.hi)) {
    auto& m = device_blocks();
    if (m.empty() || a + device_redzone < m.begin()->first ||
        a >= std::prev(m.end())->first + std::prev(m.end())->second.bytes + device_redzone)
      return r;  // below or above every allocation and its redzones
    auto it = m.upper_bound(a);
    if (it != m.end() && a + device_redzone >= it->first) {  // in the redzone before an allocation
      r.kind = mem_region::device;
      r.before = true;
      r.off = it->first - a;
      r.size = it->second.bytes;
      r.block = &it->second;
      return r;
    }
    if (it == m.begin()) return r;
    --it;
    if (a >= it->first + it->second.bytes + device_redzone) return r;
    cache = {g_device_generation, it->first, it->first + it->second.bytes + device_redzone, &it->second};
  }
  r.kind = mem_region::device;
  r.off = a - cache.lo;
  r.size = cache.block->bytes;
  r.block = cache.block;
  return r;
}

/// "byte 12 of a 400-byte device allocation at 0x...", for reports.
inline std::string describe(const mem_region& r) {
  char buf[192];
  switch (r.kind) {
    case mem_region::smem:
      std::snprintf(buf, sizeof buf, "byte %zu of the block's static shared memory (%zu bytes declared)", r.off, r.size);
      break;
    case mem_region::dyn:
      std::snprintf(buf, sizeof buf, "byte %zu of the block's dynamic shared memory (%zu bytes)", r.off, r.size);
      break;
    case mem_region::device:
      if (r.before)
        std::snprintf(buf, sizeof buf, "%zu bytes before a %zu-byte device allocation at %p", r.off, r.size,
                      static_cast<const void*>(r.block->ptr));
      else
        std::snprintf(buf, sizeof buf, "byte %zu of a %zu-byte device allocation at %p", r.off, r.size,
                      static_cast<const void*>(r.block->ptr));
      break;
    default:
      return "memory no kernel shares";
  }
  return buf;
}

/// Notes a vector store of `n` bytes at device address `a` by the running thread, at file:line, for
/// check_coalesced: the how-many-th store at that site it is for this thread.
LOWBIT_SIMT_UNCHECKED inline void record_vector_store(exec& ex, std::uintptr_t a, std::size_t n, const char* file, int line) {
  fiber& f = *g_cur;
  const src_loc site{file, line};
  std::uint32_t k = 0;
  bool found = false;
  for (auto& c : f.vstore_counts)
    if (same_loc(c.first, site)) {
      k = c.second++;
      found = true;
      break;
    }
  if (!found) f.vstore_counts.emplace_back(site, 1u);
  ex.vstores.push_back({site, f.linear / 32u, k, f.linear % 32u, a, static_cast<std::uint32_t>(n)});
}

/// The coalescing check of a finished block: the lanes of a warp that make their k-th vector store
/// to device memory at one source site (one warp-wide store instruction on a GPU, with the lanes
/// that reach it) must together cover one contiguous range of bytes, each byte once, so that the
/// store moves only whole, fully used sectors. A gap or an overlap between two lanes (e.g. lane l
/// writing unit l * 32 + k instead of 32 k + l) gives the same bytes in memory but several times
/// the memory transactions on a GPU: it stops the launch with both lanes and the site named.
inline void check_coalesced(exec& ex) {
  auto& v = ex.vstores;
  if (v.empty()) return;
  auto key_less = [](const exec::vstore_rec& x, const exec::vstore_rec& y) {
    if (x.site.line != y.site.line) return x.site.line < y.site.line;
    if (x.site.file != y.site.file) return std::less<const char*>()(x.site.file, y.site.file);
    if (x.warp != y.warp) return x.warp < y.warp;
    if (x.k != y.k) return x.k < y.k;
    return x.addr < y.addr;
  };
  std::sort(v.begin(), v.end(), key_less);
  for (std::size_t i = 1; i < v.size(); ++i) {
    const auto& p = v[i - 1];
    const auto& c = v[i];
    if (p.site.line != c.site.line || p.site.file != c.site.file || p.warp != c.warp || p.k != c.k) continue;
    if (c.addr == p.addr + p.bytes) continue;
    ex.msg = "simt: uncoalesced store: ";
    append(ex.msg, "the %u-byte vector stores of warp %u of block (%u,%u,%u) at %s:%d (store %u of each lane there) do not cover "
           "one contiguous range: lane %u writes %s, lane %u writes %s (%s)", c.bytes, c.warp, ex.bidx.x, ex.bidx.y, ex.bidx.z,
           c.site.file, c.site.line, c.k, p.lane, describe(locate(ex, p.addr)).c_str(), c.lane, describe(locate(ex, c.addr)).c_str(),
           c.addr < p.addr + p.bytes ? "they overlap" : "a gap between them");
    v.clear();
    throw error(ex.msg);
  }
  v.clear();
}

/// The bounds and alignment check of the vector load/store helpers (lowbit::cuda::detail::
/// load_vector / store_vector): `n` bytes at `p`, `n`-byte aligned, inside one device allocation
/// or the block's shared memory when they point there. Runs in every build (with or without the
/// checker), so that a 128-bit access is checked whatever code the compiler makes of it. A store to
/// device memory is also noted for check_coalesced unless `coalescing` is false.
LOWBIT_SIMT_UNCHECKED inline void check_vector(const void* p, std::size_t n, bool write, const char* file, int line,
                                               bool coalescing = true) {
  exec& ex = *g_exec;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::string where;
  const char* problem = nullptr;
  if ((a & (n - 1)) != 0) {
    problem = "misaligned";
    char buf[96];
    std::snprintf(buf, sizeof buf, "%p (needs %zu-byte alignment)", p, n);
    where = buf;
  } else {
    const mem_region r = locate(ex, a);
    if (r.kind == mem_region::none) return;
    if (r.holds(n)) {
      if (write && coalescing && r.kind == mem_region::device) record_vector_store(ex, a, n, file, line);
      return;
    }
    problem = "out-of-bounds";
    where = describe(r);
    if (!r.before) where += ", past its end";
  }
  ex.msg = "simt: ";
  append(ex.msg, "%s: %zu-byte vector %s at %s by ", problem, n, write ? "store" : "load", where.c_str());
  append_thread(ex.msg, ex, *g_cur);
  append(ex.msg, " at %s:%d", file, line);
  fail(ex);
}

}  // namespace detail

/// Allocates `bytes` bytes of "device" memory (host memory the executor's kernels use): 256-byte
/// aligned, exactly `bytes` long between two 256-byte redzones (poisoned for ASan, watched by the
/// checker), filled with a poison byte as cudaMalloc leaves memory uninitialized. Zero bytes give a
/// distinct non-null pointer. Throws std::bad_alloc.
inline void* device_malloc(std::size_t bytes) {
  const std::size_t rz = detail::device_redzone;
  if (bytes > (std::numeric_limits<std::size_t>::max() >> 1)) throw std::bad_alloc();
  const std::size_t total = rz + (bytes + rz - 1) / rz * rz + rz;
  void* base = nullptr;
  if (::posix_memalign(&base, rz, total) != 0) throw std::bad_alloc();
  auto* p = static_cast<unsigned char*>(base) + rz;
  std::memset(p, 0xCB, bytes);
#  if LOWBIT_SIMT_ASAN
  __asan_poison_memory_region(base, rz);
  __asan_poison_memory_region(p + bytes, total - rz - bytes);
#  endif
  detail::device_block b;
  b.ptr = p;
  b.bytes = bytes;
  detail::attach_shadow(b);
  std::lock_guard<std::mutex> lock(detail::device_mutex());
  detail::device_blocks().emplace(reinterpret_cast<std::uintptr_t>(p), std::move(b));
  ++detail::g_device_generation;
  return p;
}

/// Releases memory from device_malloc (null: nothing). Other pointers are an error (std::invalid_argument).
inline void device_free(void* ptr) {
  if (ptr == nullptr) return;
  std::unique_lock<std::mutex> lock(detail::device_mutex());
  auto& m = detail::device_blocks();
  const auto it = m.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == m.end()) throw std::invalid_argument("simt::device_free: not a pointer from simt::device_malloc");
  const std::size_t rz = detail::device_redzone, total = rz + (it->second.bytes + rz - 1) / rz * rz + rz;
  m.erase(it);
  ++detail::g_device_generation;
  lock.unlock();
  unsigned char* base = static_cast<unsigned char*>(ptr) - rz;
#  if LOWBIT_SIMT_ASAN
  __asan_unpoison_memory_region(base, total);
#  else
  (void)total;
#  endif
  std::free(base);
}

/// Records that the host wrote `bytes` bytes at device address `p` (a copy or memset): the checker
/// then treats them as initialized. Addresses outside device allocations are ignored.
inline void device_written(const void* p, std::size_t bytes) {
#  if LOWBIT_SIMT_CHECKER
  std::lock_guard<std::mutex> lock(detail::device_mutex());
  auto& m = detail::device_blocks();
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = m.upper_bound(a);
  if (it == m.begin()) return;
  --it;
  const std::uintptr_t lo = it->first;
  if (a >= lo + it->second.bytes) return;
  const std::size_t off = a - lo;
  detail::shadow_initialized(it->second, off, bytes < it->second.bytes - off ? bytes : it->second.bytes - off);
#  else
  (void)p;
  (void)bytes;
#  endif
}

/// The options `launch` uses (initially forward order, seed 0, strict). Process-wide.
inline launch_options default_options() {
  std::lock_guard<std::mutex> lock(detail::options_mutex());
  return detail::default_options_storage();
}
/// Sets the options `launch` uses from now on (process-wide).
inline void set_default_options(const launch_options& opt) {
  std::lock_guard<std::mutex> lock(detail::options_mutex());
  detail::default_options_storage() = opt;
}

/// Runs `kernel(args...)` on a grid of `grid` blocks of `block` threads with
/// `dynamic_smem_bytes` of dynamic shared memory, under `opt`. Returns when every block has run.
/// Throws lowbit::simt::error for strict-mode findings, deadlocks and invalid configurations, and
/// rethrows what a kernel throws. The arguments are converted to the kernel's parameter types once;
/// every thread receives its own copy.
template <class... P, class... A>
void launch_with(const launch_options& opt, void (*kernel)(P...), dim3 grid, dim3 block,
                 std::size_t dynamic_smem_bytes, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "simt::launch: wrong number of kernel arguments");
  using params_t = std::tuple<std::decay_t<P>...>;
  struct call {
    void (*kernel)(P...);
    params_t* params;
  };
  params_t params(static_cast<A&&>(args)...);
  const call c{kernel, &params};
  detail::run_grid(
      opt, grid, block, dynamic_smem_bytes,
      [](const void* p) {
        const call& k = *static_cast<const call*>(p);
        std::apply(k.kernel, *k.params);
      },
      &c, reinterpret_cast<const void*>(kernel));
}

/// launch_with(default_options(), ...).
template <class... P, class... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, std::size_t dynamic_smem_bytes, A&&... args) {
  launch_with(default_options(), kernel, grid, block, dynamic_smem_bytes, static_cast<A&&>(args)...);
}

/// The PTX instructions lowbit's kernels issue through inline assembly (kernels/lowbit/cuda/
/// detail/arch.cuh), emulated from their definition in the PTX ISA (cvt: "Floating-point rounding
/// .rn: mantissa LSB rounds to nearest even"; no .ftz, so subnormal inputs and results are kept;
/// "cvt to .f16/.bf16 types: NaN input gives the canonical NaN", 0x7FFF for both types; .satfinite
/// for the 8-bit floats, see cvt_rn_satfinite_f8_f32). Each is checked over every float32 input by
/// tests/kernels/ptx_exhaustive_test.cpp.
namespace ptx {

/// cvt.rn.bf16.f32: the upper 16 bits of `a`, rounded to nearest even on the 16 dropped bits
/// (a carry out of the mantissa raises the exponent; out of the largest finite value, infinity).
inline std::uint16_t cvt_rn_bf16_f32(float a) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &a, sizeof u);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu) != 0u) return 0x7FFFu;
  std::uint32_t kept = u >> 16;
  const std::uint32_t dropped = u & 0xFFFFu;
  if (dropped > 0x8000u || (dropped == 0x8000u && (kept & 1u) != 0u)) ++kept;
  return static_cast<std::uint16_t>(kept);
}

/// cvt.rn.f16.f32: `a` rounded to nearest even onto binary16 (normal, subnormal or zero), with
/// overflow past the largest finite value (65504, halfway to 65536 and up) to infinity. Computed
/// on the exact value in double: a float32 and every binary16 are exact in double, and so are the
/// scaled candidates below.
inline std::uint16_t cvt_rn_f16_f32(float a) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &a, sizeof u);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  if ((u & 0x7F800000u) == 0x7F800000u) return (u & 0x007FFFFFu) != 0u ? std::uint16_t{0x7FFFu} : static_cast<std::uint16_t>(sign | 0x7C00u);
  const double m = std::fabs(static_cast<double>(a));
  if (m >= 65520.0) return static_cast<std::uint16_t>(sign | 0x7C00u);
  // the binade's spacing: 2^-24 below 2^-14 (subnormals), else 2^(e - 10)
  int e = 0;
  std::frexp(m, &e);  // m = f * 2^e, f in [0.5, 1)
  const int q = e - 1 < -14 ? -24 : e - 1 - 10;
  const double units = std::ldexp(m, -q);  // exact: m has 24 significant bits
  double r = std::floor(units);
  const double frac = units - r;
  if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;
  // r * 2^q as binary16 bits: exponent field and mantissa from the rounded value
  const double v = std::ldexp(r, q);
  if (v == 0.0) return sign;
  int ev = 0;
  std::frexp(v, &ev);
  if (ev - 1 < -14) return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(std::ldexp(v, 24)));
  const std::uint32_t field = static_cast<std::uint32_t>(ev - 1 + 15);
  const std::uint32_t mant = static_cast<std::uint32_t>(std::ldexp(v, -(ev - 1) + 10)) - 1024u;
  return static_cast<std::uint16_t>(sign | (field << 10) | mant);
}

/// cvt.rn.bf16x2.f32 d, a, b: d = {a in the upper half, b in the lower half}.
inline std::uint32_t cvt_rn_bf16x2_f32(float a, float b) noexcept {
  return (static_cast<std::uint32_t>(cvt_rn_bf16_f32(a)) << 16) | cvt_rn_bf16_f32(b);
}

/// cvt.rn.f16x2.f32 d, a, b: d = {a in the upper half, b in the lower half}.
inline std::uint32_t cvt_rn_f16x2_f32(float a, float b) noexcept {
  return (static_cast<std::uint32_t>(cvt_rn_f16_f32(a)) << 16) | cvt_rn_f16_f32(b);
}

/// One operand of cvt.rn.satfinite.{e4m3x2,e5m2x2}.f32: an 8-bit float with `ExpBits` exponent
/// bits of bias `Bias` and `ManBits` mantissa bits, whose largest finite magnitude MAX_NORM is the
/// code `MaxCode` (e4m3: 0x7E = 448, its 0x7F being NaN; e5m2: 0x7B = 57344, 0x7C being Inf). The
/// PTX ISA: ".rn: mantissa LSB rounds to nearest even"; ".satfinite: if the input value is NaN,
/// then the result is NaN in the specified destination format. If the absolute value of input
/// (ignoring sign) is greater than MAX_NORM of the specified destination format, then the result
/// is sign-preserved MAX_NORM" (so +-Inf gives +-MAX_NORM); no .ftz, so float32 subnormal inputs
/// are kept (every one of them is below half the smallest subnormal of either format and rounds
/// to a zero of its sign). The NaN is the format's canonical 0x7F (sign clear, every magnitude bit
/// set), whatever the input NaN's sign and payload. A value that rounds to zero keeps its sign (-0
/// and tiny negatives give 0x80). The rounding is done on the exact value in double: |a| in
/// [2^e, 2^(e+1)) is a whole number of quanta 2^q, q = max(e, emin) - ManBits (emin = 1 - Bias,
/// the smallest normal exponent; below it the subnormals keep its quantum), plus a fraction.
template <int ExpBits, int ManBits, int Bias, unsigned MaxCode>
inline std::uint8_t cvt_rn_satfinite_f8_f32(float a) noexcept {
  static_assert(1 + ExpBits + ManBits == 8, "an 8-bit float");
  std::uint32_t u;
  std::memcpy(&u, &a, sizeof u);
  if ((u & 0x7F800000u) == 0x7F800000u && (u & 0x007FFFFFu) != 0u) return 0x7Fu;
  const std::uint8_t sign = static_cast<std::uint8_t>((u >> 24) & 0x80u);
  const auto pow2 = [](int k) {  // 2^k as a double, |k| < 1000
    const std::uint64_t b = static_cast<std::uint64_t>(1023 + k) << 52;
    double d;
    std::memcpy(&d, &b, sizeof d);
    return d;
  };
  // MAX_NORM = 1.mantissa(MaxCode) * 2^(field(MaxCode) - Bias)
  const double max_norm = static_cast<double>((1u << ManBits) | (MaxCode & ((1u << ManBits) - 1u))) *
                          pow2(static_cast<int>(MaxCode >> ManBits) - Bias - ManBits);
  const double m = std::fabs(static_cast<double>(a));
  if (m > max_norm) return static_cast<std::uint8_t>(sign | MaxCode);
  const int field = static_cast<int>((u >> 23) & 0xFFu);
  if (field == 0) return sign;  // +-0 and float32 subnormals (< 2^-126)
  const int emin = 1 - Bias;
  const int e = field - 127 < emin ? emin : field - 127;
  const double units = m * pow2(ManBits - e);  // exact: m has 24 significant bits; < 2^(ManBits + 1)
  const auto whole = static_cast<std::uint32_t>(units);
  const double frac = units - static_cast<double>(whole);
  const std::uint32_t r = whole + ((frac > 0.5 || (frac == 0.5 && (whole & 1u) != 0u)) ? 1u : 0u);
  // r * 2^(e - ManBits): exponent field e + Bias (1 for the subnormal quantum, r < 2^ManBits then
  // giving field 0), mantissa r - 2^ManBits; a carry (r = 2^(ManBits + 1)) moves to the next field
  return static_cast<std::uint8_t>(sign | ((static_cast<std::uint32_t>(e + Bias) << ManBits) + r - (1u << ManBits)));
}

/// cvt.rn.satfinite.e4m3x2.f32 d, a, b: d (.b16) = {a in bits 15..8, b in bits 7..0}; OCP E4M3
/// (bias 7, MAX_NORM 448 = 0x7E, NaN 0x7F, no Inf).
inline std::uint32_t cvt_rn_satfinite_e4m3x2_f32(float a, float b) noexcept {
  return (static_cast<std::uint32_t>(cvt_rn_satfinite_f8_f32<4, 3, 7, 0x7Eu>(a)) << 8) | cvt_rn_satfinite_f8_f32<4, 3, 7, 0x7Eu>(b);
}

/// cvt.rn.satfinite.e5m2x2.f32 d, a, b: as cvt_rn_satfinite_e4m3x2_f32 for OCP E5M2 (bias 15,
/// MAX_NORM 57344 = 0x7B; satfinite never gives its Inf 0x7C).
inline std::uint32_t cvt_rn_satfinite_e5m2x2_f32(float a, float b) noexcept {
  return (static_cast<std::uint32_t>(cvt_rn_satfinite_f8_f32<5, 2, 15, 0x7Bu>(a)) << 8) | cvt_rn_satfinite_f8_f32<5, 2, 15, 0x7Bu>(b);
}

/// fma.rn.ftz.f32 d, a, b, c: "subnormal inputs and results are flushed to sign-preserving zero";
/// d = a * b + c computed exactly and rounded once to nearest even (std::fma), its subnormal result
/// flushed; a NaN result is the canonical NaN 0x7FFFFFFF.
inline float fma_rn_ftz_f32(float a, float b, float c) noexcept {
  const auto flush = [](float v) {
    std::uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    if ((u & 0x7F800000u) == 0u) u &= 0x80000000u;
    std::memcpy(&v, &u, sizeof u);
    return v;
  };
  float d = flush(std::fma(flush(a), flush(b), flush(c)));
  if (d != d) {
    const std::uint32_t nan = 0x7FFFFFFFu;
    std::memcpy(&d, &nan, sizeof d);
  }
  return d;
}

/// mul.rn.ftz.f32 d, a, b: a * b rounded to nearest even, subnormal inputs and result flushed to
/// zeros of their sign; a NaN result is the canonical NaN 0x7FFFFFFF.
inline float mul_rn_ftz_f32(float a, float b) noexcept { return fma_rn_ftz_f32(a, b, -0.0f); }

}  // namespace ptx

}  // namespace simt
LOWBIT_NAMESPACE_END

#  if LOWBIT_SIMT_CHECKER
#    include "checker.hpp"
#  endif

// ---- the CUDA dialect --------------------------------------------------------------------------

#  undef __global__
#  define __global__
#  undef __device__
#  define __device__
#  undef __host__
#  define __host__
#  undef __forceinline__
#  define __forceinline__ inline
#  undef __noinline__
#  define __noinline__ __attribute__((noinline))
#  undef __constant__
#  define __constant__
#  undef __managed__
#  define __managed__
#  undef __shared__
/// Plain `__shared__` is refused: a function-static variable cannot be a per-block, poisoned,
/// checked allocation. Kernels declare static shared memory with LOWBIT_SHARED(type, name).
#  define __shared__ _Pragma("GCC error \"lowbit SIMT executor: declare shared memory with LOWBIT_SHARED(type, name), not __shared__\"")
/// Declares `name`, a variable of `type` (arrays allowed: `float[256]`) in the block's static
/// shared memory: one slot of the launch's arena per declaration, poisoned before every block.
#  define LOWBIT_SHARED(type, name)                                                                      \
    static const char name##_lowbit_shared_key = 0;                                                      \
    auto& name = ::lowbit::simt::detail::shared_slot<::lowbit::simt::shared_type<type>>(               \
        &name##_lowbit_shared_key, #name, __FILE__, __LINE__)
#  define __trap() ::lowbit::simt::detail::trap(__FILE__, __LINE__)
#  if !defined(__launch_bounds__)
#    define __launch_bounds__(...)
#  endif
#  if !defined(__align__)
#    define __align__(n) __attribute__((aligned(n)))
#  endif

#  undef threadIdx
#  undef blockIdx
#  undef blockDim
#  undef gridDim
#  undef warpSize
#  define threadIdx (::lowbit::simt::detail::thread_idx())
#  define blockIdx (::lowbit::simt::detail::block_idx())
#  define blockDim (::lowbit::simt::detail::block_dim())
#  define gridDim (::lowbit::simt::detail::grid_dim())
#  define warpSize 32

/// Declares `type* name`, the block's dynamic shared memory (16-byte aligned, poisoned per block).
#  define LOWBIT_DYNAMIC_SHARED(type, name) \
    type* name = reinterpret_cast<type*>(::lowbit::simt::detail::dynamic_shared())

#  define LOWBIT_SIMT_SITE_ ::lowbit::simt::detail::site{__FILE__, __LINE__}
#  define __syncthreads() (LOWBIT_SIMT_SITE_.sync_block(::lowbit::simt::detail::bar::plain, 1), (void)0)
#  define __syncthreads_count(pred) LOWBIT_SIMT_SITE_.sync_block(::lowbit::simt::detail::bar::count, (pred) ? 1 : 0)
#  define __syncthreads_and(pred) LOWBIT_SIMT_SITE_.sync_block(::lowbit::simt::detail::bar::all, (pred) ? 1 : 0)
#  define __syncthreads_or(pred) LOWBIT_SIMT_SITE_.sync_block(::lowbit::simt::detail::bar::any, (pred) ? 1 : 0)
#  define __syncwarp(...) LOWBIT_SIMT_SITE_.syncwarp(__VA_ARGS__)
#  define __shfl_sync(...) LOWBIT_SIMT_SITE_.shfl(__VA_ARGS__)
#  define __shfl_up_sync(...) LOWBIT_SIMT_SITE_.shfl_up(__VA_ARGS__)
#  define __shfl_down_sync(...) LOWBIT_SIMT_SITE_.shfl_down(__VA_ARGS__)
#  define __shfl_xor_sync(...) LOWBIT_SIMT_SITE_.shfl_xor(__VA_ARGS__)
#  define __ballot_sync(mask, pred) LOWBIT_SIMT_SITE_.ballot((mask), (pred) ? 1 : 0)
#  define __any_sync(mask, pred) LOWBIT_SIMT_SITE_.any((mask), (pred) ? 1 : 0)
#  define __all_sync(mask, pred) LOWBIT_SIMT_SITE_.all((mask), (pred) ? 1 : 0)

// ---- device functions (global namespace, as in CUDA) -------------------------------------------

#  if LOWBIT_SIMT_CHECKER
inline void __threadfence() noexcept { ::lowbit::simt::detail::on_fence(); }
inline void __threadfence_system() noexcept { ::lowbit::simt::detail::on_fence(); }
#  else
inline void __threadfence() noexcept {}
inline void __threadfence_system() noexcept {}
#  endif
inline void __threadfence_block() noexcept {}

template <class T>
inline T __ldg(const T* p) noexcept {
  return *p;
}

inline int __popc(unsigned x) noexcept { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) noexcept { return __builtin_popcountll(x); }
inline int __ffs(int x) noexcept { return __builtin_ffs(x); }
inline int __ffsll(long long x) noexcept { return __builtin_ffsll(x); }
inline int __clz(int x) noexcept { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) noexcept { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline unsigned __brev(unsigned x) noexcept {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
  x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
  return (x >> 16) | (x << 16);
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) noexcept {
  const unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<unsigned>((v >> (8 * ((s >> (4 * i)) & 7u))) & 0xFFu) << (8 * i);
  return r;
}
/// vmax2.u32.u32.u32: the unsigned maximum of each 16-bit half.
inline unsigned __vmaxu2(unsigned a, unsigned b) noexcept {
  const unsigned lo = (a & 0xFFFFu) > (b & 0xFFFFu) ? (a & 0xFFFFu) : (b & 0xFFFFu);
  const unsigned hi = (a >> 16) > (b >> 16) ? (a >> 16) : (b >> 16);
  return hi << 16 | lo;
}
inline unsigned __umulhi(unsigned a, unsigned b) noexcept {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}
/// dp4a.s32.s32 d, a, b, c (PTX ISA, "Integer Arithmetic Instructions: dp4a"): d = c + the sum over
/// the four byte lanes i of sext(a.byte_i) * sext(b.byte_i), in 32-bit arithmetic modulo 2^32.
inline int __dp4a(int a, int b, int c) noexcept {
  std::uint32_t d = static_cast<std::uint32_t>(c);
  for (int i = 0; i < 4; ++i) {
    const int x = static_cast<std::int8_t>(static_cast<std::uint32_t>(a) >> (8 * i) & 0xFFu);
    const int y = static_cast<std::int8_t>(static_cast<std::uint32_t>(b) >> (8 * i) & 0xFFu);
    d += static_cast<std::uint32_t>(x * y);
  }
  return static_cast<int>(d);
}
/// dp4a.u32.u32 d, a, b, c: as the signed form with zero-extended bytes.
inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) noexcept {
  std::uint32_t d = c;
  for (int i = 0; i < 4; ++i) d += ((a >> (8 * i)) & 0xFFu) * ((b >> (8 * i)) & 0xFFu);
  return d;
}

namespace lowbit_simt_detail {
template <class To, class From>
inline To cast(From x) noexcept {
  static_assert(sizeof(To) == sizeof(From), "size");
  To t;
  std::memcpy(&t, &x, sizeof t);
  return t;
}
/// `x`, opaque to the optimizer, so that a rounded product is never contracted into an FMA.
inline float opaque(float x) noexcept {
#  if defined(__x86_64__) || defined(__i386__)
  __asm__("" : "+x"(x));
#  elif defined(__aarch64__)
  __asm__("" : "+w"(x));
#  else
  volatile float v = x;
  x = v;
#  endif
  return x;
}
}  // namespace lowbit_simt_detail

inline unsigned __float_as_uint(float x) noexcept { return lowbit_simt_detail::cast<unsigned>(x); }
inline float __uint_as_float(unsigned x) noexcept { return lowbit_simt_detail::cast<float>(x); }
inline int __float_as_int(float x) noexcept { return lowbit_simt_detail::cast<int>(x); }
inline float __int_as_float(int x) noexcept { return lowbit_simt_detail::cast<float>(x); }
inline long long __double_as_longlong(double x) noexcept { return lowbit_simt_detail::cast<long long>(x); }
inline double __longlong_as_double(long long x) noexcept { return lowbit_simt_detail::cast<double>(x); }

inline float __fmul_rn(float a, float b) noexcept { return lowbit_simt_detail::opaque(a * b); }
inline float __fadd_rn(float a, float b) noexcept { return lowbit_simt_detail::opaque(a + b); }
inline float __fsub_rn(float a, float b) noexcept { return lowbit_simt_detail::opaque(a - b); }
inline float __fdiv_rn(float a, float b) noexcept { return lowbit_simt_detail::opaque(a / b); }
inline float __frcp_rn(float a) noexcept { return lowbit_simt_detail::opaque(1.0f / a); }
inline float __fsqrt_rn(float a) noexcept { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) noexcept { return std::fmaf(a, b, c); }
inline float __saturatef(float x) noexcept { return x >= 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f); }  // NaN -> 0

/// float -> int with CUDA's saturation (NaN -> 0); `r` rounds an in-range value.
template <class R>
inline int lowbit_simt_f2i(float x, R r) noexcept {
  if (x != x) return 0;
  if (x >= 2147483648.0f) return std::numeric_limits<int>::max();
  if (x < -2147483648.0f) return std::numeric_limits<int>::min();
  return static_cast<int>(r(x));
}
template <class R>
inline unsigned lowbit_simt_f2u(float x, R r) noexcept {
  if (x != x) return 0;
  const float v = r(x);
  if (v <= 0.0f) return 0;
  if (v >= 4294967296.0f) return std::numeric_limits<unsigned>::max();
  return static_cast<unsigned>(v);
}
inline int __float2int_rn(float x) noexcept { return lowbit_simt_f2i(x, [](float v) { return std::nearbyint(v); }); }
inline int __float2int_rz(float x) noexcept { return lowbit_simt_f2i(x, [](float v) { return std::trunc(v); }); }
inline int __float2int_rd(float x) noexcept { return lowbit_simt_f2i(x, [](float v) { return std::floor(v); }); }
inline int __float2int_ru(float x) noexcept { return lowbit_simt_f2i(x, [](float v) { return std::ceil(v); }); }
inline unsigned __float2uint_rn(float x) noexcept { return lowbit_simt_f2u(x, [](float v) { return std::nearbyint(v); }); }
inline unsigned __float2uint_rz(float x) noexcept { return lowbit_simt_f2u(x, [](float v) { return std::trunc(v); }); }
inline float __int2float_rn(int x) noexcept { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) noexcept { return static_cast<float>(x); }
inline float __expf(float x) noexcept { return std::exp(x); }
inline float __logf(float x) noexcept { return std::log(x); }
inline float __fdividef(float a, float b) noexcept { return a / b; }

// Atomics: read-modify-writes (fibers never run concurrently), which the checker records as atomic
// accesses. Integer arithmetic wraps.
#  if LOWBIT_SIMT_CHECKER
#    define LOWBIT_SIMT_ATOMIC_ATTR __attribute__((noinline)) LOWBIT_SIMT_UNCHECKED
#    define LOWBIT_SIMT_CALLER_ __builtin_return_address(0)
#  else
#    define LOWBIT_SIMT_ATOMIC_ATTR
#    define LOWBIT_SIMT_CALLER_ nullptr
#  endif
#  define LOWBIT_SIMT_ATOMIC_(name, T, expr)                                                       \
    LOWBIT_SIMT_ATOMIC_ATTR inline T name(T* address, T val) noexcept {                            \
      const ::lowbit::simt::detail::atomic_scope lowbit_scope_(address, sizeof(T), LOWBIT_SIMT_CALLER_); \
      const T old = *address;                                                                      \
      *address = (expr);                                                                           \
      return old;                                                                                  \
    }
#  define LOWBIT_SIMT_WRAP_(T, op) static_cast<T>(static_cast<std::make_unsigned_t<T>>(old) op static_cast<std::make_unsigned_t<T>>(val))
LOWBIT_SIMT_ATOMIC_(atomicAdd, int, LOWBIT_SIMT_WRAP_(int, +))
LOWBIT_SIMT_ATOMIC_(atomicAdd, unsigned, old + val)
LOWBIT_SIMT_ATOMIC_(atomicAdd, unsigned long long, old + val)
LOWBIT_SIMT_ATOMIC_(atomicAdd, float, old + val)
LOWBIT_SIMT_ATOMIC_(atomicAdd, double, old + val)
LOWBIT_SIMT_ATOMIC_(atomicSub, int, LOWBIT_SIMT_WRAP_(int, -))
LOWBIT_SIMT_ATOMIC_(atomicSub, unsigned, old - val)
LOWBIT_SIMT_ATOMIC_(atomicExch, int, val)
LOWBIT_SIMT_ATOMIC_(atomicExch, unsigned, val)
LOWBIT_SIMT_ATOMIC_(atomicExch, unsigned long long, val)
LOWBIT_SIMT_ATOMIC_(atomicExch, float, val)
LOWBIT_SIMT_ATOMIC_(atomicMax, int, old > val ? old : val)
LOWBIT_SIMT_ATOMIC_(atomicMax, unsigned, old > val ? old : val)
LOWBIT_SIMT_ATOMIC_(atomicMax, unsigned long long, old > val ? old : val)
LOWBIT_SIMT_ATOMIC_(atomicMax, long long, old > val ? old : val)
LOWBIT_SIMT_ATOMIC_(atomicMin, int, old < val ? old : val)
LOWBIT_SIMT_ATOMIC_(atomicMin, unsigned, old < val ? old : val)
LOWBIT_SIMT_ATOMIC_(atomicMin, unsigned long long, old < val ? old : val)
LOWBIT_SIMT_ATOMIC_(atomicMin, long long, old < val ? old : val)
LOWBIT_SIMT_ATOMIC_(atomicAnd, int, old & val)
LOWBIT_SIMT_ATOMIC_(atomicAnd, unsigned, old & val)
LOWBIT_SIMT_ATOMIC_(atomicAnd, unsigned long long, old & val)
LOWBIT_SIMT_ATOMIC_(atomicOr, int, old | val)
LOWBIT_SIMT_ATOMIC_(atomicOr, unsigned, old | val)
LOWBIT_SIMT_ATOMIC_(atomicOr, unsigned long long, old | val)
LOWBIT_SIMT_ATOMIC_(atomicXor, int, old ^ val)
LOWBIT_SIMT_ATOMIC_(atomicXor, unsigned, old ^ val)
LOWBIT_SIMT_ATOMIC_(atomicXor, unsigned long long, old ^ val)
LOWBIT_SIMT_ATOMIC_(atomicInc, unsigned, old >= val ? 0u : old + 1u)
LOWBIT_SIMT_ATOMIC_(atomicDec, unsigned, (old == 0u || old > val) ? val : old - 1u)
#  undef LOWBIT_SIMT_WRAP_
#  undef LOWBIT_SIMT_ATOMIC_

#  define LOWBIT_SIMT_CAS_(T)                                                                      \
    LOWBIT_SIMT_ATOMIC_ATTR inline T atomicCAS(T* address, T compare, T val) noexcept {           \
      const ::lowbit::simt::detail::atomic_scope lowbit_scope_(address, sizeof(T), LOWBIT_SIMT_CALLER_); \
      const T old = *address;                                                                      \
      if (old == compare) *address = val;                          \
      return old;                                                  \
    }
LOWBIT_SIMT_CAS_(int)
LOWBIT_SIMT_CAS_(unsigned)
LOWBIT_SIMT_CAS_(unsigned long long)
LOWBIT_SIMT_CAS_(unsigned short)
#  undef LOWBIT_SIMT_CAS_

#endif  // !defined(__CUDACC__)
