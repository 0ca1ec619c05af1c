// SPDX-License-Identifier: Apache-2.0
/// @file baselines.hpp
/// @brief The matmul libraries a user would run instead of lowbit, as benchmark baselines:
///        OpenBLAS `sgemm` (float32) and oneDNN's int8 matmul (s8s8s32 / u8s8s32).
///
/// Both are benchmark-only dependencies found by bench/CMakeLists.txt, which defines
/// LOWBIT_BENCH_HAVE_OPENBLAS / LOWBIT_BENCH_HAVE_ONEDNN when they are present; without them the
/// wrappers are not declared and the bench registers no rows for them (and says so).
/// Everything a library sets up once per shape (oneDNN's primitive, the reorder of the weights into
/// the layout the primitive chose) happens in the constructor, outside any timed loop.
#pragma once

#include <cstdint>

#if LOWBIT_BENCH_HAVE_OPENBLAS
#  include <cblas.h>
#endif
#if LOWBIT_BENCH_HAVE_ONEDNN
#  include <oneapi/dnnl/dnnl.hpp>
#endif

namespace lowbit_bench {

#if LOWBIT_BENCH_HAVE_OPENBLAS
/// `y = x · wᵀ` in float32 through OpenBLAS: x [M, K], w [N, K], y [M, N], all row-major and
/// dense, on `threads` threads (0 = OpenBLAS's default, every core).
inline void openblas_sgemm_nt(std::int64_t M, std::int64_t N, std::int64_t K, const float* x, const float* w, float* y,
                              int threads) {
  static int current = -1;
  const int want = threads > 0 ? threads : openblas_get_num_procs();
  if (want != current) {
    openblas_set_num_threads(want);
    current = want;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(M), static_cast<blasint>(N),
              static_cast<blasint>(K), 1.0f, x, static_cast<blasint>(K), w, static_cast<blasint>(K), 0.0f, y,
              static_cast<blasint>(N));
}
#endif

#if LOWBIT_BENCH_HAVE_ONEDNN
/// oneDNN's int8 matmul `C = A · Wᵀ` in int32: A [M, K] int8 (`a_unsigned`: uint8, the u8s8s32
/// variant; else int8, s8s8s32), W [N, K] int8 row-major, C [M, N] int32 row-major.
/// The constructor creates the primitive and reorders W once into the layout the primitive asks
/// for (`format_tag::any`, as an inference engine prepacks its weights); `run()` is the call
/// that is timed. oneDNN's threads are its OpenMP runtime's (OMP_NUM_THREADS, default every core).
class onednn_int8_matmul {
 public:
  onednn_int8_matmul(std::int64_t M, std::int64_t N, std::int64_t K, bool a_unsigned, const void* A, const std::int8_t* W,
                     std::int32_t* C)
      : eng_(dnnl::engine::kind::cpu, 0), strm_(eng_) {
    using dt = dnnl::memory::data_type;
    using tag = dnnl::memory::format_tag;
    const dnnl::memory::desc a_md({M, K}, a_unsigned ? dt::u8 : dt::s8, tag::ab);
    const dnnl::memory::desc w_plain({K, N}, dt::s8, tag::ba);  // W [N, K] row-major is Wᵀ [K, N] in "ba"
    const dnnl::memory::desc w_any({K, N}, dt::s8, tag::any);
    const dnnl::memory::desc c_md({M, N}, dt::s32, tag::ab);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, w_any, c_md), eng_);
    prim_ = dnnl::matmul(pd);
    a_ = dnnl::memory(a_md, eng_, const_cast<void*>(A));
    c_ = dnnl::memory(c_md, eng_, C);
    dnnl::memory w_src(w_plain, eng_, const_cast<std::int8_t*>(W));
    w_ = dnnl::memory(pd.weights_desc(), eng_);
    dnnl::reorder(w_src, w_).execute(strm_, w_src, w_);
    strm_.wait();
    impl_ = pd.impl_info_str();
  }

  /// One matmul call.
  void run() {
    prim_.execute(strm_, {{DNNL_ARG_SRC, a_}, {DNNL_ARG_WEIGHTS, w_}, {DNNL_ARG_DST, c_}});
    strm_.wait();
  }

  /// The implementation oneDNN chose (e.g. "brg:avx512_core_vnni").
  const char* implementation() const { return impl_; }

 private:
  dnnl::engine eng_;
  dnnl::stream strm_;
  dnnl::matmul prim_;
  dnnl::memory a_, w_, c_;
  const char* impl_ = "";
};
#endif

}  // namespace lowbit_bench
