// SPDX-License-Identifier: Apache-2.0
// Every codec's encode and decode instantiated in device code. On a GPU, device results must equal
// the host codecs bit for bit; without one the tests are reported as skipped.
#include <lowbit/cuda.cuh>

#include <cstdint>
#include <random>
#include <vector>

#include "test_util.hpp"

namespace {

using namespace lowbit::codecs;

template <class Codec>
__global__ void decode_kernel(int n, float* out) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = Codec::decode(static_cast<std::uint8_t>(i));
}

template <class Codec, rounding R, overflow O>
__global__ void encode_minifloat_kernel(const float* x, int n, std::uint8_t* q) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) q[i] = Codec::template encode<R, O>(x[i]);
}

template <class Codec>
__global__ void encode_codebook_kernel(const float* x, int n, std::uint8_t* q) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) q[i] = Codec::encode(x[i]);
}

__global__ void integer_kernel(const float* x, int n, std::int8_t* q8, std::uint8_t* qz, float* y8,
                               float* yz) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    q8[i] = int8_absmax::encode(x[i], 41.5f);
    qz[i] = uint8_zeropoint::encode(x[i], 80.25f, 131);
    y8[i] = int8_absmax::decode(q8[i], 0.0241f);
    yz[i] = uint8_zeropoint::decode(qz[i], 0.0125f, 131);
  }
}

// RAII device buffer for the tests.
template <class T>
struct device_buffer {
  T* ptr = nullptr;
  explicit device_buffer(std::size_t n) { EXPECT_EQ(cudaMalloc(&ptr, n * sizeof(T)), cudaSuccess); }
  ~device_buffer() { cudaFree(ptr); }
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;
};

// Inputs: every float32 that decodes from some code of some codec, its neighbours, specials and
// seeded random values of many magnitudes.
std::vector<float> probe_inputs() {
  LOWBIT_SEED_TRACE();
  std::vector<float> x = {0.0f, -0.0f, 1e30f, -1e30f, lowbit_test::float_of(0x7F800000u),
                          lowbit_test::float_of(0xFF800000u), lowbit_test::float_of(0x7FC00000u),
                          lowbit_test::float_of(0x00000001u)};
  std::mt19937 rng(static_cast<std::uint32_t>(lowbit_test::test_seed()));
  for (int i = 0; i < 1 << 16; ++i) x.push_back(lowbit_test::float_of(static_cast<std::uint32_t>(rng())));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int i = 0; i < 1 << 16; ++i) x.push_back(normal(rng));
  return x;
}

class Device : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!lowbit::cuda::device_available()) GTEST_SKIP() << "no CUDA device: device tests skipped";
  }
};

template <class Codec>
void check_decode() {
  constexpr int n = Codec::num_codes;
  device_buffer<float> d(n);
  decode_kernel<Codec><<<1, 256>>>(n, d.ptr);
  std::vector<float> got(n);
  ASSERT_EQ(cudaMemcpy(got.data(), d.ptr, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int c = 0; c < n; ++c)
    EXPECT_EQ(lowbit_test::bits_of(got[c]), lowbit_test::bits_of(Codec::decode(static_cast<std::uint8_t>(c))))
        << codec_name_v<Codec> << " code " << lowbit_test::hex(c, 2);
}

template <class Kernel, class Host>
void check_encode(const char* what, Kernel kernel, Host host) {
  const std::vector<float> x = probe_inputs();
  const int n = static_cast<int>(x.size());
  device_buffer<float> dx(x.size());
  device_buffer<std::uint8_t> dq(x.size());
  ASSERT_EQ(cudaMemcpy(dx.ptr, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  kernel<<<(n + 255) / 256, 256>>>(dx.ptr, n, dq.ptr);
  std::vector<std::uint8_t> q(x.size());
  ASSERT_EQ(cudaMemcpy(q.data(), dq.ptr, q.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int i = 0; i < n; ++i)
    ASSERT_EQ(q[i], host(x[i])) << what << " input " << lowbit_test::hex(lowbit_test::bits_of(x[i]));
}

template <class Codec>
void check_minifloat() {
  check_decode<Codec>();
  check_encode(codec_name_v<Codec>, encode_minifloat_kernel<Codec, rounding::nearest_even, overflow::saturate>,
               [](float v) { return Codec::template encode<rounding::nearest_even, overflow::saturate>(v); });
  check_encode(codec_name_v<Codec>, encode_minifloat_kernel<Codec, rounding::nearest_even, overflow::special>,
               [](float v) { return Codec::template encode<rounding::nearest_even, overflow::special>(v); });
  check_encode(codec_name_v<Codec>, encode_minifloat_kernel<Codec, rounding::toward_zero, overflow::saturate>,
               [](float v) { return Codec::template encode<rounding::toward_zero, overflow::saturate>(v); });
  check_encode(codec_name_v<Codec>, encode_minifloat_kernel<Codec, rounding::toward_pos_inf, overflow::special>,
               [](float v) { return Codec::template encode<rounding::toward_pos_inf, overflow::special>(v); });
}

template <class Codec>
void check_codebook() {
  check_decode<Codec>();
  check_encode(codec_name_v<Codec>, encode_codebook_kernel<Codec>, [](float v) { return Codec::encode(v); });
}

TEST_F(Device, E4m3fn) { check_minifloat<e4m3fn>(); }
TEST_F(Device, E5m2) { check_minifloat<e5m2>(); }
TEST_F(Device, E2m3fn) { check_minifloat<e2m3fn>(); }
TEST_F(Device, E3m2fn) { check_minifloat<e3m2fn>(); }
TEST_F(Device, E2m1fn) { check_minifloat<e2m1fn>(); }
TEST_F(Device, E3m0) { check_minifloat<e3m0>(); }
TEST_F(Device, E8m0fnu) { check_minifloat<e8m0fnu>(); }
TEST_F(Device, Nf4) { check_codebook<nf4>(); }
TEST_F(Device, BnbFp4) { check_codebook<bnb_fp4>(); }
TEST_F(Device, BnbDynamic8) { check_codebook<bnb_dynamic8>(); }

TEST_F(Device, IntegerCodecs) {
  const std::vector<float> x = probe_inputs();
  const int n = static_cast<int>(x.size());
  device_buffer<float> dx(x.size()), dy8(x.size()), dyz(x.size());
  device_buffer<std::int8_t> d8(x.size());
  device_buffer<std::uint8_t> dz(x.size());
  ASSERT_EQ(cudaMemcpy(dx.ptr, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  integer_kernel<<<(n + 255) / 256, 256>>>(dx.ptr, n, d8.ptr, dz.ptr, dy8.ptr, dyz.ptr);
  std::vector<std::int8_t> q8(x.size());
  std::vector<std::uint8_t> qz(x.size());
  std::vector<float> y8(x.size()), yz(x.size());
  ASSERT_EQ(cudaMemcpy(q8.data(), d8.ptr, q8.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(qz.data(), dz.ptr, qz.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(y8.data(), dy8.ptr, y8.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(yz.data(), dyz.ptr, yz.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int i = 0; i < n; ++i) {
    const auto h8 = int8_absmax::encode(x[i], 41.5f);
    const auto hz = uint8_zeropoint::encode(x[i], 80.25f, 131);
    ASSERT_EQ(q8[i], h8) << "input " << lowbit_test::hex(lowbit_test::bits_of(x[i]));
    ASSERT_EQ(qz[i], hz) << "input " << lowbit_test::hex(lowbit_test::bits_of(x[i]));
    ASSERT_EQ(lowbit_test::bits_of(y8[i]), lowbit_test::bits_of(int8_absmax::decode(h8, 0.0241f)));
    ASSERT_EQ(lowbit_test::bits_of(yz[i]), lowbit_test::bits_of(uint8_zeropoint::decode(hz, 0.0125f, 131)));
  }
}

}  // namespace
