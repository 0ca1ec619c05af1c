// SPDX-License-Identifier: Apache-2.0
// The four symbols of ggml.c that ggml-quants.c refers to, so that ggml's reference quantizers
// (quantize_row_*_ref, dequantize_row_*) build alone as the test oracle lowbit_ggml_reference.
// The functions the tests call never reach them (they are used by the importance-matrix and
// validation paths): reaching one is a test failure, so each aborts with its name.
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stddef.h>

static void unreachable(const char* what) {
  fprintf(stderr, "lowbit_ggml_reference: %s called; the ggml reference shim does not implement it\n", what);
  abort();
}
void ggml_abort(const char* file, int line, const char* fmt, ...) {
  fprintf(stderr, "ggml_abort at %s:%d: %s\n", file, line, fmt);
  abort();
}
size_t ggml_row_size(int type, int64_t ne) { (void)type; (void)ne; unreachable("ggml_row_size"); return 0; }
const char* ggml_type_name(int type) { (void)type; unreachable("ggml_type_name"); return NULL; }
size_t ggml_type_size(int type) { (void)type; unreachable("ggml_type_size"); return 0; }
