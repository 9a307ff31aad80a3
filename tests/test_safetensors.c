/* The safetensors reader and writer on hand-built buffers (format: 8-byte LE
 * header length, JSON header, data; offsets relative to the data section). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "format/ggml_type.h"
#include "format/safetensors.h"
#include "util/file.h"

/* Builds header-length + header (+ padding to 8) + n data bytes of value 0xAB. */
static uint8_t *build(const char *json, size_t data_len, size_t *out_len) {
    size_t h = strlen(json), pad = (8 - h % 8) % 8;
    size_t n = 8 + h + pad + data_len;
    uint8_t *b = malloc(n);
    uint64_t hl = h + pad;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(hl >> (8 * i));
    memcpy(b + 8, json, h);
    memset(b + 8 + h, ' ', pad);
    memset(b + 8 + h + pad, 0xAB, data_len);
    *out_len = n;
    return b;
}

static fitlm_safetensors *parse(const char *json, size_t data_len, fitlm_error *err) {
    size_t n;
    uint8_t *b = build(json, data_len, &n);
    fitlm_safetensors *st = fitlm_safetensors_parse(b, n, err);
    free(b);
    return st;
}

static void test_valid(void) {
    fitlm_error err = {{0}};
    fitlm_safetensors *st =
        parse("{\"__metadata__\":{\"format\":\"pt\",\"x\":\"y\"},"
              "\"b\":{\"dtype\":\"BF16\",\"shape\":[3,2],\"data_offsets\":[8,20]},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[20,28]},"
              "\"z\":{\"dtype\":\"U8\",\"shape\":[0,5],\"data_offsets\":[28,28]}}",
              28, &err);
    CHECK(st != NULL, "valid: %s", err.msg);
    if (!st) return;
    CHECK(st->n_tensors == 4, "count %zu", st->n_tensors);
    const fitlm_st_tensor *b = &st->tensors[0];
    CHECK(!strcmp(b->name, "b") && b->type == FITLM_TYPE_BF16 && b->n_dims == 2 && b->shape[0] == 3 && b->shape[1] == 2,
          "b fields");
    CHECK(b->offset == st->data_offset + 8 && b->nbytes == 12 && b->n_elements == 6, "b placement");
    CHECK(st->tensors[2].n_dims == 0 && st->tensors[2].n_elements == 1 && st->tensors[2].nbytes == 8, "scalar");
    CHECK(st->tensors[3].n_elements == 0 && st->tensors[3].nbytes == 0, "empty tensor");
    fitlm_safetensors_free(st);
    st = parse("{}", 0, &err);
    CHECK(st && st->n_tensors == 0, "empty header: %s", err.msg);
    fitlm_safetensors_free(st);
}

static void test_invalid(void) {
    static const struct {
        const char *json;
        size_t data;
        const char *want; /* substring of the message */
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "cover"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "belong to no tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need 12"},
        {"{\"a\":{\"dtype\":\"BOOL\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,4]}}", 4, "not a non-negative"},
        {"{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflow"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "reversed"},
        {"{\"a\":[1,2]}", 0, "not a JSON object"},
        {"{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":{\"h\":{\"i\":1}}}}}}}}}", 0, "nested"},
        {"{\"__metadata__\":[1]}", 0, "__metadata__"},
        {"{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty name"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "JSON"},
        {"  {}", 0, "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fitlm_error err = {{0}};
        fitlm_safetensors *st = parse(cases[i].json, cases[i].data, &err);
        CHECK(st == NULL && strstr(err.msg, cases[i].want), "case %zu: got '%s', want '%s'", i, err.msg, cases[i].want);
        fitlm_safetensors_free(st);
    }
    /* header length lies */
    fitlm_error err = {{0}};
    uint8_t b[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    CHECK(!fitlm_safetensors_parse(b, sizeof b, &err) && strstr(err.msg, "limit"), "huge: %s", err.msg);
    uint8_t c[16] = {9, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    CHECK(!fitlm_safetensors_parse(c, sizeof c, &err) && strstr(err.msg, "past the end"), "past end: %s", err.msg);
    CHECK(!fitlm_safetensors_parse(c, 7, &err) && strstr(err.msg, "too short"), "short: %s", err.msg);
}

static int fill(void *user, size_t index, void *buf, uint64_t nbytes, fitlm_error *err) {
    (void)user;
    (void)err;
    for (uint64_t i = 0; i < nbytes; i++) ((uint8_t *)buf)[i] = (uint8_t)(index * 16 + i);
    return 0;
}

static void test_write(const char *tmp) {
    char path[4096];
    snprintf(path, sizeof path, "%s/st-roundtrip.safetensors", tmp);
    float a[6] = {1, 2, 3, 4, 5, 6};
    fitlm_st_out_tensor ts[3] = {
        {"model.a", FITLM_TYPE_F32, 2, {2, 3}, a},
        {"b", FITLM_TYPE_F16, 1, {5}, NULL},
        {"c", FITLM_TYPE_I32, 0, {0}, NULL},
    };
    fitlm_error err = {{0}};
    CHECK(fitlm_safetensors_write(path, ts, 3, fill, NULL, &err) == 0, "write: %s", err.msg);
    fitlm_mapped_file *f = fitlm_file_map(path, &err);
    CHECK(f != NULL, "map: %s", err.msg);
    if (!f) return;
    CHECK((8 + f->data[0]) % 8 == 0, "header padded to 8");
    fitlm_safetensors *st = fitlm_safetensors_parse(f->data, f->size, &err);
    CHECK(st && st->n_tensors == 3, "parse back: %s", err.msg);
    if (st) {
        CHECK(st->tensors[0].type == FITLM_TYPE_F32 && st->tensors[0].shape[1] == 3 &&
                  !memcmp(f->data + st->tensors[0].offset, a, sizeof a),
              "tensor a");
        CHECK(st->tensors[1].nbytes == 10 && f->data[st->tensors[1].offset + 3] == 16 + 3, "tensor b filled");
        CHECK(st->tensors[2].n_dims == 0 && st->tensors[2].nbytes == 4 && f->data[st->tensors[2].offset] == 32, "scalar c");
        fitlm_safetensors_free(st);
    }
    fitlm_file_unmap(f);
    /* a type safetensors cannot hold */
    fitlm_st_out_tensor q = {"q", FITLM_TYPE_Q4_0, 1, {32}, a};
    CHECK(fitlm_safetensors_write(path, &q, 1, NULL, NULL, &err) == -1 && strstr(err.msg, "Q4_0"), "q4_0: %s", err.msg);
}

int main(void) {
    const char *tmp = check_env_or_skip("FITLM_TMP");
    test_valid();
    test_invalid();
    test_write(tmp);
    return check_report();
}
