// SPDX-License-Identifier: Apache-2.0
// The cuBLAS(Lt) stand-in (kernels/lowbit/simt/cublas.hpp) declares NVIDIA's API: checked here at
// compile time against the real <cublasLt.h> and <cublas_v2.h> of the CUDA toolkit, which compile with
// any host compiler. Every enumerator the stand-in declares has the real value, its structs have the
// real sizes and field offsets, and every function has the real signature with the real types mapped
// to the stand-in's (the stand-in lives in namespace lowbit_simt_cublas; `::name` is the real one).
// The stand-in's functions are checked with the real headers in the same translation unit, so it
// cannot rely on anything they declare.
#include <cublasLt.h>
#include <cublas_v2.h>

// cublas_v2.h maps these names onto the _v2 entry points with macros.
#undef cublasCreate
#undef cublasDestroy
#undef cublasSetStream

#define LOWBIT_SIMT_CUBLAS_NO_GLOBAL_NAMES  // the real API holds the global names here
#include <lowbit/simt/cublas.hpp>

#include <cstddef>
#include <type_traits>

namespace {

namespace sim = lowbit_simt_cublas;

// ---- enumerators -------------------------------------------------------------------------------
#define LOWBIT_SAME_VALUE(name) \
  static_assert(static_cast<long long>(::name) == static_cast<long long>(sim::name), #name)
LOWBIT_SAME_VALUE(CUBLAS_STATUS_SUCCESS);
LOWBIT_SAME_VALUE(CUBLAS_STATUS_NOT_INITIALIZED);
LOWBIT_SAME_VALUE(CUBLAS_STATUS_ALLOC_FAILED);
LOWBIT_SAME_VALUE(CUBLAS_STATUS_INVALID_VALUE);
LOWBIT_SAME_VALUE(CUBLAS_STATUS_ARCH_MISMATCH);
LOWBIT_SAME_VALUE(CUBLAS_STATUS_MAPPING_ERROR);
LOWBIT_SAME_VALUE(CUBLAS_STATUS_EXECUTION_FAILED);
LOWBIT_SAME_VALUE(CUBLAS_STATUS_INTERNAL_ERROR);
LOWBIT_SAME_VALUE(CUBLAS_STATUS_NOT_SUPPORTED);
LOWBIT_SAME_VALUE(CUBLAS_STATUS_LICENSE_ERROR);
LOWBIT_SAME_VALUE(CUBLAS_OP_N);
LOWBIT_SAME_VALUE(CUBLAS_OP_T);
LOWBIT_SAME_VALUE(CUBLAS_OP_C);
LOWBIT_SAME_VALUE(CUBLAS_OP_HERMITAN);
LOWBIT_SAME_VALUE(CUBLAS_OP_CONJG);
LOWBIT_SAME_VALUE(CUBLAS_POINTER_MODE_HOST);
LOWBIT_SAME_VALUE(CUBLAS_POINTER_MODE_DEVICE);
LOWBIT_SAME_VALUE(CUBLAS_GEMM_DFALT);
LOWBIT_SAME_VALUE(CUBLAS_GEMM_DEFAULT);
LOWBIT_SAME_VALUE(CUBLAS_GEMM_ALGO0);
LOWBIT_SAME_VALUE(CUBLAS_GEMM_ALGO23);
LOWBIT_SAME_VALUE(CUBLAS_GEMM_DEFAULT_TENSOR_OP);
LOWBIT_SAME_VALUE(CUBLAS_GEMM_DFALT_TENSOR_OP);
LOWBIT_SAME_VALUE(CUBLAS_GEMM_ALGO0_TENSOR_OP);
LOWBIT_SAME_VALUE(CUBLAS_GEMM_ALGO15_TENSOR_OP);
LOWBIT_SAME_VALUE(CUBLAS_COMPUTE_16F);
LOWBIT_SAME_VALUE(CUBLAS_COMPUTE_16F_PEDANTIC);
LOWBIT_SAME_VALUE(CUBLAS_COMPUTE_32F);
LOWBIT_SAME_VALUE(CUBLAS_COMPUTE_32F_PEDANTIC);
LOWBIT_SAME_VALUE(CUBLAS_COMPUTE_32F_FAST_16F);
LOWBIT_SAME_VALUE(CUBLAS_COMPUTE_32F_FAST_16BF);
LOWBIT_SAME_VALUE(CUBLAS_COMPUTE_32F_FAST_TF32);
LOWBIT_SAME_VALUE(CUBLAS_COMPUTE_64F);
LOWBIT_SAME_VALUE(CUBLAS_COMPUTE_64F_PEDANTIC);
LOWBIT_SAME_VALUE(CUBLAS_COMPUTE_32I);
LOWBIT_SAME_VALUE(CUBLAS_COMPUTE_32I_PEDANTIC);
LOWBIT_SAME_VALUE(CUBLASLT_POINTER_MODE_HOST);
LOWBIT_SAME_VALUE(CUBLASLT_POINTER_MODE_DEVICE);
LOWBIT_SAME_VALUE(CUBLASLT_ORDER_COL);
LOWBIT_SAME_VALUE(CUBLASLT_EPILOGUE_DEFAULT);
LOWBIT_SAME_VALUE(CUBLASLT_MATMUL_DESC_COMPUTE_TYPE);
LOWBIT_SAME_VALUE(CUBLASLT_MATMUL_DESC_SCALE_TYPE);
LOWBIT_SAME_VALUE(CUBLASLT_MATMUL_DESC_POINTER_MODE);
LOWBIT_SAME_VALUE(CUBLASLT_MATMUL_DESC_TRANSA);
LOWBIT_SAME_VALUE(CUBLASLT_MATMUL_DESC_TRANSB);
LOWBIT_SAME_VALUE(CUBLASLT_MATMUL_DESC_TRANSC);
LOWBIT_SAME_VALUE(CUBLASLT_MATMUL_DESC_EPILOGUE);
LOWBIT_SAME_VALUE(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES);
LOWBIT_SAME_VALUE(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES);
LOWBIT_SAME_VALUE(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES);
LOWBIT_SAME_VALUE(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES);
LOWBIT_SAME_VALUE(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES);
#undef LOWBIT_SAME_VALUE

// ---- structs -----------------------------------------------------------------------------------
#define LOWBIT_SAME_SIZE(type) \
  static_assert(sizeof(::type) == sizeof(sim::type) && alignof(::type) == alignof(sim::type), #type)
LOWBIT_SAME_SIZE(cublasStatus_t);
LOWBIT_SAME_SIZE(cublasOperation_t);
LOWBIT_SAME_SIZE(cublasComputeType_t);
LOWBIT_SAME_SIZE(cublasGemmAlgo_t);
LOWBIT_SAME_SIZE(cublasLtMatrixLayoutOpaque_t);
LOWBIT_SAME_SIZE(cublasLtMatmulAlgo_t);
LOWBIT_SAME_SIZE(cublasLtMatmulDescOpaque_t);
LOWBIT_SAME_SIZE(cublasLtMatmulPreferenceOpaque_t);
LOWBIT_SAME_SIZE(cublasLtMatmulHeuristicResult_t);
#undef LOWBIT_SAME_SIZE
static_assert(offsetof(::cublasLtMatmulHeuristicResult_t, workspaceSize) ==
              offsetof(sim::cublasLtMatmulHeuristicResult_t, workspaceSize));
static_assert(offsetof(::cublasLtMatmulHeuristicResult_t, state) ==
              offsetof(sim::cublasLtMatmulHeuristicResult_t, state));
static_assert(offsetof(::cublasLtMatmulHeuristicResult_t, wavesCount) ==
              offsetof(sim::cublasLtMatmulHeuristicResult_t, wavesCount));
static_assert(offsetof(::cublasLtMatmulHeuristicResult_t, reserved) ==
              offsetof(sim::cublasLtMatmulHeuristicResult_t, reserved));

// ---- signatures --------------------------------------------------------------------------------
// to_sim<T>: the real type T with every cuBLAS type replaced by the stand-in's.
template <class T>
struct to_sim {
  using type = T;
};
template <class T>
using to_sim_t = typename to_sim<T>::type;
template <class T>
struct to_sim<T*> {
  using type = to_sim_t<T>*;
};
template <class T>
struct to_sim<const T> {
  using type = const to_sim_t<T>;
};
template <class R, class... A>
struct to_sim<R(A...)> {
  using type = to_sim_t<R>(to_sim_t<A>...);
};
#define LOWBIT_MAP(real, ours) \
  template <>                  \
  struct to_sim<real> {        \
    using type = ours;         \
  }
LOWBIT_MAP(::cublasStatus_t, sim::cublasStatus_t);
LOWBIT_MAP(::cublasOperation_t, sim::cublasOperation_t);
LOWBIT_MAP(::cublasComputeType_t, sim::cublasComputeType_t);
LOWBIT_MAP(::cublasGemmAlgo_t, sim::cublasGemmAlgo_t);
LOWBIT_MAP(::cublasContext, sim::cublasContext);
LOWBIT_MAP(::cublasLtContext, sim::cublasLtContext);
LOWBIT_MAP(::cublasLtMatrixLayoutOpaque_t, sim::cublasLtMatrixLayoutOpaque_t);
LOWBIT_MAP(::cublasLtMatmulDescOpaque_t, sim::cublasLtMatmulDescOpaque_t);
LOWBIT_MAP(::cublasLtMatmulPreferenceOpaque_t, sim::cublasLtMatmulPreferenceOpaque_t);
LOWBIT_MAP(::cublasLtMatmulAlgo_t, sim::cublasLtMatmulAlgo_t);
LOWBIT_MAP(::cublasLtMatmulHeuristicResult_t, sim::cublasLtMatmulHeuristicResult_t);
LOWBIT_MAP(::cublasLtMatmulDescAttributes_t, sim::cublasLtMatmulDescAttributes_t);
LOWBIT_MAP(::cublasLtMatmulPreferenceAttributes_t, sim::cublasLtMatmulPreferenceAttributes_t);
#undef LOWBIT_MAP

#define LOWBIT_SAME_SIGNATURE(real, ours) \
  static_assert(std::is_same_v<to_sim_t<decltype(real)>, decltype(ours)>, #ours " has the signature of " #real)
LOWBIT_SAME_SIGNATURE(::cublasLtCreate, sim::cublasLtCreate);
LOWBIT_SAME_SIGNATURE(::cublasLtDestroy, sim::cublasLtDestroy);
LOWBIT_SAME_SIGNATURE(::cublasLtMatmulDescCreate, sim::cublasLtMatmulDescCreate);
LOWBIT_SAME_SIGNATURE(::cublasLtMatmulDescDestroy, sim::cublasLtMatmulDescDestroy);
LOWBIT_SAME_SIGNATURE(::cublasLtMatmulDescSetAttribute, sim::cublasLtMatmulDescSetAttribute);
LOWBIT_SAME_SIGNATURE(::cublasLtMatrixLayoutCreate, sim::cublasLtMatrixLayoutCreate);
LOWBIT_SAME_SIGNATURE(::cublasLtMatrixLayoutDestroy, sim::cublasLtMatrixLayoutDestroy);
LOWBIT_SAME_SIGNATURE(::cublasLtMatmulPreferenceCreate, sim::cublasLtMatmulPreferenceCreate);
LOWBIT_SAME_SIGNATURE(::cublasLtMatmulPreferenceDestroy, sim::cublasLtMatmulPreferenceDestroy);
LOWBIT_SAME_SIGNATURE(::cublasLtMatmulPreferenceSetAttribute, sim::cublasLtMatmulPreferenceSetAttribute);
LOWBIT_SAME_SIGNATURE(::cublasLtMatmulAlgoGetHeuristic, sim::cublasLtMatmulAlgoGetHeuristic);
LOWBIT_SAME_SIGNATURE(::cublasLtMatmul, sim::cublasLtMatmul);
LOWBIT_SAME_SIGNATURE(::cublasCreate_v2, sim::cublasCreate);
LOWBIT_SAME_SIGNATURE(::cublasDestroy_v2, sim::cublasDestroy);
LOWBIT_SAME_SIGNATURE(::cublasSetStream_v2, sim::cublasSetStream);
LOWBIT_SAME_SIGNATURE(::cublasGetStatusString, sim::cublasGetStatusString);
// cublasGemmEx is overloaded in C++ (a wrapper takes a cudaDataType compute type): pick the entry point.
using gemm_ex_t = ::cublasStatus_t(::cublasHandle_t, ::cublasOperation_t, ::cublasOperation_t, int, int, int,
                                   const void*, const void*, cudaDataType, int, const void*, cudaDataType, int,
                                   const void*, void*, cudaDataType, int, ::cublasComputeType_t, ::cublasGemmAlgo_t);
// (unevaluated: compiles only if the real header declares an overload of exactly this type)
static_assert(std::is_same_v<decltype(static_cast<gemm_ex_t*>(&::cublasGemmEx)), gemm_ex_t*>);
static_assert(std::is_same_v<to_sim_t<gemm_ex_t>, decltype(sim::cublasGemmEx)>,
              "sim::cublasGemmEx has the real signature");
#undef LOWBIT_SAME_SIGNATURE

}  // namespace
