// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include <lowbit/lowbit.hpp>

unsigned odr_a_encode(float x);
unsigned odr_b_encode(float x);

// Both translation units see the same inline functions and tables.
TEST(Build, TwoTranslationUnitsAgree) {
  for (float x : {0.0f, 0.3f, -1.0f, 448.0f, 1e-3f}) {
    EXPECT_EQ(odr_a_encode(x), odr_b_encode(x)) << x;
    EXPECT_EQ(odr_a_encode(x), unsigned(lowbit::codecs::e4m3fn::encode(x)) +
                                   unsigned(lowbit::codecs::bnb_dynamic8::encode(x)))
        << x;
  }
}
