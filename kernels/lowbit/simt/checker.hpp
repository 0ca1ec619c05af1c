// SPDX-License-Identifier: Apache-2.0
/// @file checker.hpp
/// @brief The SIMT executor's memory checker: what compute-sanitizer's racecheck, initcheck and
///        memcheck find, for kernels run on the CPU. Included by simt.hpp when LOWBIT_SIMT_RACECHECK
///        is defined; never include it directly.
///
/// How it sees memory: the translation unit is compiled with `-fsanitize=thread` (g++ or clang++),
/// which makes the compiler call `__tsan_read4(p)`, `__tsan_write16(p)`, ... before every load and
/// store that may touch shared state, and is linked WITHOUT the ThreadSanitizer runtime: this file
/// defines those entry points. Calls from host code return at once; calls from a kernel (a fiber)
/// are checked against the memory kernels share:
/// - static shared memory (the LOWBIT_SHARED arena) and dynamic shared memory of the running block;
/// - device allocations (simt::device_malloc), with their 256-byte redzones.
/// Everything else a kernel touches (its own stack, kernel parameters, constant tables) is private
/// or read-only and is not checked.
///
/// What it reports, as lowbit::simt::error with the kernel, both accesses' file:line (through
/// addr2line), and thread and block indices:
/// - `race`: two accesses to one byte, at least one a write, not both atomic, by different threads
///   that nothing orders. Within a block, `__syncthreads()` (and its variants) orders everything
///   before it against everything after it, and a completed `__syncwarp(mask)` orders the accesses
///   of the lanes in `mask`. Warp shuffles and votes do not order memory (CUDA Programming Guide:
///   "These intrinsics do not imply a memory barrier"). Blocks of one launch are never ordered with
///   each other (their order and concurrency on a GPU are undefined), so any conflicting non-atomic
///   pair between two blocks is reported, whatever order the executor ran them in, unless the
///   blocks synchronized the way the CUDA memory model allows (the "last block" pattern of the
///   CUDA samples' threadFenceReduction): the first access's block released it, a thread of it
///   executing `__threadfence()` after the access (the accessing thread, or any thread of the
///   block after a `__syncthreads()` that follows the access) and then an atomic on some location;
///   and the second access's thread acquired it, an atomic on that location after the release
///   (atomic read-modify-writes form one release sequence), then `__threadfence()`, then the
///   access. Launches are ordered (one stream).
/// - `uninitialized shared memory read`: a byte of shared memory no thread of this block wrote.
/// - `uninitialized device memory read`: a byte of a device allocation that neither the host
///   (copies, memsets: simt::device_written) nor any kernel wrote.
/// - `out-of-bounds`: an access that ends outside its device allocation (in a redzone), past the
///   dynamic shared memory of the launch, or past the static shared memory the kernel declared.
/// - `misaligned`: an access the compiler emitted as naturally aligned (a typed load or store of
///   2, 4, 8 or 16 bytes, e.g. through `uint4`) at an address that is not, which faults on a GPU.
/// A report stops the launch (as strict-mode findings do). The checker keeps, per byte, the last
/// write and the last reads by two different threads, which finds every unordered write/read pair.
#pragma once

#if !defined(LOWBIT_SIMT_EXECUTOR) || !LOWBIT_SIMT_CHECKER
#  error "checker.hpp is included by simt.hpp under LOWBIT_SIMT_RACECHECK"
#endif

LOWBIT_NAMESPACE_BEGIN
namespace simt {
namespace detail {

enum class acc_kind : std::uint8_t { read, write, atomic };

inline const char* acc_name(acc_kind k) noexcept {
  return k == acc_kind::read ? "read" : (k == acc_kind::write ? "write" : "atomic read-modify-write");
}

/// Shadow cells of the static shared memory arena and of the launch's dynamic shared memory.
inline std::vector<shadow_cell>& smem_shadow() {
  static std::vector<shadow_cell> v;
  return v;
}
inline std::vector<shadow_cell>& dyn_shadow() {
  static std::vector<shadow_cell> v;
  return v;
}

LOWBIT_SIMT_UNCHECKED inline void check_launch_begin(exec& ex) {
  ex.releases.clear();
  ex.acquires.clear();
  ex.last_fence.clear();
  auto& s = smem_shadow();
  if (s.size() < static_shared_limit) s.resize(static_shared_limit);
  auto& d = dyn_shadow();
  d.assign(ex.dyn_bytes, shadow_cell{});
}

/// "thread (x,y,z) of block (x,y,z)" of linear thread `t` in linear block `b` of the running launch.
LOWBIT_SIMT_UNCHECKED inline void append_linear(std::string& m, const exec& ex, unsigned t, unsigned b) {
  append(m, "thread (%u,%u,%u) of block (%u,%u,%u)", t % ex.block.x, (t / ex.block.x) % ex.block.y,
         t / (ex.block.x * ex.block.y), b % ex.grid.x, (b / ex.grid.x) % ex.grid.y, b / (ex.grid.x * ex.grid.y));
}

/// Ends the kernel with a checker report: `ex.msg` is set, its "{@k}" refer to ex.report_pcs.
[[noreturn]] LOWBIT_SIMT_UNCHECKED inline void report(exec& ex) {
  ex.msg += " [kernel {#0}]";
  t_checker_busy = false;
  fail(ex);
}

/// Starts a report: "simt checker: <what>: <kind> of <n> bytes at <where> by <thread> at {@1}".
LOWBIT_SIMT_UNCHECKED inline void begin_report(exec& ex, const char* what, acc_kind k, std::size_t n,
                                               const std::string& where, const void* pc) {
  ex.report_pcs.assign({ex.kernel, pc});
  ex.msg = "simt checker: ";
  append(ex.msg, "%s: %s of %zu bytes at %s by ", what, acc_name(k), n, where.c_str());
  append_linear(ex.msg, ex, g_cur->linear, ex.block_linear);
  ex.msg += " at {@1}";
}

/// The key of a thread's fence and atomic records: its block's serial number and its index.
LOWBIT_SIMT_UNCHECKED inline std::uint64_t sync_key(std::uint64_t cta, unsigned thread) noexcept { return cta << 16 | thread; }

/// Whether access `a` of another block is ordered before `cur` by a release of a's block and an
/// acquire of cur's thread on one location (see the file comment).
LOWBIT_SIMT_UNCHECKED inline bool synchronized(const exec& ex, const access_rec& a, const access_rec& cur) {
  const auto rel = ex.releases.find(a.cta);
  const auto acq = ex.acquires.find(sync_key(cur.cta, cur.thread));
  if (rel == ex.releases.end() || acq == ex.acquires.end()) return false;
  for (const exec::release_rec& r : rel->second) {
    if (r.fence_time <= a.time || (r.thread != a.thread && r.fence_bar <= a.bar)) continue;
    for (const exec::acquire_rec& q : acq->second)
      if (q.loc == r.loc && q.atomic_time > r.atomic_time && q.fence_time != 0 && q.fence_time < cur.time) return true;
  }
  return false;
}

/// A `__threadfence()` by kernel code: completes the thread's pending acquires.
LOWBIT_SIMT_UNCHECKED inline void on_fence() {
  if (!t_in_fiber || g_exec == nullptr) return;
  exec& ex = *g_exec;
  const std::uint64_t key = sync_key(ex.cta_serial, g_cur->linear);
  const std::uint64_t now = ++ex.clock;
  ex.last_fence[key] = {now, ex.bar_epoch};
  const auto acq = ex.acquires.find(key);
  if (acq != ex.acquires.end())
    for (exec::acquire_rec& q : acq->second)
      if (q.fence_time == 0) q.fence_time = now;
}

/// An atomic by kernel code at `loc`: a release if the thread has fenced, and a pending acquire.
LOWBIT_SIMT_UNCHECKED inline void on_atomic(const void* loc) {
  exec& ex = *g_exec;
  const std::uint64_t key = sync_key(ex.cta_serial, g_cur->linear);
  const std::uint64_t now = ++ex.clock;
  const auto f = ex.last_fence.find(key);
  if (f != ex.last_fence.end())
    ex.releases[ex.cta_serial].push_back({f->second.first, now, loc, f->second.second, static_cast<std::uint16_t>(g_cur->linear)});
  ex.acquires[key].push_back({now, 0, loc});
}

/// Whether access `a` (already recorded) and the running thread's access `cur` may conflict
/// (`shared`: the memory is the block's own, so other blocks' accesses were to other memory).
LOWBIT_SIMT_UNCHECKED inline bool unordered(const exec& ex, const access_rec& a, const access_rec& cur, bool shared) {
  if (a.pc == nullptr || a.launch != cur.launch) return false;  // none, or an earlier launch (stream order)
  if (a.atomic && cur.atomic) return false;
  if (a.cta != cur.cta) return !shared && !synchronized(ex, a, cur);  // blocks are not ordered but by fence + atomic
  if (a.thread == cur.thread || a.bar != cur.bar) return false;  // program order, or a __syncthreads between
  if (a.thread / 32u == cur.thread / 32u) {
    const unsigned both = (1u << (a.thread % 32u)) | (1u << (cur.thread % 32u));
    const auto& syncs = ex.warp_syncs[cur.thread / 32u];
    for (std::size_t k = a.wseq; k < syncs.size(); ++k)
      if ((syncs[k] & both) == both) return false;  // a __syncwarp both lanes took part in
  }
  return shared || !synchronized(ex, a, cur);  // in device memory, fence + atomic order threads too
}

LOWBIT_SIMT_UNCHECKED inline void report_race(exec& ex, acc_kind k, std::size_t n, const std::string& where,
                                              const void* pc, const access_rec& prev, acc_kind prev_kind) {
  begin_report(ex, "race", k, n, where, pc);
  ex.report_pcs.push_back(prev.pc);
  append(ex.msg, " conflicts with a %s by ", acc_name(prev_kind));
  append_linear(ex.msg, ex, prev.thread, prev.block);
  ex.msg += " at {@2}";
  ex.msg += prev.cta != ex.cta_serial ? " (blocks of one launch are not ordered, and no __threadfence() + atomic release and acquire orders them)"
                                      : " (no __syncthreads() or __syncwarp() orders them)";
  report(ex);
}

/// The shadow cells of [a, a + n) (kind none: memory no kernel shares), after reporting an access
/// that leaves its memory as out-of-bounds (does not return then).
LOWBIT_SIMT_UNCHECKED inline mem_region classify(exec& ex, std::uintptr_t a, std::size_t n, acc_kind k, const void* pc,
                                                 shadow_cell*& cells) {
  const mem_region r = locate(ex, a);
  if (r.kind == mem_region::none) return r;
  if (!r.holds(n)) {
    begin_report(ex, "out-of-bounds", k, n, describe(r), pc);
    if (!r.before) append(ex.msg, ": the access ends %zu bytes past the end", r.off + n - r.size);
    report(ex);
  }
  cells = r.kind == mem_region::smem ? smem_shadow().data() + r.off
          : r.kind == mem_region::dyn ? dyn_shadow().data() + r.off
                                      : r.block->shadow.get() + r.off;
  return r;
}

/// Clears the checker's busy flag when an access was checked (reports leave the fiber instead).
struct busy_scope {
  LOWBIT_SIMT_UNCHECKED busy_scope() { t_checker_busy = true; }
  LOWBIT_SIMT_UNCHECKED ~busy_scope() { t_checker_busy = false; }
};

/// Checks one access of kernel code (see on_access).
__attribute__((noinline)) LOWBIT_SIMT_UNCHECKED inline void check_access(const void* p, std::size_t n, acc_kind k,
                                                                         bool aligned, const void* pc) {
  const busy_scope busy;
  exec& ex = *g_exec;
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  const fiber& f = *g_cur;
  // the thread's own stack (locals, kernel parameters): private, not checked, alignment included:
  // the host compiler lays it out, and g++ reports a 16-byte copy of an 8-byte aligned struct (a
  // kernel parameter's two int64 fields) through __tsan_read16, the "aligned" entry point
  if (a >= reinterpret_cast<std::uintptr_t>(f.stack->lo()) && a < reinterpret_cast<std::uintptr_t>(f.stack->hi())) return;
  if (aligned && (a & (n - 1)) != 0) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%p (a %zu-byte access needs %zu-byte alignment)", p, n, n);
    begin_report(ex, "misaligned", k, n, buf, pc);
    report(ex);
  }
  shadow_cell* cells = nullptr;
  const mem_region r = classify(ex, a, n, k, pc, cells);
  if (r.kind == mem_region::none) return;
  access_rec cur;
  cur.pc = pc;
  cur.cta = ex.cta_serial;
  cur.launch = ex.launch_id;
  cur.block = ex.block_linear;
  cur.bar = ex.bar_epoch;
  cur.wseq = static_cast<std::uint32_t>(ex.warp_syncs[f.linear / 32u].size());
  cur.thread = static_cast<std::uint16_t>(f.linear);
  cur.atomic = k == acc_kind::atomic;
  cur.time = ++ex.clock;
  const bool shared = r.kind != mem_region::device;
  const bool reads = k != acc_kind::write, writes = k != acc_kind::read;
  for (std::size_t i = 0; i < n; ++i) {
    shadow_cell& c = cells[i];
    if (reads) {
      const bool init = shared ? c.init == ex.cta_serial : c.init != 0;
      if (!init) {
        begin_report(ex, shared ? "uninitialized shared memory read" : "uninitialized device memory read", k, n, describe(r), pc);
        append(ex.msg, ": byte %zu of the access was never written%s", i, shared ? " by this block" : "");
        report(ex);
      }
      if (unordered(ex, c.w, cur, shared))
        report_race(ex, k, n, describe(r), pc, c.w, c.w.atomic ? acc_kind::atomic : acc_kind::write);
    }
    if (writes) {
      if (!reads && unordered(ex, c.w, cur, shared))
        report_race(ex, k, n, describe(r), pc, c.w, c.w.atomic ? acc_kind::atomic : acc_kind::write);
      if (unordered(ex, c.r1, cur, shared))
        report_race(ex, k, n, describe(r), pc, c.r1, c.r1.atomic ? acc_kind::atomic : acc_kind::read);
      if (unordered(ex, c.r2, cur, shared))
        report_race(ex, k, n, describe(r), pc, c.r2, c.r2.atomic ? acc_kind::atomic : acc_kind::read);
      c.w = cur;
      c.init = shared ? ex.cta_serial : 1;
    } else {
      if (c.r1.pc != nullptr && c.r1.thread != cur.thread) c.r2 = c.r1;
      c.r1 = cur;
    }
  }
}

/// The checker's entry for every access the program makes: only kernel code (a fiber) is checked,
/// and host code pays two thread-local tests.
LOWBIT_SIMT_UNCHECKED inline void on_access(const void* p, std::size_t n, acc_kind k, bool aligned, const void* pc) {
  if (t_in_fiber && !t_checker_busy && n != 0) check_access(p, n, k, aligned, pc);
}

/// Records an atomic read-modify-write by kernel code (the SIMT atomics are not instrumented).
struct atomic_scope {
  LOWBIT_SIMT_UNCHECKED atomic_scope(const void* p, std::size_t n, const void* pc) {
    on_access(p, n, acc_kind::atomic, true, pc);
    if (t_in_fiber && g_exec != nullptr) on_atomic(p);
  }
};

}  // namespace detail
}  // namespace simt
LOWBIT_NAMESPACE_END

// ---- the instrumentation's entry points ------------------------------------------------------
// Weak definitions: one copy per program whatever the number of translation units.

#  define LOWBIT_SIMT_HOOK extern "C" __attribute__((weak, used, noinline)) LOWBIT_SIMT_UNCHECKED
#  define LOWBIT_SIMT_ACCESS_HOOKS_(N)                                                                    \
    LOWBIT_SIMT_HOOK void __tsan_read##N(void* p) {                                                        \
      ::lowbit::simt::detail::on_access(p, N, ::lowbit::simt::detail::acc_kind::read, true,                \
                                        __builtin_return_address(0));                                     \
    }                                                                                                       \
    LOWBIT_SIMT_HOOK void __tsan_write##N(void* p) {                                                       \
      ::lowbit::simt::detail::on_access(p, N, ::lowbit::simt::detail::acc_kind::write, true,               \
                                        __builtin_return_address(0));                                     \
    }                                                                                                       \
    LOWBIT_SIMT_HOOK void __tsan_unaligned_read##N(void* p) {                                              \
      ::lowbit::simt::detail::on_access(p, N, ::lowbit::simt::detail::acc_kind::read, false,               \
                                        __builtin_return_address(0));                                     \
    }                                                                                                       \
    LOWBIT_SIMT_HOOK void __tsan_unaligned_write##N(void* p) {                                             \
      ::lowbit::simt::detail::on_access(p, N, ::lowbit::simt::detail::acc_kind::write, false,              \
                                        __builtin_return_address(0));                                     \
    }                                                                                                       \
    LOWBIT_SIMT_HOOK void __tsan_volatile_read##N(void* p) {                                               \
      ::lowbit::simt::detail::on_access(p, N, ::lowbit::simt::detail::acc_kind::read, false,               \
                                        __builtin_return_address(0));                                     \
    }                                                                                                       \
    LOWBIT_SIMT_HOOK void __tsan_volatile_write##N(void* p) {                                              \
      ::lowbit::simt::detail::on_access(p, N, ::lowbit::simt::detail::acc_kind::write, false,              \
                                        __builtin_return_address(0));                                     \
    }
LOWBIT_SIMT_ACCESS_HOOKS_(1)
LOWBIT_SIMT_ACCESS_HOOKS_(2)
LOWBIT_SIMT_ACCESS_HOOKS_(4)
LOWBIT_SIMT_ACCESS_HOOKS_(8)
LOWBIT_SIMT_ACCESS_HOOKS_(16)
#  undef LOWBIT_SIMT_ACCESS_HOOKS_

LOWBIT_SIMT_HOOK void __tsan_read_range(void* p, long n) {
  ::lowbit::simt::detail::on_access(p, static_cast<std::size_t>(n), ::lowbit::simt::detail::acc_kind::read, false, __builtin_return_address(0));
}
LOWBIT_SIMT_HOOK void __tsan_write_range(void* p, long n) {
  ::lowbit::simt::detail::on_access(p, static_cast<std::size_t>(n), ::lowbit::simt::detail::acc_kind::write, false, __builtin_return_address(0));
}
LOWBIT_SIMT_HOOK void __tsan_init() {}
LOWBIT_SIMT_HOOK void __tsan_func_entry(void*) {}
LOWBIT_SIMT_HOOK void __tsan_func_exit(void*) {}
LOWBIT_SIMT_HOOK void __tsan_vptr_update(void* p, void*) {
  ::lowbit::simt::detail::on_access(p, sizeof(void*), ::lowbit::simt::detail::acc_kind::write, true,
                                    __builtin_return_address(0));
}
LOWBIT_SIMT_HOOK void __tsan_vptr_read(void* p) {
  ::lowbit::simt::detail::on_access(p, sizeof(void*), ::lowbit::simt::detail::acc_kind::read, true,
                                    __builtin_return_address(0));
}

// Atomic operations of host code (the C++ library's reference counts, ...): performed as such.
// Kernel atomics are the executor's own functions, recorded through atomic_scope.
#  define LOWBIT_SIMT_ATOMIC_HOOKS_(N, T)                                                                          \
    LOWBIT_SIMT_HOOK T __tsan_atomic##N##_load(const volatile void* a, int) {                                        \
      return __atomic_load_n(static_cast<const volatile T*>(a), __ATOMIC_SEQ_CST);                                     \
    }                                                                                                                  \
    LOWBIT_SIMT_HOOK void __tsan_atomic##N##_store(volatile void* a, T v, int) {                                     \
      __atomic_store_n(static_cast<volatile T*>(a), v, __ATOMIC_SEQ_CST);                                              \
    }                                                                                                                  \
    LOWBIT_SIMT_HOOK T __tsan_atomic##N##_exchange(volatile void* a, T v, int) {                                     \
      return __atomic_exchange_n(static_cast<volatile T*>(a), v, __ATOMIC_SEQ_CST);                                    \
    }                                                                                                                  \
    LOWBIT_SIMT_HOOK T __tsan_atomic##N##_fetch_add(volatile void* a, T v, int) {                                    \
      return __atomic_fetch_add(static_cast<volatile T*>(a), v, __ATOMIC_SEQ_CST);                                     \
    }                                                                                                                  \
    LOWBIT_SIMT_HOOK T __tsan_atomic##N##_fetch_sub(volatile void* a, T v, int) {                                    \
      return __atomic_fetch_sub(static_cast<volatile T*>(a), v, __ATOMIC_SEQ_CST);                                     \
    }                                                                                                                  \
    LOWBIT_SIMT_HOOK T __tsan_atomic##N##_fetch_and(volatile void* a, T v, int) {                                    \
      return __atomic_fetch_and(static_cast<volatile T*>(a), v, __ATOMIC_SEQ_CST);                                     \
    }                                                                                                                  \
    LOWBIT_SIMT_HOOK T __tsan_atomic##N##_fetch_or(volatile void* a, T v, int) {                                     \
      return __atomic_fetch_or(static_cast<volatile T*>(a), v, __ATOMIC_SEQ_CST);                                      \
    }                                                                                                                  \
    LOWBIT_SIMT_HOOK T __tsan_atomic##N##_fetch_xor(volatile void* a, T v, int) {                                    \
      return __atomic_fetch_xor(static_cast<volatile T*>(a), v, __ATOMIC_SEQ_CST);                                     \
    }                                                                                                                  \
    LOWBIT_SIMT_HOOK T __tsan_atomic##N##_fetch_nand(volatile void* a, T v, int) {                                   \
      return __atomic_fetch_nand(static_cast<volatile T*>(a), v, __ATOMIC_SEQ_CST);                                    \
    }                                                                                                                  \
    LOWBIT_SIMT_HOOK bool __tsan_atomic##N##_compare_exchange_strong(volatile void* a, void* c, T v, int, int) {    \
      return __atomic_compare_exchange_n(static_cast<volatile T*>(a), static_cast<T*>(c), v, false, __ATOMIC_SEQ_CST,  \
                                         __ATOMIC_SEQ_CST);                                                            \
    }                                                                                                                  \
    LOWBIT_SIMT_HOOK bool __tsan_atomic##N##_compare_exchange_weak(volatile void* a, void* c, T v, int, int) {      \
      return __atomic_compare_exchange_n(static_cast<volatile T*>(a), static_cast<T*>(c), v, true, __ATOMIC_SEQ_CST,   \
                                         __ATOMIC_SEQ_CST);                                                            \
    }
LOWBIT_SIMT_ATOMIC_HOOKS_(8, unsigned char)
LOWBIT_SIMT_ATOMIC_HOOKS_(16, unsigned short)
LOWBIT_SIMT_ATOMIC_HOOKS_(32, unsigned int)
LOWBIT_SIMT_ATOMIC_HOOKS_(64, unsigned long)
#  undef LOWBIT_SIMT_ATOMIC_HOOKS_
LOWBIT_SIMT_HOOK void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
LOWBIT_SIMT_HOOK void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }
#  undef LOWBIT_SIMT_HOOK
