/* GGUF metadata helpers for the GGUF tests and the GGUF fuzz target, written
 * from the GGUF spec independently of src/format/. */
#ifndef FITLM_TESTS_GGUF_VALUES_H
#define FITLM_TESTS_GGUF_VALUES_H

#include <stdbool.h>

#include "format/gguf.h"

/* Bytes of one value of a scalar metadata type (GGUF spec); 0 for STRING,
 * ARRAY and unknown types. */
int gguf_test_scalar_bytes(int type);

/* Whether two metadata values are equal: same type, same bits (floats
 * compared bitwise), same string bytes (b's strings NUL-terminated), and for
 * arrays the same element type, count and elements, recursively. */
bool gguf_test_values_equal(const fitlm_gguf_value *a, const fitlm_gguf_value *b);

#endif
