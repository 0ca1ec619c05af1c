// SPDX-License-Identifier: Apache-2.0
// The core must build with -fno-exceptions -fno-rtti (set on this file by CMake).
#include <lowbit/lowbit.hpp>

int lowbit_no_exceptions_probe(float x) { return lowbit::codecs::nf4::encode(x); }
