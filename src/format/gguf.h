/* GGUF (v2, v3) reader and writer.
 *
 * The reader maps the file read-only, validates every count, length, offset and
 * shape against the file size and against overflow *before* allocating, and
 * refuses anything malformed with a one-line reason. Strings are copied into an
 * arena owned by the fitlm_gguf object (NUL-terminated; their byte length is kept
 * too). Tensor data is NOT copied: fitlm_gguf_tensor.data points into the map.
 * Host byte order is assumed little-endian (as GGUF files are).
 */
#ifndef FITLM_FORMAT_GGUF_H
#define FITLM_FORMAT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/file.h"

enum {
    FITLM_GGUF_UINT8 = 0,
    FITLM_GGUF_INT8 = 1,
    FITLM_GGUF_UINT16 = 2,
    FITLM_GGUF_INT16 = 3,
    FITLM_GGUF_UINT32 = 4,
    FITLM_GGUF_INT32 = 5,
    FITLM_GGUF_FLOAT32 = 6,
    FITLM_GGUF_BOOL = 7,
    FITLM_GGUF_STRING = 8,
    FITLM_GGUF_ARRAY = 9,
    FITLM_GGUF_UINT64 = 10,
    FITLM_GGUF_INT64 = 11,
    FITLM_GGUF_FLOAT64 = 12,
};

#define FITLM_GGUF_MAX_DIMS 4
#define FITLM_GGUF_DEFAULT_ALIGNMENT 32
#define FITLM_GGUF_MAX_TENSOR_NAME 64 /* bytes, as in the GGUF spec */
#define FITLM_GGUF_MAX_KEY 65535      /* bytes of a metadata key */
#define FITLM_GGUF_MAX_ARRAY_DEPTH 8  /* an array of arrays of ... at most this deep */

typedef struct fitlm_gguf_str {
    uint64_t len;
    const char *s; /* NUL-terminated copy in the arena */
} fitlm_gguf_str;

typedef struct fitlm_gguf_value fitlm_gguf_value;
struct fitlm_gguf_value {
    int type; /* FITLM_GGUF_* */
    union {
        uint64_t u64; /* UINT8/16/32/64, BOOL (0/1) */
        int64_t i64;  /* INT8/16/32/64 */
        double f64;   /* FLOAT32/64 */
        fitlm_gguf_str str;
        struct {
            int elem_type; /* FITLM_GGUF_* */
            uint64_t n;
            const void *raw;            /* scalar elements: raw little-endian data in the map */
            const fitlm_gguf_str *strs; /* STRING elements (arena) */
            const fitlm_gguf_value *vals; /* ARRAY elements (nested arrays; arena) */
        } arr;
    } v;
};

typedef struct fitlm_gguf_kv {
    fitlm_gguf_str key;
    fitlm_gguf_value value;
} fitlm_gguf_kv;

typedef struct fitlm_gguf_tensor {
    fitlm_gguf_str name;
    int type; /* fitlm_type (ggml id) */
    uint32_t n_dims;
    uint64_t ne[FITLM_GGUF_MAX_DIMS]; /* ne[0] = elements per row (fastest); unused dims = 1 */
    uint64_t n_elements;
    uint64_t offset;   /* absolute offset in the file */
    uint64_t nbytes;   /* exact bytes of data */
    const void *data;  /* points into the map */
} fitlm_gguf_tensor;

/* A name -> index entry of the reader's sorted lookup tables. */
typedef struct fitlm_gguf_name_index {
    const char *name;
    uint64_t idx;
} fitlm_gguf_name_index;

typedef struct fitlm_gguf {
    fitlm_mapped_file *file; /* owned */
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset; /* start of the tensor data section */
    uint64_t n_kv;
    fitlm_gguf_kv *kv;    /* owned, n_kv entries */
    uint64_t n_tensors;
    fitlm_gguf_tensor *tensors; /* owned */
    void *arena;          /* owned storage for strings and nested values */
    fitlm_gguf_name_index *kv_sorted;     /* arena: n_kv entries sorted by key */
    fitlm_gguf_name_index *tensor_sorted; /* arena: n_tensors entries sorted by name */
} fitlm_gguf;

/* Opens and fully validates a GGUF file. Returns an object the caller frees with
 * fitlm_gguf_close(), or NULL with err set (message does not include the path;
 * callers prefix it). */
fitlm_gguf *fitlm_gguf_open(const char *path, fitlm_error *err);
/* Same, from a memory buffer (used by the fuzzer). The buffer must outlive the
 * returned object; it is not copied. */
fitlm_gguf *fitlm_gguf_open_memory(const void *data, uint64_t size, fitlm_error *err);
void fitlm_gguf_close(fitlm_gguf *g);

/* Metadata lookup. Returns NULL if the key is absent. */
const fitlm_gguf_value *fitlm_gguf_get(const fitlm_gguf *g, const char *key);

/* Typed getters: return 1 if found and converted, 0 if absent, -1 (err set) if
 * present with an incompatible type or a value out of range. Integer getters
 * accept any integer type whose value fits. */
int fitlm_gguf_get_u32(const fitlm_gguf *g, const char *key, uint32_t *out, fitlm_error *err);
int fitlm_gguf_get_u64(const fitlm_gguf *g, const char *key, uint64_t *out, fitlm_error *err);
int fitlm_gguf_get_i64(const fitlm_gguf *g, const char *key, int64_t *out, fitlm_error *err);
int fitlm_gguf_get_f32(const fitlm_gguf *g, const char *key, float *out, fitlm_error *err);
int fitlm_gguf_get_bool(const fitlm_gguf *g, const char *key, bool *out, fitlm_error *err);
/* get_str refuses (-1) a string with a NUL byte inside: the caller reads it as
 * a C string, and a silent cut would change its meaning. */
int fitlm_gguf_get_str(const fitlm_gguf *g, const char *key, const char **out, fitlm_error *err);
/* Array getter: checks the element type (pass -1 to accept any). */
int fitlm_gguf_get_arr(const fitlm_gguf *g, const char *key, int elem_type, const fitlm_gguf_value **out,
                       fitlm_error *err);

/* Tensor lookup by name; NULL if absent. */
const fitlm_gguf_tensor *fitlm_gguf_find_tensor(const fitlm_gguf *g, const char *name);

/* Name of a metadata value type ("uint32", "string", ...). */
const char *fitlm_gguf_type_name(int type);
/* Bytes of one value of a scalar metadata type; 0 for STRING and ARRAY; -1
 * for a type the spec does not define. */
int fitlm_gguf_type_size(uint32_t type);
/* Whether general.alignment may be a: a power of two >= 8 (the spec: a multiple of 8) that fits uint32. */
bool fitlm_gguf_alignment_ok(uint64_t a);

/* ---- Writer ----
 * Build a file in memory-light steps: add kv pairs and tensor infos (data is
 * given as a pointer that must stay valid until fitlm_gguf_writer_write), then
 * write. Output goes to a temp file renamed onto `path` on success. */
typedef struct fitlm_gguf_writer fitlm_gguf_writer;

fitlm_gguf_writer *fitlm_gguf_writer_new(uint32_t version /* 2 or 3 */, fitlm_error *err);
void fitlm_gguf_writer_free(fitlm_gguf_writer *w);
int fitlm_gguf_writer_set_alignment(fitlm_gguf_writer *w, uint64_t alignment, fitlm_error *err);
/* Copies a value (deep, incl. arrays and strings) from a reader, e.g. to carry
 * over tokenizer metadata. */
int fitlm_gguf_writer_add_value(fitlm_gguf_writer *w, const char *key, const fitlm_gguf_value *v, fitlm_error *err);
int fitlm_gguf_writer_add_u32(fitlm_gguf_writer *w, const char *key, uint32_t v, fitlm_error *err);
int fitlm_gguf_writer_add_i32(fitlm_gguf_writer *w, const char *key, int32_t v, fitlm_error *err);
int fitlm_gguf_writer_add_u64(fitlm_gguf_writer *w, const char *key, uint64_t v, fitlm_error *err);
int fitlm_gguf_writer_add_f32(fitlm_gguf_writer *w, const char *key, float v, fitlm_error *err);
int fitlm_gguf_writer_add_bool(fitlm_gguf_writer *w, const char *key, bool v, fitlm_error *err);
int fitlm_gguf_writer_add_str(fitlm_gguf_writer *w, const char *key, const char *v, fitlm_error *err);
/* Array of scalars: elem_type FITLM_GGUF_* (not STRING/ARRAY); data holds n
 * little-endian elements (copied). */
int fitlm_gguf_writer_add_arr(fitlm_gguf_writer *w, const char *key, int elem_type, const void *data, uint64_t n,
                              fitlm_error *err);
int fitlm_gguf_writer_add_str_arr(fitlm_gguf_writer *w, const char *key, const char *const *strs, uint64_t n,
                                  fitlm_error *err);
/* Adds a tensor. ne[0] is the row length. nbytes is derived from type and shape
 * and must match the data the caller provides. `data` is borrowed until write,
 * or may be NULL if a fill callback is given to write. */
int fitlm_gguf_writer_add_tensor(fitlm_gguf_writer *w, const char *name, int type, uint32_t n_dims,
                                 const uint64_t *ne, const void *data, fitlm_error *err);
/* Optional: produce tensor i's bytes on demand (for quantize: avoids holding all
 * outputs in memory). Called in tensor order with a buffer of exactly nbytes. */
typedef int (*fitlm_gguf_fill_fn)(void *user, uint64_t tensor_index, void *buf, uint64_t nbytes, fitlm_error *err);
int fitlm_gguf_writer_write(fitlm_gguf_writer *w, const char *path, fitlm_gguf_fill_fn fill, void *user,
                            fitlm_error *err);

#endif
