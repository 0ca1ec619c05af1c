// SPDX-License-Identifier: Apache-2.0
// Smallest possible lowbit user: encodes and decodes a few values; exits non-zero on a surprise.
#include <lowbit/lowbit.hpp>

#include <cstdio>

int main() {
  using namespace lowbit::codecs;
  const float x = 0.3f;
  const auto q8 = e4m3fn::encode(x);
  const auto q4 = nf4::encode(x);
  std::printf("0.3 -> e4m3fn 0x%02x (%g), nf4 %d (%g)\n", q8, e4m3fn::decode(q8), q4, nf4::decode(q4));
  return (q8 == 0x2A && q4 == 11) ? 0 : 1;
}
