// SPDX-License-Identifier: Apache-2.0
// One of two translation units that include every public header; linking them together proves
// the headers define nothing with external linkage more than once.
#include "all_headers.hpp"

unsigned odr_a_encode(float x) {
  return lowbit::codecs::e4m3fn::encode(x) + lowbit::codecs::bnb_dynamic8::encode(x);
}
