// SPDX-License-Identifier: Apache-2.0
/// @file cublas.hpp
/// @brief The SIMT build's stand-in for cuBLASLt and cuBLAS: exactly the subset of both APIs that
///        lowbit's launchers (kernels/lowbit/cuda/int8.cuh) and their tests call, with NVIDIA's names,
///        types, enumerator values and signatures, so that the launchers' library paths are the same
///        source under nvcc (real <cublasLt.h>/<cublas_v2.h>) and under the SIMT executor (this file).
///
/// The stand-in computes what the documentation defines and returns the documented status for the
/// arguments the real library rejects. Every rule below cites its source: NVIDIA's cuBLAS
/// documentation (docs.nvidia.com/cuda/cublas, "cuBLASLt API Reference" for the Lt calls and "cuBLAS
/// Level-3 Function Reference"/"BLAS-like Extension" for cublasGemmEx) or the comments of CUDA 13.0's
/// cublasLt.h, which state the return codes of each function. tests/kernels/cublas_api_conformance.cpp
/// checks every enumerator value, struct size and function signature here against the real headers.
/// Quotes marked "cublasLt.h"/"cublas_api.h" were checked against CUDA 13.0's headers; quotes marked
/// "cuBLAS API"/"cuBLASLt API" are from the HTML documentation's sections of those names and were
/// not re-read for this file (no copy of the pages was at hand): check them when the toolkit moves.
///
/// What it implements:
/// - cublasLtMatmul (D = alpha op(A) op(B) + beta C, column-major layouts with leading dimensions) for
///   the one type row lowbit uses: CUBLAS_COMPUTE_32I, scale type CUDA_R_32I, A and B CUDA_R_8I,
///   C and D CUDA_R_32I ("IMMA" kernels). Products and sums are exact in 32-bit two's complement
///   (wrapping, as the integer tensor-core instructions do); the result does not depend on order.
///   The documentation gives this row's kernels as IMMA kernels with requirements (TN, m and k
///   multiples of 4, leading dimensions multiples of 4, 4-byte aligned pointers); the stand-in
///   models the row as served by IMMA kernels only, so these requirements decide whether an
///   algorithm exists: cublasLtMatmulAlgoGetHeuristic (and cublasLtMatmul) return
///   CUBLAS_STATUS_NOT_SUPPORTED for a configuration no kernel takes, and the heuristic returns zero
///   results when the preferences' alignments exclude every algorithm.
///
///   Stand-in choices (the documentation leaves them open; each is the strictest reading, so that a
///   launcher passing here does not depend on a particular library version's leniency): the
///   heuristic offers two algorithms, a split-K one (two int32 partial-sum planes in the workspace,
///   8 m n bytes, really used) when the workspace preference allows it, then a direct one (no
///   workspace). An algorithm needs the pointer alignments the preference promised (default 256
///   bytes: CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES says algorithms may rely on them); a pointer
///   aligned less than its algorithm needs is CUBLAS_STATUS_INVALID_VALUE (parameters "in conflict").
///   An algo not returned by a heuristic query for the same problem is CUBLAS_STATUS_INVALID_VALUE.
/// - cublasGemmEx with CUBLAS_COMPUTE_32F (or _PEDANTIC), float alpha/beta, A and B both CUDA_R_16F,
///   CUDA_R_16BF or CUDA_R_32F, C CUDA_R_32F. Summation order (the stand-in's own; the real library's
///   order is unspecified and differs by kernel): for each output, k is cut into consecutive slices of
///   16; each slice is summed with fmaf from 0 in increasing index; the slice sums are added left to
///   right; then C = alpha * sum (+ beta * C, with fmaf, if beta != 0; C is not read if beta == 0).
///   16-bit products are exact in float, so the result is within gamma_k * sum |a b| of the exact sum,
///   gamma_k = k u / (1 - k u), u = 2^-24, like any float32 accumulation order.
///
/// Everything else is outside the subset: attributes other than those below return
/// CUBLAS_STATUS_NOT_SUPPORTED from the setter, other type rows CUBLAS_STATUS_NOT_SUPPORTED from the
/// heuristic/matmul/GemmEx (the real library accepts some of them; the stand-in never computes
/// something it does not define). Handles and descriptors are tracked in a registry, so a null, never
/// created or destroyed one is reported (handles: CUBLAS_STATUS_NOT_INITIALIZED; descriptors:
/// CUBLAS_STATUS_INVALID_VALUE) where the real library would have undefined behaviour.
///
/// "Device" memory is host memory in the SIMT build; the stand-in reads and writes it from host code,
/// checked like a kernel's accesses (stand_in_detail::device_access: bounds of simt::device_malloc
/// allocations, and in the checker build initcheck; its writes are recorded for the checker).
/// Stream-ordered work is immediate. `lowbit::simt::cublas_last_error()` says why the last call that
/// did not return CUBLAS_STATUS_SUCCESS failed; `lowbit::simt::cublas_calls()` counts the GEMMs run.
///
/// The API lives in namespace `lowbit_simt_cublas` (so a program may also link the real libraries
/// without a clash); using-declarations bring exactly the API's names into the global namespace,
/// where the real API lives (not with LOWBIT_SIMT_CUBLAS_NO_GLOBAL_NAMES).
#pragma once

#if defined(__CUDACC__)
#  error "lowbit/simt/cublas.hpp is the SIMT build's stand-in; nvcc builds include <cublasLt.h> and <cublas_v2.h>"
#endif

#include <lowbit/config.hpp>

#include "simt.hpp"  // device allocations, the checker's device_written, simt::error

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <driver_types.h>   // cudaStream_t
#include <library_types.h>  // cudaDataType_t, CUDA_R_*: NVIDIA's own plain C header

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <mutex>
#include <string>
#include <unordered_map>

namespace lowbit_simt_cublas {

// ---- cublas_api.h: the shared types ----------------------------------------------------------

// The enumerations have a fixed underlying type (int, the real ones' size): a caller may pass any
// int (as C callers of the real library can), and the stand-in rejects what is not an enumerator,
// where an unfixed enumeration would make such a value undefined behaviour in C++.
typedef enum : int {
  CUBLAS_STATUS_SUCCESS = 0,
  CUBLAS_STATUS_NOT_INITIALIZED = 1,
  CUBLAS_STATUS_ALLOC_FAILED = 3,
  CUBLAS_STATUS_INVALID_VALUE = 7,
  CUBLAS_STATUS_ARCH_MISMATCH = 8,
  CUBLAS_STATUS_MAPPING_ERROR = 11,
  CUBLAS_STATUS_EXECUTION_FAILED = 13,
  CUBLAS_STATUS_INTERNAL_ERROR = 14,
  CUBLAS_STATUS_NOT_SUPPORTED = 15,
  CUBLAS_STATUS_LICENSE_ERROR = 16
} cublasStatus_t;

typedef enum : int {
  CUBLAS_OP_N = 0,
  CUBLAS_OP_T = 1,
  CUBLAS_OP_C = 2,
  CUBLAS_OP_HERMITAN = 2,
  CUBLAS_OP_CONJG = 3
} cublasOperation_t;

typedef enum : int { CUBLAS_POINTER_MODE_HOST = 0, CUBLAS_POINTER_MODE_DEVICE = 1 } cublasPointerMode_t;

typedef enum : int {
  CUBLAS_GEMM_DFALT = -1,
  CUBLAS_GEMM_DEFAULT = -1,
  CUBLAS_GEMM_ALGO0 = 0,
  CUBLAS_GEMM_ALGO23 = 23,
  CUBLAS_GEMM_DEFAULT_TENSOR_OP = 99,
  CUBLAS_GEMM_DFALT_TENSOR_OP = 99,
  CUBLAS_GEMM_ALGO0_TENSOR_OP = 100,
  CUBLAS_GEMM_ALGO15_TENSOR_OP = 115,
} cublasGemmAlgo_t;

typedef enum : int {
  CUBLAS_COMPUTE_16F = 64,
  CUBLAS_COMPUTE_16F_PEDANTIC = 65,
  CUBLAS_COMPUTE_32F = 68,
  CUBLAS_COMPUTE_32F_PEDANTIC = 69,
  CUBLAS_COMPUTE_32F_FAST_16F = 74,
  CUBLAS_COMPUTE_32F_FAST_16BF = 75,
  CUBLAS_COMPUTE_32F_FAST_TF32 = 77,
  CUBLAS_COMPUTE_64F = 70,
  CUBLAS_COMPUTE_64F_PEDANTIC = 71,
  CUBLAS_COMPUTE_32I = 72,
  CUBLAS_COMPUTE_32I_PEDANTIC = 73,
} cublasComputeType_t;

struct cublasContext;
typedef struct cublasContext* cublasHandle_t;

// ---- cublasLt.h ------------------------------------------------------------------------------

struct cublasLtContext;
typedef struct cublasLtContext* cublasLtHandle_t;

typedef struct {
  std::uint64_t data[8];
} cublasLtMatrixLayoutOpaque_t;
typedef cublasLtMatrixLayoutOpaque_t* cublasLtMatrixLayout_t;

typedef struct {
  std::uint64_t data[8];
} cublasLtMatmulAlgo_t;

typedef struct {
  std::uint64_t data[32];
} cublasLtMatmulDescOpaque_t;
typedef cublasLtMatmulDescOpaque_t* cublasLtMatmulDesc_t;

typedef struct {
  std::uint64_t data[8];
} cublasLtMatmulPreferenceOpaque_t;
typedef cublasLtMatmulPreferenceOpaque_t* cublasLtMatmulPreference_t;

typedef enum : int {
  CUBLASLT_POINTER_MODE_HOST = CUBLAS_POINTER_MODE_HOST,
  CUBLASLT_POINTER_MODE_DEVICE = CUBLAS_POINTER_MODE_DEVICE,
} cublasLtPointerMode_t;

typedef enum : int { CUBLASLT_ORDER_COL = 0 } cublasLtOrder_t;

typedef enum : int { CUBLASLT_EPILOGUE_DEFAULT = 1 } cublasLtEpilogue_t;

/// The matmul descriptor attributes the stand-in implements (the real enum has more).
typedef enum : int {
  CUBLASLT_MATMUL_DESC_COMPUTE_TYPE = 0,
  CUBLASLT_MATMUL_DESC_SCALE_TYPE = 1,
  CUBLASLT_MATMUL_DESC_POINTER_MODE = 2,
  CUBLASLT_MATMUL_DESC_TRANSA = 3,
  CUBLASLT_MATMUL_DESC_TRANSB = 4,
  CUBLASLT_MATMUL_DESC_TRANSC = 5,
  CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
} cublasLtMatmulDescAttributes_t;

/// The preference attributes the stand-in implements (the real enum has more).
typedef enum : int {
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
} cublasLtMatmulPreferenceAttributes_t;

typedef struct {
  cublasLtMatmulAlgo_t algo;
  std::size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
} cublasLtMatmulHeuristicResult_t;

// ---- the implementation's state (not part of the API) ----------------------------------------
// Nested in the API's namespace, so that its unqualified names find the stand-in's declarations
// first even where the real headers are also included (cublas_api_conformance.cpp).

namespace stand_in_detail {

enum class kind : int { lt_handle, blas_handle, matmul_desc, layout, preference };

struct registry {
  std::mutex m;
  std::unordered_map<const void*, kind> live;
  std::atomic<std::uint64_t> lt_matmul{0}, gemm_ex{0};
};
inline registry& objects() {
  static registry r;
  return r;
}
inline std::string& last_error() {
  static thread_local std::string s;
  return s;
}
inline void add(const void* p, kind k) {
  std::lock_guard<std::mutex> g(objects().m);
  objects().live[p] = k;
}
inline bool alive(const void* p, kind k) {
  if (p == nullptr) return false;
  std::lock_guard<std::mutex> g(objects().m);
  const auto it = objects().live.find(p);
  return it != objects().live.end() && it->second == k;
}
inline bool remove(const void* p, kind k) {
  if (p == nullptr) return false;
  std::lock_guard<std::mutex> g(objects().m);
  const auto it = objects().live.find(p);
  if (it == objects().live.end() || it->second != k) return false;
  objects().live.erase(it);
  return true;
}

/// Returns `s` after recording `why` (for cublas_last_error()).
inline cublasStatus_t fail(cublasStatus_t s, const std::string& why) {
  last_error() = why;
  return s;
}

// Descriptor fields (indices into the opaque data[] arrays).
enum : int { d_compute, d_scale, d_pointer_mode, d_transa, d_transb, d_transc, d_epilogue };
enum : int { l_type, l_rows, l_cols, l_ld, l_order };
enum : int { p_workspace, p_align_a, p_align_b, p_align_c, p_align_d };
enum : int { a_magic, a_split, a_workspace, a_fingerprint, a_align_a, a_align_b, a_align_c, a_align_d };
inline constexpr std::uint64_t algo_magic = 0x6c6f77626974a160ull;  // marks an algo the heuristic filled

/// One cublasLtMatmul problem after validation.
struct lt_problem {
  cublasOperation_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
  std::uint64_t m = 0, n = 0, k = 0;
  std::int64_t lda = 0, ldb = 0, ldc = 0, ldd = 0;
  std::uint64_t fingerprint() const {
    std::uint64_t h = 1469598103934665603ull;
    for (std::uint64_t v : {std::uint64_t(ta), std::uint64_t(tb), m, n, k, std::uint64_t(lda), std::uint64_t(ldb),
                            std::uint64_t(ldc), std::uint64_t(ldd)})
      h = (h ^ v) * 1099511628211ull;
    return h;
  }
};

inline bool valid_op(std::uint64_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; }

/// Validates descriptors and layouts of one cublasLtMatmul(AlgoGetHeuristic) call.
inline cublasStatus_t check_problem(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                                    cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t d, lt_problem& p) {
  // cublasLt.h, cublasLtMatmul: CUBLAS_STATUS_INVALID_VALUE "if parameters are unexpectedly NULL, in
  // conflict or in an impossible configuration".
  if (!alive(op, kind::matmul_desc)) return fail(CUBLAS_STATUS_INVALID_VALUE, "matmul descriptor is null or destroyed");
  const cublasLtMatrixLayout_t layouts[4] = {a, b, c, d};
  for (int i = 0; i < 4; ++i)
    if (!alive(layouts[i], kind::layout))
      return fail(CUBLAS_STATUS_INVALID_VALUE, std::string("layout ") + "ABCD"[i] + " is null or destroyed");
  const std::uint64_t* o = op->data;
  // The operation enumerators are N, T and C (C = T for real types); CUBLAS_OP_CONJG is "not supported
  // in the current release" (cublas_api.h), any other value is not an operation.
  if (!valid_op(o[d_transa]) || !valid_op(o[d_transb]))
    return fail(o[d_transa] == CUBLAS_OP_CONJG || o[d_transb] == CUBLAS_OP_CONJG ? CUBLAS_STATUS_NOT_SUPPORTED
                                                                                 : CUBLAS_STATUS_INVALID_VALUE,
                "CUBLASLT_MATMUL_DESC_TRANSA/TRANSB is not CUBLAS_OP_N, _T or _C");
  // cublasLt.h, CUBLASLT_MATMUL_DESC_TRANSC: "Currently only CUBLAS_OP_N is supported."
  if (o[d_transc] != CUBLAS_OP_N)
    return fail(CUBLAS_STATUS_NOT_SUPPORTED, "CUBLASLT_MATMUL_DESC_TRANSC must be CUBLAS_OP_N");
  p.ta = static_cast<cublasOperation_t>(o[d_transa]);
  p.tb = static_cast<cublasOperation_t>(o[d_transb]);
  // Pointer mode HOST or DEVICE: alpha and beta are read where they point, in either mode (the SIMT
  // build's device memory is host memory).
  // Shapes: op(A) is m x k, op(B) k x n, C and D m x n (cuBLASLt API, cublasLtMatmul: "D = alpha *
  // (A * B) + beta * (C)"; a layout's rows and columns are those of the stored matrix, before op).
  const std::uint64_t* la = a->data;
  const std::uint64_t* lb = b->data;
  const std::uint64_t* lc = c->data;
  const std::uint64_t* ld = d->data;
  p.m = p.ta == CUBLAS_OP_N ? la[l_rows] : la[l_cols];
  p.k = p.ta == CUBLAS_OP_N ? la[l_cols] : la[l_rows];
  const std::uint64_t kb = p.tb == CUBLAS_OP_N ? lb[l_rows] : lb[l_cols];
  p.n = p.tb == CUBLAS_OP_N ? lb[l_cols] : lb[l_rows];
  if (kb != p.k)
    return fail(CUBLAS_STATUS_INVALID_VALUE,
                "op(A) has k = " + std::to_string(p.k) + " columns, op(B) " + std::to_string(kb) + " rows");
  if (lc[l_rows] != p.m || lc[l_cols] != p.n || ld[l_rows] != p.m || ld[l_cols] != p.n)
    return fail(CUBLAS_STATUS_INVALID_VALUE,
                "C or D is not m x n = " + std::to_string(p.m) + " x " + std::to_string(p.n));
  // cublasLt.h, CUBLASLT_MATRIX_LAYOUT_ROWS/COLS: "Usually only values that can be expressed as
  // int32_t are supported."
  for (const std::uint64_t* l : {la, lb, lc, ld})
    if (l[l_rows] > 0x7FFFFFFFu || l[l_cols] > 0x7FFFFFFFu)
      return fail(CUBLAS_STATUS_NOT_SUPPORTED, "a layout has more than 2^31 - 1 rows or columns");
  // cublasLt.h, CUBLASLT_MATRIX_LAYOUT_LD: "Currently only non-negative values are supported, must be
  // large enough so that matrix memory locations are not overlapping (e.g. greater or equal to
  // CUBLASLT_MATRIX_LAYOUT_ROWS in case of CUBLASLT_ORDER_COL)."
  const char* names = "ABCD";
  int i = 0;
  for (const std::uint64_t* l : {la, lb, lc, ld}) {
    const auto ldv = static_cast<std::int64_t>(l[l_ld]);
    if (ldv < 0 || static_cast<std::uint64_t>(ldv) < l[l_rows])
      return fail(CUBLAS_STATUS_INVALID_VALUE, std::string("leading dimension of ") + names[i] + " (" +
                                                   std::to_string(ldv) + ") is smaller than its rows (" +
                                                   std::to_string(l[l_rows]) + ")");
    ++i;
  }
  p.lda = static_cast<std::int64_t>(la[l_ld]);
  p.ldb = static_cast<std::int64_t>(lb[l_ld]);
  p.ldc = static_cast<std::int64_t>(lc[l_ld]);
  p.ldd = static_cast<std::int64_t>(ld[l_ld]);
  // Supported type rows: cuBLASLt API, cublasLtMatmul, table of supported data types. The stand-in
  // implements the int8 IMMA row only: compute CUBLAS_COMPUTE_32I, scale CUDA_R_32I, A/B CUDA_R_8I,
  // C/D CUDA_R_32I. The table's other rows (float, and int8 output with a float scale) are not
  // implemented here and return CUBLAS_STATUS_NOT_SUPPORTED.
  const bool imma_row = (o[d_compute] == CUBLAS_COMPUTE_32I || o[d_compute] == CUBLAS_COMPUTE_32I_PEDANTIC) &&
                        o[d_scale] == CUDA_R_32I && la[l_type] == CUDA_R_8I && lb[l_type] == CUDA_R_8I &&
                        lc[l_type] == CUDA_R_32I && ld[l_type] == CUDA_R_32I;
  if (!imma_row)
    return fail(
        CUBLAS_STATUS_NOT_SUPPORTED,
        "type combination not implemented by the stand-in (only COMPUTE_32I, scale R_32I, A/B R_8I, C/D R_32I)");
  // cuBLASLt API, cublasLtMatmul, IMMA requirements with the regular (column) ordering: "Only the
  // "TN" format is supported - A must be transposed and B non-transposed"; "Leading dimensions of
  // matrices A, B, C must be multiples of 4"; "Dimensions m and k must be multiples of 4". In the
  // stand-in's model no other kernel takes this type row, so there is no algorithm:
  // CUBLAS_STATUS_NOT_SUPPORTED, "if current implementation on selected device doesn't support
  // configured operation" (cublasLt.h).
  if (p.ta == CUBLAS_OP_N || p.tb != CUBLAS_OP_N)
    return fail(CUBLAS_STATUS_NOT_SUPPORTED, "int8 IMMA kernels take only the TN form (A transposed, B not)");
  if (p.lda % 4 != 0 || p.ldb % 4 != 0 || p.ldc % 4 != 0 || p.ldd % 4 != 0)
    return fail(CUBLAS_STATUS_NOT_SUPPORTED, "int8 IMMA kernels need leading dimensions that are multiples of 4");
  if (p.m % 4 != 0 || p.k % 4 != 0)
    return fail(CUBLAS_STATUS_NOT_SUPPORTED, "int8 IMMA kernels need m and k multiples of 4 (m = " +
                                                 std::to_string(p.m) + ", k = " + std::to_string(p.k) + ")");
  if (o[d_epilogue] != CUBLASLT_EPILOGUE_DEFAULT)
    return fail(CUBLAS_STATUS_NOT_SUPPORTED, "only CUBLASLT_EPILOGUE_DEFAULT");
  return CUBLAS_STATUS_SUCCESS;
}

/// Largest power of two (at most 256) that divides the address.
inline std::uint64_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uint64_t r = 1;
  while (r < 256 && (a % (r * 2)) == 0) r *= 2;
  return r;
}

/// Fills up to `requested` results for a validated problem under preference values `pref`.
inline int heuristic(const lt_problem& p, const std::uint64_t* pref, int requested,
                     cublasLtMatmulHeuristicResult_t* out) {
  // cuBLASLt API, cublasLtMatmul, IMMA requirements: "All matrix pointers must be 4-byte aligned."
  // An algorithm may assume the alignments the preference promises (cublasLt.h,
  // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*_BYTES: a smaller value "will exclude algorithms that can not
  // work with matrix A that is not as strictly aligned as they need"), so below 4 nothing remains.
  for (int i = p_align_a; i <= p_align_d; ++i)
    if (pref[i] < 4) return 0;
  const std::uint64_t split_bytes = 2 * 4 * p.m * p.n;
  int count = 0;
  for (std::uint64_t split : {std::uint64_t{2}, std::uint64_t{1}}) {
    const std::uint64_t ws = split == 2 ? split_bytes : 0;
    if (split == 2 && (p.k < 8 || ws > pref[p_workspace])) continue;
    if (count == requested) break;
    cublasLtMatmulHeuristicResult_t r{};
    r.algo.data[a_magic] = algo_magic;
    r.algo.data[a_split] = split;
    r.algo.data[a_workspace] = ws;
    r.algo.data[a_fingerprint] = p.fingerprint();
    for (int i = 0; i < 4; ++i) r.algo.data[a_align_a + i] = pref[p_align_a + i];
    r.workspaceSize = static_cast<std::size_t>(ws);
    r.state = CUBLAS_STATUS_SUCCESS;
    r.wavesCount = 1.0f;
    out[count++] = r;
  }
  return count;
}

inline const std::uint64_t* default_preference() {
  // cublasLt.h: MAX_WORKSPACE_BYTES "default: 0 - no workspace allowed"; MIN_ALIGNMENT_*_BYTES
  // "default: 256".
  static const std::uint64_t d[8] = {0, 256, 256, 256, 256, 0, 0, 0};
  return d;
}

inline float load_element(const void* base, cudaDataType_t t, std::int64_t i) {
  switch (t) {
    case CUDA_R_16F: return __half2float(static_cast<const __half*>(base)[i]);
    case CUDA_R_16BF: return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

/// One matrix operand as memory: `cols` runs of `rows` elements of `elem` bytes, `ld` elements apart
/// (a column-major matrix; a workspace is one run).
struct extent {
  const void* p;
  std::int64_t rows, cols, ld;
  std::size_t elem;
};

/// The stand-in's device accesses are checked as a kernel's are (compute-sanitizer watches cuBLAS's
/// kernels too): an operand that lies in a simt::device_malloc allocation must end inside it, and in
/// the checker build (LOWBIT_SIMT_CHECKER) every byte it reads must have been written before
/// (initcheck). Bytes it writes are recorded with simt::device_written, so kernels may read them.
/// Memory outside device allocations (host buffers) is not watched, as for kernels. A finding
/// throws lowbit::simt::error, as the executor reports a kernel's.
inline void device_access(const char* fn, const char* name, const extent& e, bool write) {
  namespace sd = ::lowbit::simt::detail;
  if (e.p == nullptr || e.rows <= 0 || e.cols <= 0) return;
  const auto a = reinterpret_cast<std::uintptr_t>(e.p);
  const std::size_t run = static_cast<std::size_t>(e.rows) * e.elem, stride = static_cast<std::size_t>(e.ld) * e.elem;
  const std::size_t span = static_cast<std::size_t>(e.cols - 1) * stride + run;
  const std::size_t rz = sd::device_redzone;
  std::string problem;
  {
    std::lock_guard<std::mutex> lock(sd::device_mutex());
    auto& m = sd::device_blocks();
    auto next = m.upper_bound(a);
    if (next != m.end() && a + rz >= next->first) {
      problem = "starts " + std::to_string(next->first - a) + " bytes before a " + std::to_string(next->second.bytes) +
                "-byte device allocation";
    } else if (next != m.begin()) {
      const auto& b = std::prev(next)->second;
      const auto lo = reinterpret_cast<std::uintptr_t>(b.ptr), hi = lo + b.bytes;
      if (a < hi + rz && a + span > hi) {
        problem = "ends " + std::to_string(a + span - hi) + " bytes past the end of a " + std::to_string(b.bytes) +
                  "-byte device allocation";
      } else if (a < hi && !write) {
#if LOWBIT_SIMT_CHECKER
        for (std::int64_t j = 0; j < e.cols && problem.empty(); ++j)
          for (std::size_t i = 0; i < run; ++i)
            if (b.shadow[a - lo + static_cast<std::size_t>(j) * stride + i].init == 0) {
              problem = "reads byte " + std::to_string(a - lo + static_cast<std::size_t>(j) * stride + i) + " of a " +
                        std::to_string(b.bytes) + "-byte device allocation, which nothing wrote (uninitialized)";
              break;
            }
#endif
      }
    }
  }
  if (!problem.empty())
    throw ::lowbit::simt::error(std::string("simt: ") + fn + ": " + name + " (" + std::to_string(span) + " bytes at " +
                                std::to_string(a) + ") " + problem);
  if (write)
    for (std::int64_t j = 0; j < e.cols; ++j)
      ::lowbit::simt::device_written(static_cast<const unsigned char*>(e.p) + static_cast<std::size_t>(j) * stride,
                                     run);
}

}  // namespace stand_in_detail

// ---- the API ---------------------------------------------------------------------------------

namespace sid = stand_in_detail;

struct cublasLtContext {
  int unused = 0;
};
struct cublasContext {
  cudaStream_t stream = nullptr;
};

/// cuBLAS API, cublasGetStatusString: a description of the status.
inline const char* cublasGetStatusString(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
  }
  return "unknown error";
}

// cuBLASLt API, cublasLtCreate: CUBLAS_STATUS_INVALID_VALUE "if lightHandle == NULL".
inline cublasStatus_t cublasLtCreate(cublasLtHandle_t* lightHandle) {
  if (lightHandle == nullptr) return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtCreate: lightHandle is NULL");
  *lightHandle = new cublasLtContext();
  sid::add(*lightHandle, sid::kind::lt_handle);
  return CUBLAS_STATUS_SUCCESS;
}

// cuBLASLt API, cublasLtDestroy: CUBLAS_STATUS_NOT_INITIALIZED "if the cuBLASLt handle has not been
// initialized".
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t lightHandle) {
  if (!sid::remove(lightHandle, sid::kind::lt_handle))
    return sid::fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtDestroy: handle not created or already destroyed");
  delete lightHandle;
  return CUBLAS_STATUS_SUCCESS;
}

// cublasLt.h, cublasLtMatmulDescCreate: creates the descriptor (defaults: scale type as given, pointer
// mode HOST, TRANSA/B/C CUBLAS_OP_N, epilogue DEFAULT). A null output pointer or a compute type that is
// not a cublasComputeType_t enumerator is CUBLAS_STATUS_INVALID_VALUE.
inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t* matmulDesc, cublasComputeType_t computeType,
                                               cudaDataType_t scaleType) {
  if (matmulDesc == nullptr)
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulDescCreate: matmulDesc is NULL");
  const int c = static_cast<int>(computeType);
  // cublas_api.h's cublasComputeType_t enumerators: 64, 65, 68-75, 77-79.
  if (c < 64 || c > 79 || c == 66 || c == 67 || c == 76)
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulDescCreate: not a cublasComputeType_t");
  auto* d = new cublasLtMatmulDescOpaque_t{};
  d->data[sid::d_compute] = static_cast<std::uint64_t>(c);
  d->data[sid::d_scale] = static_cast<std::uint64_t>(scaleType);
  d->data[sid::d_pointer_mode] = CUBLASLT_POINTER_MODE_HOST;
  d->data[sid::d_transa] = d->data[sid::d_transb] = d->data[sid::d_transc] = CUBLAS_OP_N;
  d->data[sid::d_epilogue] = CUBLASLT_EPILOGUE_DEFAULT;
  *matmulDesc = d;
  sid::add(d, sid::kind::matmul_desc);
  return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t matmulDesc) {
  if (!sid::remove(matmulDesc, sid::kind::matmul_desc))
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE,
                     "cublasLtMatmulDescDestroy: descriptor not created or already destroyed");
  delete matmulDesc;
  return CUBLAS_STATUS_SUCCESS;
}

// cublasLt.h, cublasLtMatmulDescSetAttribute: CUBLAS_STATUS_INVALID_VALUE "if buf is NULL or
// sizeInBytes doesn't match size of internal storage for selected attribute". Sizes: COMPUTE_TYPE,
// SCALE_TYPE, POINTER_MODE, TRANSA/B/C int32_t; EPILOGUE uint32_t (cublasLt.h). Values are checked
// where the real library checks them, by the heuristic and the matmul.
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t matmulDesc,
                                                     cublasLtMatmulDescAttributes_t attr, const void* buf,
                                                     std::size_t sizeInBytes) {
  if (!sid::alive(matmulDesc, sid::kind::matmul_desc))
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulDescSetAttribute: descriptor null or destroyed");
  int field = -1;
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_COMPUTE_TYPE: field = sid::d_compute; break;
    case CUBLASLT_MATMUL_DESC_SCALE_TYPE: field = sid::d_scale; break;
    case CUBLASLT_MATMUL_DESC_POINTER_MODE: field = sid::d_pointer_mode; break;
    case CUBLASLT_MATMUL_DESC_TRANSA: field = sid::d_transa; break;
    case CUBLASLT_MATMUL_DESC_TRANSB: field = sid::d_transb; break;
    case CUBLASLT_MATMUL_DESC_TRANSC: field = sid::d_transc; break;
    case CUBLASLT_MATMUL_DESC_EPILOGUE: field = sid::d_epilogue; break;
  }
  if (field < 0)
    return sid::fail(CUBLAS_STATUS_NOT_SUPPORTED,
                     "cublasLtMatmulDescSetAttribute: attribute outside the stand-in's subset");
  if (buf == nullptr || sizeInBytes != 4)
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE,
                     "cublasLtMatmulDescSetAttribute: buf is NULL or sizeInBytes is not 4");
  if (attr == CUBLASLT_MATMUL_DESC_EPILOGUE) {
    std::uint32_t v;
    std::memcpy(&v, buf, 4);
    if (v != CUBLASLT_EPILOGUE_DEFAULT)
      return sid::fail(CUBLAS_STATUS_NOT_SUPPORTED,
                       "cublasLtMatmulDescSetAttribute: epilogues other than DEFAULT are outside the stand-in");
    matmulDesc->data[field] = v;
    return CUBLAS_STATUS_SUCCESS;
  }
  std::int32_t v;
  std::memcpy(&v, buf, 4);
  if (attr == CUBLASLT_MATMUL_DESC_POINTER_MODE && v != CUBLASLT_POINTER_MODE_HOST && v != CUBLASLT_POINTER_MODE_DEVICE)
    return sid::fail(CUBLAS_STATUS_NOT_SUPPORTED,
                     "cublasLtMatmulDescSetAttribute: pointer modes other than HOST/DEVICE are outside the stand-in");
  matmulDesc->data[field] = static_cast<std::uint64_t>(static_cast<std::uint32_t>(v));
  return CUBLAS_STATUS_SUCCESS;
}

// cublasLt.h, cublasLtMatrixLayoutCreate: a column-major (CUBLASLT_ORDER_COL) rows x cols matrix of
// `type` with leading dimension ld. A null output pointer is CUBLAS_STATUS_INVALID_VALUE; ld is checked
// against the rows where the layout is used (cublasLtMatmul), since it may be changed by an attribute.
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t* matLayout, cudaDataType_t type,
                                                 std::uint64_t rows, std::uint64_t cols, std::int64_t ld) {
  if (matLayout == nullptr)
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatrixLayoutCreate: matLayout is NULL");
  auto* l = new cublasLtMatrixLayoutOpaque_t{};
  l->data[sid::l_type] = static_cast<std::uint64_t>(type);
  l->data[sid::l_rows] = rows;
  l->data[sid::l_cols] = cols;
  l->data[sid::l_ld] = static_cast<std::uint64_t>(ld);
  l->data[sid::l_order] = CUBLASLT_ORDER_COL;
  *matLayout = l;
  sid::add(l, sid::kind::layout);
  return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t matLayout) {
  if (!sid::remove(matLayout, sid::kind::layout))
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE,
                     "cublasLtMatrixLayoutDestroy: layout not created or already destroyed");
  delete matLayout;
  return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t* pref) {
  if (pref == nullptr) return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulPreferenceCreate: pref is NULL");
  auto* p = new cublasLtMatmulPreferenceOpaque_t{};
  std::memcpy(p->data, sid::default_preference(), sizeof p->data);
  *pref = p;
  sid::add(p, sid::kind::preference);
  return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t pref) {
  if (!sid::remove(pref, sid::kind::preference))
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE,
                     "cublasLtMatmulPreferenceDestroy: preference not created or already destroyed");
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}

// cublasLt.h, cublasLtMatmulPreferenceSetAttribute: CUBLAS_STATUS_INVALID_VALUE "if buf is NULL or
// sizeInBytes doesn't match size of internal storage for selected attribute": MAX_WORKSPACE_BYTES is
// uint64_t, MIN_ALIGNMENT_*_BYTES uint32_t.
inline cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t pref,
                                                           cublasLtMatmulPreferenceAttributes_t attr, const void* buf,
                                                           std::size_t sizeInBytes) {
  if (!sid::alive(pref, sid::kind::preference))
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulPreferenceSetAttribute: preference null or destroyed");
  int field = -1;
  std::size_t size = 4;
  switch (attr) {
    case CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES:
      field = sid::p_workspace;
      size = 8;
      break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES: field = sid::p_align_a; break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES: field = sid::p_align_b; break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES: field = sid::p_align_c; break;
    case CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES: field = sid::p_align_d; break;
  }
  if (field < 0)
    return sid::fail(CUBLAS_STATUS_NOT_SUPPORTED,
                     "cublasLtMatmulPreferenceSetAttribute: attribute outside the stand-in's subset");
  if (buf == nullptr || sizeInBytes != size)
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE,
                     "cublasLtMatmulPreferenceSetAttribute: buf is NULL or sizeInBytes is wrong");
  if (size == 8) {
    std::memcpy(&pref->data[field], buf, 8);
  } else {
    std::uint32_t v;
    std::memcpy(&v, buf, 4);
    pref->data[field] = v;
  }
  return CUBLAS_STATUS_SUCCESS;
}

// cublasLt.h, cublasLtMatmulAlgoGetHeuristic: CUBLAS_STATUS_INVALID_VALUE "if requestedAlgoCount is
// less or equal to zero"; CUBLAS_STATUS_NOT_SUPPORTED "if no heuristic function available for current
// configuration"; CUBLAS_STATUS_SUCCESS otherwise, with *returnAlgoCount results (possibly 0).
inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t operationDesc,
                                                     cublasLtMatrixLayout_t Adesc, cublasLtMatrixLayout_t Bdesc,
                                                     cublasLtMatrixLayout_t Cdesc, cublasLtMatrixLayout_t Ddesc,
                                                     cublasLtMatmulPreference_t preference, int requestedAlgoCount,
                                                     cublasLtMatmulHeuristicResult_t heuristicResultsArray[],
                                                     int* returnAlgoCount) {
  if (!sid::alive(lightHandle, sid::kind::lt_handle))
    return sid::fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtMatmulAlgoGetHeuristic: handle not created or destroyed");
  if (requestedAlgoCount <= 0)
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulAlgoGetHeuristic: requestedAlgoCount <= 0");
  if (heuristicResultsArray == nullptr || returnAlgoCount == nullptr)
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulAlgoGetHeuristic: a result pointer is NULL");
  if (!sid::alive(preference, sid::kind::preference))
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmulAlgoGetHeuristic: preference null or destroyed");
  *returnAlgoCount = 0;
  sid::lt_problem p;
  const cublasStatus_t s = sid::check_problem(operationDesc, Adesc, Bdesc, Cdesc, Ddesc, p);
  if (s != CUBLAS_STATUS_SUCCESS) return s;
  *returnAlgoCount = sid::heuristic(p, preference->data, requestedAlgoCount, heuristicResultsArray);
  if (*returnAlgoCount == 0)
    sid::last_error() = "cublasLtMatmulAlgoGetHeuristic: the alignment preferences exclude every algorithm";
  return CUBLAS_STATUS_SUCCESS;
}

// cublasLt.h, cublasLtMatmul: D = alpha * op(A) * op(B) + beta * C. CUBLAS_STATUS_NOT_INITIALIZED "if
// cuBLASLt handle has not been initialized"; CUBLAS_STATUS_INVALID_VALUE "if parameters are in conflict
// or in an impossible configuration; e.g. when workspaceSizeInBytes is less than workspace required by
// configured algo"; CUBLAS_STATUS_NOT_SUPPORTED "if current implementation on selected device doesn't
// support configured operation". cuBLASLt API, cublasLtMatmul: algo may be NULL ("an implicit
// heuristics query with default search preferences will be performed"; the stand-in's implicit query
// takes the given workspace and the pointers' actual alignments). The algo must come from a heuristic
// query for this problem (else INVALID_VALUE: in conflict). C is read only when beta != 0 (BLAS).
inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t lightHandle, cublasLtMatmulDesc_t computeDesc, const void* alpha,
                                     const void* A, cublasLtMatrixLayout_t Adesc, const void* B,
                                     cublasLtMatrixLayout_t Bdesc, const void* beta, const void* C,
                                     cublasLtMatrixLayout_t Cdesc, void* D, cublasLtMatrixLayout_t Ddesc,
                                     const cublasLtMatmulAlgo_t* algo, void* workspace,
                                     std::size_t workspaceSizeInBytes, cudaStream_t stream) {
  (void)stream;  // stream-ordered work runs immediately in the SIMT build
  if (!sid::alive(lightHandle, sid::kind::lt_handle))
    return sid::fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasLtMatmul: handle not created or destroyed");
  sid::lt_problem p;
  const cublasStatus_t s = sid::check_problem(computeDesc, Adesc, Bdesc, Cdesc, Ddesc, p);
  if (s != CUBLAS_STATUS_SUCCESS) return s;
  if (alpha == nullptr || beta == nullptr)
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmul: alpha or beta is NULL");
  std::int32_t al, be;
  std::memcpy(&al, alpha, 4);
  std::memcpy(&be, beta, 4);
  const bool work = p.m > 0 && p.n > 0;
  if (work && (D == nullptr || (p.k > 0 && (A == nullptr || B == nullptr)) || (be != 0 && C == nullptr)))
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmul: A, B, D (or C with beta != 0) is NULL");
  if (workspace == nullptr && workspaceSizeInBytes != 0)
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmul: workspace is NULL with a nonzero size");
  // cuBLASLt API, cublasLtMatmul, parameter workspace: "Must be 256B aligned (i.e. lowest 8 bits of
  // address must be 0)."
  if (workspace != nullptr && sid::alignment_of(workspace) < 256)
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmul: workspace is not 256-byte aligned");
  cublasLtMatmulAlgo_t chosen{};
  if (algo == nullptr) {
    std::uint64_t pref[8] = {workspaceSizeInBytes,
                             sid::alignment_of(A),
                             sid::alignment_of(B),
                             sid::alignment_of(C),
                             sid::alignment_of(D),
                             0,
                             0,
                             0};
    if (C == nullptr) pref[sid::p_align_c] = 256;
    cublasLtMatmulHeuristicResult_t r{};
    if (sid::heuristic(p, pref, 1, &r) == 0)
      return sid::fail(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmul: no algorithm for the pointers' alignment");
    chosen = r.algo;
  } else {
    chosen = *algo;
    if (chosen.data[sid::a_magic] != sid::algo_magic || chosen.data[sid::a_fingerprint] != p.fingerprint())
      return sid::fail(CUBLAS_STATUS_INVALID_VALUE,
                       "cublasLtMatmul: algo was not returned by a heuristic query for this problem");
  }
  if (workspaceSizeInBytes < chosen.data[sid::a_workspace])
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasLtMatmul: workspace of " +
                                                      std::to_string(workspaceSizeInBytes) + " bytes, the algo needs " +
                                                      std::to_string(chosen.data[sid::a_workspace]));
  const void* ptrs[4] = {A, B, C, D};
  for (int i = 0; i < 4; ++i)
    if (ptrs[i] != nullptr && sid::alignment_of(ptrs[i]) < chosen.data[sid::a_align_a + i])
      return sid::fail(CUBLAS_STATUS_INVALID_VALUE, std::string("cublasLtMatmul: ") + "ABCD"[i] + " is aligned to " +
                                                        std::to_string(sid::alignment_of(ptrs[i])) +
                                                        " bytes, the algo needs " +
                                                        std::to_string(chosen.data[sid::a_align_a + i]));
  if (work) {
    const auto m64 = static_cast<std::int64_t>(p.m), n64 = static_cast<std::int64_t>(p.n),
               k64 = static_cast<std::int64_t>(p.k);
    // TN: A is stored k x m, B k x n.
    sid::device_access("cublasLtMatmul", "A", {A, k64, m64, p.lda, 1}, false);
    sid::device_access("cublasLtMatmul", "B", {B, k64, n64, p.ldb, 1}, false);
    if (be != 0) sid::device_access("cublasLtMatmul", "C", {C, m64, n64, p.ldc, 4}, false);
    sid::device_access("cublasLtMatmul", "D", {D, m64, n64, p.ldd, 4}, true);
    if (chosen.data[sid::a_split] == 2)
      sid::device_access("cublasLtMatmul", "workspace", {workspace, 2 * m64 * n64, 1, 2 * m64 * n64, 4}, true);
    const auto* a = static_cast<const std::int8_t*>(A);
    const auto* b = static_cast<const std::int8_t*>(B);
    const auto* c = static_cast<const std::int32_t*>(C);
    auto* d = static_cast<std::int32_t*>(D);
    const auto m = static_cast<std::int64_t>(p.m), n = static_cast<std::int64_t>(p.n),
               k = static_cast<std::int64_t>(p.k);
    const std::int64_t split = static_cast<std::int64_t>(chosen.data[sid::a_split]);
    // TN: op(A)(i, l) = A[l + i lda], op(B)(l, j) = B[l + j ldb]. Wrapping 32-bit arithmetic.
    auto partial = [&](std::int64_t i, std::int64_t j, std::int64_t l0, std::int64_t l1) {
      std::uint32_t acc = 0;
      for (std::int64_t l = l0; l < l1; ++l)
        acc += static_cast<std::uint32_t>(static_cast<std::int32_t>(a[l + i * p.lda]) *
                                          static_cast<std::int32_t>(b[l + j * p.ldb]));
      return acc;
    };
    std::uint32_t* planes = static_cast<std::uint32_t*>(workspace);  // split-K: two m x n planes
    const std::int64_t half = k / 2;
    for (std::int64_t j = 0; j < n; ++j)
      for (std::int64_t i = 0; i < m; ++i) {
        std::uint32_t acc;
        if (split == 2) {
          planes[i + j * m] = partial(i, j, 0, half);
          planes[m * n + i + j * m] = partial(i, j, half, k);
          acc = planes[i + j * m] + planes[m * n + i + j * m];
        } else {
          acc = partial(i, j, 0, k);
        }
        std::uint32_t r = static_cast<std::uint32_t>(al) * acc;
        if (be != 0) r += static_cast<std::uint32_t>(be) * static_cast<std::uint32_t>(c[i + j * p.ldc]);
        d[i + j * p.ldd] = static_cast<std::int32_t>(r);
      }
  }
  sid::objects().lt_matmul.fetch_add(1);
  return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS API, cublasCreate: CUBLAS_STATUS_INVALID_VALUE "if handle == NULL".
inline cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  if (handle == nullptr) return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasCreate: handle is NULL");
  *handle = new cublasContext();
  sid::add(*handle, sid::kind::blas_handle);
  return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS API, cublasDestroy: CUBLAS_STATUS_NOT_INITIALIZED "the library was not initialized".
inline cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  if (!sid::remove(handle, sid::kind::blas_handle))
    return sid::fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasDestroy: handle not created or already destroyed");
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS API, cublasSetStream: CUBLAS_STATUS_NOT_INITIALIZED "the library was not initialized".
inline cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t streamId) {
  if (!sid::alive(handle, sid::kind::blas_handle))
    return sid::fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasSetStream: handle not created or destroyed");
  handle->stream = streamId;
  return CUBLAS_STATUS_SUCCESS;
}

// cuBLAS API, cublasGemmEx: C = alpha op(A) op(B) + beta C, column-major, op(A) m x k, op(B) k x n.
// Status (cuBLAS API, cublasGemmEx, return values): CUBLAS_STATUS_NOT_INITIALIZED "the library was
// not initialized"; CUBLAS_STATUS_INVALID_VALUE "if m < 0 or n < 0 or k < 0, or if transa or transb
// != CUBLAS_OP_N or CUBLAS_OP_C or CUBLAS_OP_T, or if lda < max(1, m) when transa == CUBLAS_OP_N and
// lda < max(1, k) otherwise, or if ldb < max(1, k) when transb == CUBLAS_OP_N and ldb < max(1, n)
// otherwise, or if ldc < max(1, m)"; CUBLAS_STATUS_NOT_SUPPORTED "the combination of the parameters
// Atype, Btype and Ctype or the algorithm, algo is not supported". Summation order: see the file
// comment.
inline cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m,
                                   int n, int k, const void* alpha, const void* A, cudaDataType_t Atype, int lda,
                                   const void* B, cudaDataType_t Btype, int ldb, const void* beta, void* C,
                                   cudaDataType_t Ctype, int ldc, cublasComputeType_t computeType,
                                   cublasGemmAlgo_t algo) {
  if (!sid::alive(handle, sid::kind::blas_handle))
    return sid::fail(CUBLAS_STATUS_NOT_INITIALIZED, "cublasGemmEx: handle not created or destroyed");
  if (m < 0 || n < 0 || k < 0) return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx: m, n or k is negative");
  if (!sid::valid_op(static_cast<std::uint64_t>(transa)) || !sid::valid_op(static_cast<std::uint64_t>(transb)))
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx: transa/transb is not CUBLAS_OP_N, _T or _C");
  const int max1m = m > 1 ? m : 1, max1n = n > 1 ? n : 1, max1k = k > 1 ? k : 1;
  if (lda < (transa == CUBLAS_OP_N ? max1m : max1k))
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE,
                     "cublasGemmEx: lda = " + std::to_string(lda) + " is below the rows of A");
  if (ldb < (transb == CUBLAS_OP_N ? max1k : max1n))
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE,
                     "cublasGemmEx: ldb = " + std::to_string(ldb) + " is below the rows of B");
  if (ldc < max1m)
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx: ldc = " + std::to_string(ldc) + " < max(1, m)");
  const int ai = static_cast<int>(algo);
  if (!((ai >= CUBLAS_GEMM_DEFAULT && ai <= CUBLAS_GEMM_ALGO23) ||
        (ai >= CUBLAS_GEMM_DEFAULT_TENSOR_OP && ai <= CUBLAS_GEMM_ALGO15_TENSOR_OP)))
    return sid::fail(CUBLAS_STATUS_NOT_SUPPORTED, "cublasGemmEx: algo is not a cublasGemmAlgo_t the stand-in accepts");
  // Supported combinations: cuBLAS API, cublasGemmEx, table "computeType CUBLAS_COMPUTE_32F, scaleType
  // CUDA_R_32F": Atype = Btype = CUDA_R_16F, CUDA_R_16BF or CUDA_R_32F with Ctype CUDA_R_32F are rows of
  // it (the table's other rows, e.g. 16-bit output, are not implemented by the stand-in).
  const bool compute32f = computeType == CUBLAS_COMPUTE_32F || computeType == CUBLAS_COMPUTE_32F_PEDANTIC;
  const bool in_ok = Atype == CUDA_R_16F || Atype == CUDA_R_16BF || Atype == CUDA_R_32F;
  if (!compute32f || !in_ok || Btype != Atype || Ctype != CUDA_R_32F)
    return sid::fail(CUBLAS_STATUS_NOT_SUPPORTED,
                     "cublasGemmEx: type combination not supported (stand-in: COMPUTE_32F, "
                     "A = B in {R_16F, R_16BF, R_32F}, C R_32F)");
  if (alpha == nullptr || beta == nullptr)
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx: alpha or beta is NULL");
  if (m == 0 || n == 0) {
    sid::objects().gemm_ex.fetch_add(1);
    return CUBLAS_STATUS_SUCCESS;  // nothing to compute
  }
  float al, be;
  std::memcpy(&al, alpha, 4);
  std::memcpy(&be, beta, 4);
  if (C == nullptr || (k > 0 && (A == nullptr || B == nullptr)))
    return sid::fail(CUBLAS_STATUS_INVALID_VALUE, "cublasGemmEx: A, B or C is NULL");
  const std::size_t ea = Atype == CUDA_R_32F ? 4 : 2;
  sid::device_access("cublasGemmEx", "A", {A, transa == CUBLAS_OP_N ? m : k, transa == CUBLAS_OP_N ? k : m, lda, ea},
                     false);
  sid::device_access("cublasGemmEx", "B", {B, transb == CUBLAS_OP_N ? k : n, transb == CUBLAS_OP_N ? n : k, ldb, ea},
                     false);
  if (be != 0.0f) sid::device_access("cublasGemmEx", "C", {C, m, n, ldc, 4}, false);
  sid::device_access("cublasGemmEx", "C", {C, m, n, ldc, 4}, true);
  auto* c = static_cast<float*>(C);
  constexpr int slice = 16;
  for (std::int64_t j = 0; j < n; ++j)
    for (std::int64_t i = 0; i < m; ++i) {
      float total = 0.0f;
      for (std::int64_t l0 = 0; l0 < k; l0 += slice) {
        float part = 0.0f;
        const std::int64_t l1 = l0 + slice < k ? l0 + slice : k;
        for (std::int64_t l = l0; l < l1; ++l) {
          const float x = sid::load_element(A, Atype, transa == CUBLAS_OP_N ? i + l * lda : l + i * lda);
          const float y = sid::load_element(B, Btype, transb == CUBLAS_OP_N ? l + j * ldb : j + l * ldb);
          part = std::fmaf(x, y, part);
        }
        total = l0 == 0 ? part : total + part;
      }
      float r = al * total;
      if (be != 0.0f) r = std::fmaf(be, c[i + j * ldc], r);
      c[i + j * ldc] = r;
    }
  sid::objects().gemm_ex.fetch_add(1);
  return CUBLAS_STATUS_SUCCESS;
}

}  // namespace lowbit_simt_cublas

LOWBIT_NAMESPACE_BEGIN
namespace simt {

/// GEMMs the stand-in has run (successful cublasLtMatmul and cublasGemmEx calls), process-wide.
struct cublas_call_counts {
  std::uint64_t lt_matmul = 0;
  std::uint64_t gemm_ex = 0;
};

/// Why the last stand-in call that did not succeed failed (this thread).
inline const char* cublas_last_error() { return ::lowbit_simt_cublas::stand_in_detail::last_error().c_str(); }

/// GEMMs run so far by the stand-in.
inline cublas_call_counts cublas_calls() {
  cublas_call_counts c;
  c.lt_matmul = ::lowbit_simt_cublas::stand_in_detail::objects().lt_matmul.load();
  c.gemm_ex = ::lowbit_simt_cublas::stand_in_detail::objects().gemm_ex.load();
  return c;
}

}  // namespace simt
LOWBIT_NAMESPACE_END

// The real API lives in the global namespace: exactly the API's names go there (not the stand-in's
// internals). A translation unit that also includes the real headers (to compare them) defines
// LOWBIT_SIMT_CUBLAS_NO_GLOBAL_NAMES and qualifies the stand-in's names.
#if !defined(LOWBIT_SIMT_CUBLAS_NO_GLOBAL_NAMES)
using lowbit_simt_cublas::cublasComputeType_t, lowbit_simt_cublas::CUBLAS_COMPUTE_16F,
    lowbit_simt_cublas::CUBLAS_COMPUTE_16F_PEDANTIC, lowbit_simt_cublas::CUBLAS_COMPUTE_32F,
    lowbit_simt_cublas::CUBLAS_COMPUTE_32F_PEDANTIC, lowbit_simt_cublas::CUBLAS_COMPUTE_32F_FAST_16F,
    lowbit_simt_cublas::CUBLAS_COMPUTE_32F_FAST_16BF, lowbit_simt_cublas::CUBLAS_COMPUTE_32F_FAST_TF32,
    lowbit_simt_cublas::CUBLAS_COMPUTE_64F, lowbit_simt_cublas::CUBLAS_COMPUTE_64F_PEDANTIC,
    lowbit_simt_cublas::CUBLAS_COMPUTE_32I, lowbit_simt_cublas::CUBLAS_COMPUTE_32I_PEDANTIC;
using lowbit_simt_cublas::cublasContext, lowbit_simt_cublas::cublasHandle_t, lowbit_simt_cublas::cublasLtContext,
    lowbit_simt_cublas::cublasLtHandle_t, lowbit_simt_cublas::cublasLtMatrixLayoutOpaque_t,
    lowbit_simt_cublas::cublasLtMatrixLayout_t, lowbit_simt_cublas::cublasLtMatmulAlgo_t,
    lowbit_simt_cublas::cublasLtMatmulDescOpaque_t, lowbit_simt_cublas::cublasLtMatmulDesc_t,
    lowbit_simt_cublas::cublasLtMatmulPreferenceOpaque_t, lowbit_simt_cublas::cublasLtMatmulPreference_t,
    lowbit_simt_cublas::cublasLtMatmulHeuristicResult_t;
using lowbit_simt_cublas::cublasGemmAlgo_t, lowbit_simt_cublas::CUBLAS_GEMM_DFALT,
    lowbit_simt_cublas::CUBLAS_GEMM_DEFAULT, lowbit_simt_cublas::CUBLAS_GEMM_ALGO0,
    lowbit_simt_cublas::CUBLAS_GEMM_ALGO23, lowbit_simt_cublas::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
    lowbit_simt_cublas::CUBLAS_GEMM_DFALT_TENSOR_OP, lowbit_simt_cublas::CUBLAS_GEMM_ALGO0_TENSOR_OP,
    lowbit_simt_cublas::CUBLAS_GEMM_ALGO15_TENSOR_OP;
using lowbit_simt_cublas::cublasGetStatusString, lowbit_simt_cublas::cublasLtCreate,
    lowbit_simt_cublas::cublasLtDestroy, lowbit_simt_cublas::cublasLtMatmulDescCreate,
    lowbit_simt_cublas::cublasLtMatmulDescDestroy, lowbit_simt_cublas::cublasLtMatmulDescSetAttribute,
    lowbit_simt_cublas::cublasLtMatrixLayoutCreate, lowbit_simt_cublas::cublasLtMatrixLayoutDestroy,
    lowbit_simt_cublas::cublasLtMatmulPreferenceCreate, lowbit_simt_cublas::cublasLtMatmulPreferenceDestroy,
    lowbit_simt_cublas::cublasLtMatmulPreferenceSetAttribute, lowbit_simt_cublas::cublasLtMatmulAlgoGetHeuristic,
    lowbit_simt_cublas::cublasLtMatmul, lowbit_simt_cublas::cublasCreate, lowbit_simt_cublas::cublasDestroy,
    lowbit_simt_cublas::cublasSetStream, lowbit_simt_cublas::cublasGemmEx;
using lowbit_simt_cublas::cublasLtMatmulDescAttributes_t, lowbit_simt_cublas::CUBLASLT_MATMUL_DESC_COMPUTE_TYPE,
    lowbit_simt_cublas::CUBLASLT_MATMUL_DESC_SCALE_TYPE, lowbit_simt_cublas::CUBLASLT_MATMUL_DESC_POINTER_MODE,
    lowbit_simt_cublas::CUBLASLT_MATMUL_DESC_TRANSA, lowbit_simt_cublas::CUBLASLT_MATMUL_DESC_TRANSB,
    lowbit_simt_cublas::CUBLASLT_MATMUL_DESC_TRANSC, lowbit_simt_cublas::CUBLASLT_MATMUL_DESC_EPILOGUE;
using lowbit_simt_cublas::cublasLtMatmulPreferenceAttributes_t,
    lowbit_simt_cublas::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
    lowbit_simt_cublas::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
    lowbit_simt_cublas::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
    lowbit_simt_cublas::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
    lowbit_simt_cublas::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES;
using lowbit_simt_cublas::cublasLtPointerMode_t, lowbit_simt_cublas::CUBLASLT_POINTER_MODE_HOST,
    lowbit_simt_cublas::CUBLASLT_POINTER_MODE_DEVICE, lowbit_simt_cublas::cublasLtOrder_t,
    lowbit_simt_cublas::CUBLASLT_ORDER_COL, lowbit_simt_cublas::cublasLtEpilogue_t,
    lowbit_simt_cublas::CUBLASLT_EPILOGUE_DEFAULT;
using lowbit_simt_cublas::cublasOperation_t, lowbit_simt_cublas::CUBLAS_OP_N, lowbit_simt_cublas::CUBLAS_OP_T,
    lowbit_simt_cublas::CUBLAS_OP_C, lowbit_simt_cublas::CUBLAS_OP_HERMITAN, lowbit_simt_cublas::CUBLAS_OP_CONJG;
using lowbit_simt_cublas::cublasPointerMode_t, lowbit_simt_cublas::CUBLAS_POINTER_MODE_HOST,
    lowbit_simt_cublas::CUBLAS_POINTER_MODE_DEVICE;
using lowbit_simt_cublas::cublasStatus_t, lowbit_simt_cublas::CUBLAS_STATUS_SUCCESS,
    lowbit_simt_cublas::CUBLAS_STATUS_NOT_INITIALIZED, lowbit_simt_cublas::CUBLAS_STATUS_ALLOC_FAILED,
    lowbit_simt_cublas::CUBLAS_STATUS_INVALID_VALUE, lowbit_simt_cublas::CUBLAS_STATUS_ARCH_MISMATCH,
    lowbit_simt_cublas::CUBLAS_STATUS_MAPPING_ERROR, lowbit_simt_cublas::CUBLAS_STATUS_EXECUTION_FAILED,
    lowbit_simt_cublas::CUBLAS_STATUS_INTERNAL_ERROR, lowbit_simt_cublas::CUBLAS_STATUS_NOT_SUPPORTED,
    lowbit_simt_cublas::CUBLAS_STATUS_LICENSE_ERROR;
#endif
