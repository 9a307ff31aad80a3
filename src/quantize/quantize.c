#include "quantize/quantize.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "quant/quant.h"
#include "sys/threadpool.h"
#include "format/ggml_type.h"
#include "format/gguf.h"
#include "model/convert.h"
#include "util/fp16.h"

/* llama.cpp's LLAMA_FTYPE ids (general.file_type). */
enum {
    FTYPE_ALL_F32 = 0,
    FTYPE_MOSTLY_F16 = 1,
    FTYPE_MOSTLY_Q4_0 = 2,
    FTYPE_MOSTLY_Q8_0 = 7,
    FTYPE_MOSTLY_Q4_K_S = 14,
    FTYPE_MOSTLY_Q4_K_M = 15,
    FTYPE_MOSTLY_Q6_K = 18,
    FTYPE_MOSTLY_BF16 = 32,
};

#define QUANTIZATION_VERSION 2 /* general.quantization_version of the current block layouts */

static const fitlm_quant_scheme schemes[] = {
    {"Q8_0", FITLM_TYPE_Q8_0, FTYPE_MOSTLY_Q8_0, false, "8.50 bpw, 8-bit blocks of 32 with an F16 scale"},
    {"Q6_K", FITLM_TYPE_Q6_K, FTYPE_MOSTLY_Q6_K, false, "6.56 bpw, 6-bit super-blocks of 256"},
    {"Q4_K_M", FITLM_TYPE_Q4_K, FTYPE_MOSTLY_Q4_K_M, true,
     "mix: Q4_K, with Q6_K for output and for attn_v/ffn_down in about half of the layers"},
    {"Q4_K", FITLM_TYPE_Q4_K, FTYPE_MOSTLY_Q4_K_S, false, "4.50 bpw, 4-bit super-blocks of 256 (scales and mins)"},
    {"Q4_0", FITLM_TYPE_Q4_0, FTYPE_MOSTLY_Q4_0, false, "4.50 bpw, 4-bit blocks of 32 with an F16 scale"},
    {"F16", FITLM_TYPE_F16, FTYPE_MOSTLY_F16, false, "16 bpw, IEEE half precision"},
    {"BF16", FITLM_TYPE_BF16, FTYPE_MOSTLY_BF16, false, "16 bpw, bfloat16"},
    {"F32", FITLM_TYPE_F32, FTYPE_ALL_F32, false, "32 bpw, no rounding"},
};

int fitlm_quant_schemes(const fitlm_quant_scheme **out) {
    *out = schemes;
    return (int)(sizeof schemes / sizeof schemes[0]);
}

const fitlm_quant_scheme *fitlm_quant_scheme_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
        if (strcasecmp(name, schemes[i].name) == 0) return &schemes[i];
    return NULL;
}

bool fitlm_quant_more_bits_layer(int layer, int n_layers) {
    if (layer < 0 || n_layers <= 0) return false;
    int e = n_layers / 8;
    return layer < e || layer >= 7 * n_layers / 8 || (layer - e) % 3 == 2;
}

static bool is_float_type(int t) { return t == FITLM_TYPE_F32 || t == FITLM_TYPE_F16 || t == FITLM_TYPE_BF16; }

int fitlm_quant_tensor_type(const fitlm_quant_scheme *s, fitlm_tensor_kind kind, int layer, int n_layers,
                            uint32_t n_dims, bool tied) {
    if (n_dims < 2) return FITLM_TYPE_F32;
    if (!s->mix) return s->type;
    if (kind == FITLM_T_OUTPUT || (tied && kind == FITLM_T_TOKEN_EMBD)) return FITLM_TYPE_Q6_K;
    if ((kind == FITLM_T_ATTN_V || kind == FITLM_T_FFN_DOWN) && fitlm_quant_more_bits_layer(layer, n_layers))
        return FITLM_TYPE_Q6_K;
    return FITLM_TYPE_Q4_K;
}

int fitlm_quant_fallback_type(int type, uint64_t row_len) {
    const fitlm_type_info *ti = fitlm_type_get(type);
    if (!ti || row_len == 0) return FITLM_TYPE_F32;
    if (row_len % ti->block_size == 0) return type;
    if (row_len % 32 == 0) {
        if (type == FITLM_TYPE_Q4_K) return FITLM_TYPE_Q5_0;
        if (type == FITLM_TYPE_Q6_K) return FITLM_TYPE_Q8_0;
    }
    return FITLM_TYPE_F16;
}

bool fitlm_quant_override_ok(int type) {
    switch (type) {
    case FITLM_TYPE_F32:
    case FITLM_TYPE_F16:
    case FITLM_TYPE_BF16:
    case FITLM_TYPE_Q8_0:
    case FITLM_TYPE_Q6_K:
    case FITLM_TYPE_Q5_0:
    case FITLM_TYPE_Q4_K:
    case FITLM_TYPE_Q4_0:
        return true;
    default:
        return false;
    }
}

/* ---- the tensors to write ---- */

typedef struct qitem {
    const char *name;
    const fitlm_tensor *src;         /* NULL: generated data in gen */
    const float *gen;
    const fitlm_export_tensor *et;   /* row permutation (non-GGUF sources), else NULL */
    uint32_t n_dims;
    uint64_t ne[4];
    uint64_t n_elements;
    uint64_t row_len, rows;          /* row_len = ne[0] (1 for a permuted 1-D tensor) */
    int in_type, out_type;
    int want_type; /* the scheme's choice before the row-length fallback */
    uint64_t in_row_bytes, out_row_bytes, out_bytes;
    bool fallback;
} qitem;

typedef struct qctx {
    const fitlm_model *m;
    const fitlm_export_plan *plan;
    const fitlm_quantize_opts *o;
    qitem *items;
    size_t n;
    fitlm_threadpool *pool;
    int nth;
    float **scratch;  /* nth rows of max_row floats */
    int *thread_bad;  /* per thread: one of the BAD_* codes */
    uint64_t *bad_row; /* per thread: the row that failed */
    /* the tensor being filled */
    const qitem *cur;
    uint8_t *buf;
    atomic_uint_fast64_t next_row; /* rows are handed out in ROW_CHUNK pieces */
    /* progress */
    uint64_t done_in, total_in;
    struct timespec t0;
} qctx;

static double now_s(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

/* Output row r of the current tensor as floats. */
static int read_row(const qctx *c, const qitem *it, uint64_t r, float *dst) {
    uint64_t n = it->row_len;
    if (!it->src) {
        memcpy(dst, it->gen + r * n, (size_t)n * sizeof(float));
        return 0;
    }
    uint64_t sr = it->et ? fitlm_export_src_row(c->plan, it->et, r) : r;
    const uint8_t *p = (const uint8_t *)it->src->data + sr * it->in_row_bytes;
    switch (it->in_type) {
    case FITLM_TYPE_F32:
        memcpy(dst, p, (size_t)n * sizeof(float));
        return 0;
    case FITLM_TYPE_F16:
    case FITLM_TYPE_BF16:
        for (uint64_t e = 0; e < n; e++) {
            uint16_t h;
            memcpy(&h, p + 2 * e, 2);
            dst[e] = it->in_type == FITLM_TYPE_F16 ? fitlm_fp16_to_fp32(h) : fitlm_bf16_to_fp32(h);
        }
        return 0;
    default:
        return fitlm_dequantize_row(it->in_type, p, dst, (int64_t)n);
    }
}

enum { BAD_NONE = 0, BAD_QUANTIZER, BAD_DEQUANTIZER, BAD_NONFINITE, BAD_F16_RANGE };

/* BAD_NONE, or why the row cannot be stored. */
static int write_row(const qitem *it, const float *x, uint8_t *out) {
    uint64_t n = it->row_len;
    switch (it->out_type) {
    case FITLM_TYPE_F32:
        memcpy(out, x, (size_t)n * sizeof(float));
        return 0;
    case FITLM_TYPE_F16:
    case FITLM_TYPE_BF16:
        for (uint64_t e = 0; e < n; e++) {
            /* values that round to infinity in half precision (|x| >= 65520) */
            if (it->out_type == FITLM_TYPE_F16 && fabsf(x[e]) >= 65520.0f) return BAD_F16_RANGE;
            uint16_t h = it->out_type == FITLM_TYPE_F16 ? fitlm_fp32_to_fp16(x[e]) : fitlm_fp32_to_bf16(x[e]);
            memcpy(out + 2 * e, &h, 2);
        }
        return 0;
    default: {
        int64_t w = fitlm_quantize_row(it->out_type, x, out, (int64_t)n, NULL);
        return w == (int64_t)it->out_row_bytes ? BAD_NONE : BAD_QUANTIZER;
    }
    }
}

/* Rows per piece a thread takes at a time: small enough that the threads
 * finish together when some are slowed (a shared machine, one core busier),
 * large enough that the shared counter costs nothing (a row of a 1B model
 * takes 0.1-0.5 ms to quantize). */
#define ROW_CHUNK 8

static void quantize_rows(void *arg, int ith, int nth) {
    qctx *c = arg;
    const qitem *it = c->cur;
    (void)nth;
    float *x = c->scratch[ith];
    bool copy = it->src && it->in_type == it->out_type;
    for (;;) {
        uint64_t r0 = atomic_fetch_add(&c->next_row, ROW_CHUNK);
        if (r0 >= it->rows) return;
        uint64_t r1 = it->rows - r0 > ROW_CHUNK ? r0 + ROW_CHUNK : it->rows;
        for (uint64_t r = r0; r < r1; r++) {
            uint8_t *out = c->buf + r * it->out_row_bytes;
            if (copy) { /* same type: the exact bytes (permuted if needed) */
                uint64_t sr = it->et ? fitlm_export_src_row(c->plan, it->et, r) : r;
                memcpy(out, (const uint8_t *)it->src->data + sr * it->in_row_bytes, (size_t)it->out_row_bytes);
                continue;
            }
            int bad = read_row(c, it, r, x) != 0 ? BAD_DEQUANTIZER : BAD_NONE;
            for (uint64_t e = 0; e < it->row_len && !bad; e++)
                if (!isfinite(x[e])) bad = BAD_NONFINITE;
            if (!bad) bad = write_row(it, x, out);
            if (bad) {
                c->thread_bad[ith] = bad;
                c->bad_row[ith] = r;
                return;
            }
        }
    }
}

static void shape_str(const qitem *it, char *buf, size_t n) {
    int k = snprintf(buf, n, "%" PRIu64, it->ne[0]);
    for (uint32_t d = 1; d < it->n_dims && k > 0 && (size_t)k < n; d++)
        k += snprintf(buf + k, n - (size_t)k, " x %" PRIu64, it->ne[d]);
}

static int fill(void *user, uint64_t index, void *buf, uint64_t nbytes, fitlm_error *err) {
    qctx *c = user;
    if (index >= c->n) return fitlm_fail(err, "internal error: tensor index %" PRIu64 " out of range", index);
    const qitem *it = &c->items[index];
    if (nbytes != it->out_bytes) return fitlm_fail(err, "internal error: '%s' size mismatch", it->name);
    c->cur = it;
    c->buf = buf;
    for (int i = 0; i < c->nth; i++) c->thread_bad[i] = 0;
    atomic_store(&c->next_row, 0);
    if (it->rows) fitlm_threadpool_run(it->rows >= 4 ? c->pool : NULL, quantize_rows, c);
    for (int i = 0; i < c->nth; i++) {
        uint64_t r = c->bad_row[i];
        switch (c->thread_bad[i]) {
        case BAD_QUANTIZER:
            return fitlm_fail(err, "tensor '%s': the %s quantizer failed", it->name, fitlm_type_name(it->out_type));
        case BAD_DEQUANTIZER:
            return fitlm_fail(err, "tensor '%s': cannot dequantize %s", it->name, fitlm_type_name(it->in_type));
        case BAD_NONFINITE:
            return fitlm_fail(err, "tensor '%s': row %" PRIu64 " has a NaN or infinite value", it->name, r);
        case BAD_F16_RANGE:
            return fitlm_fail(err, "tensor '%s': row %" PRIu64 " has a value beyond the F16 range (|x| >= 65520); "
                                   "use BF16 or F32", it->name, r);
        default:
            break;
        }
    }
    c->done_in += it->src ? it->src->nbytes : it->n_elements * 4;
    if (c->o->progress) {
        char shape[96];
        shape_str(it, shape, sizeof shape);
        int w = 1;
        for (size_t n = c->n; n >= 10; n /= 10) w++;
        double pct = c->total_in ? 100.0 * (double)c->done_in / (double)c->total_in : 100.0;
        fprintf(c->o->progress, "[%*" PRIu64 "/%zu] %-28s %5s -> %-5s [%s] %.2f -> %.2f MiB%s  %3.0f%% %.1fs\n", w,
                index + 1, c->n, it->name, fitlm_type_name(it->in_type), fitlm_type_name(it->out_type), shape,
                (double)(it->src ? it->src->nbytes : it->n_elements * 4) / 1048576.0, (double)it->out_bytes / 1048576.0,
                it->fallback ? " (fallback)" : "", pct, now_s(&c->t0));
        fflush(c->o->progress);
    }
    return 0;
}

/* Fills item geometry and the output type; checks the source data. */
static int setup_item(qctx *c, qitem *it, fitlm_tensor_kind kind, int layer, bool tied, fitlm_error *err) {
    const fitlm_quantize_opts *o = c->o;
    it->n_elements = 1;
    for (uint32_t d = 0; d < 4; d++) {
        if (d >= it->n_dims) it->ne[d] = 1;
        it->n_elements *= it->ne[d];
    }
    if (it->src) {
        it->in_type = it->src->type;
        const fitlm_type_info *ti = fitlm_type_get(it->in_type);
        if (!ti || !(is_float_type(it->in_type) || ti->quantized))
            return fitlm_fail(err, "tensor '%s' has type %s, which fitlm cannot quantize from", it->name,
                              fitlm_type_name(it->in_type));
        if (ti->quantized && !o->allow_requantize)
            return fitlm_fail(err, "tensor '%s' is already quantized (%s); quantizing it again loses accuracy; "
                                   "start from an F32/F16/BF16 model, or pass --allow-requantize",
                              it->name, fitlm_type_name(it->in_type));
        if (!it->src->data) return fitlm_fail(err, "tensor '%s' has no data", it->name);
    } else {
        it->in_type = FITLM_TYPE_F32;
    }
    it->row_len = (it->et && it->et->permute && it->n_dims == 1) ? 1 : it->ne[0];
    if (it->row_len == 0 || it->n_elements == 0) {
        it->rows = 0;
    } else {
        it->rows = it->n_elements / it->row_len;
    }
    int want = fitlm_quant_tensor_type(o->scheme, kind, layer, (int)c->m->hp.n_layers, it->n_dims, tied);
    if (it->n_dims >= 2) {
        if (o->output_type != FITLM_TYPE_INVALID && (kind == FITLM_T_OUTPUT || (tied && kind == FITLM_T_TOKEN_EMBD)))
            want = o->output_type;
        else if (o->embd_type != FITLM_TYPE_INVALID && kind == FITLM_T_TOKEN_EMBD)
            want = o->embd_type;
    }
    int type = it->row_len ? fitlm_quant_fallback_type(want, it->row_len) : want;
    /* An already-quantized tensor that the recipe keeps in its type is copied. */
    if (it->src && want == it->in_type) type = want;
    it->out_type = type;
    it->want_type = want;
    it->fallback = type != want;
    bool ok_in = true, ok_out = true;
    if (it->row_len) {
        it->in_row_bytes = fitlm_type_row_bytes(it->in_type, it->row_len, &ok_in);
        it->out_row_bytes = fitlm_type_row_bytes(it->out_type, it->row_len, &ok_out);
    }
    if (!ok_in || !ok_out)
        return fitlm_fail(err, "tensor '%s': rows of %" PRIu64 " elements do not fit type %s", it->name, it->row_len,
                          fitlm_type_name(ok_in ? it->out_type : it->in_type));
    it->out_bytes = it->out_row_bytes * it->rows;
    if (it->src && it->in_row_bytes * it->rows != it->src->nbytes)
        return fitlm_fail(err, "tensor '%s': %" PRIu64 " bytes of data for %" PRIu64 " %s elements", it->name,
                          it->src->nbytes, it->n_elements, fitlm_type_name(it->in_type));
    return 0;
}

/* Checks once, on a zero block, that the kernels can (de)quantize a type. */
static int check_kernels(const qitem *it, fitlm_error *err) {
    float x[256] = {0};
    uint8_t q[256 * 4];
    const fitlm_type_info *to = fitlm_type_get(it->out_type), *ti = fitlm_type_get(it->in_type);
    if (to && to->quantized && fitlm_quantize_row(it->out_type, x, q, to->block_size, NULL) != (int64_t)to->block_bytes)
        return fitlm_fail(err, "tensor '%s': no quantizer for %s", it->name, fitlm_type_name(it->out_type));
    if (ti && ti->quantized && it->in_type != it->out_type) {
        memset(q, 0, sizeof q);
        if (fitlm_dequantize_row(it->in_type, q, x, ti->block_size) != 0)
            return fitlm_fail(err, "tensor '%s': no dequantizer for %s", it->name, fitlm_type_name(it->in_type));
    }
    return 0;
}

/* One note per (wanted type, row length, fallback type), naming a few tensors. */
static void print_fallback_notes(const qctx *c, FILE *out) {
    bool *done = calloc(c->n ? c->n : 1, sizeof *done);
    if (!done) return;
    for (size_t i = 0; i < c->n; i++) {
        const qitem *a = &c->items[i];
        if (!a->fallback || done[i]) continue;
        size_t count = 0;
        char names[160] = "";
        size_t len = 0;
        for (size_t j = i; j < c->n; j++) {
            const qitem *b = &c->items[j];
            if (!b->fallback || done[j] || b->want_type != a->want_type || b->out_type != a->out_type ||
                b->row_len != a->row_len)
                continue;
            done[j] = true;
            if (count < 3 && len < sizeof names) {
                int k = snprintf(names + len, sizeof names - len, "%s%s", count ? ", " : "", b->name);
                if (k > 0) len += (size_t)k;
            }
            count++;
        }
        fprintf(out, "fitlm: note: rows of %" PRIu64 " elements are not a multiple of %s's block of %u: %zu tensor%s "
                     "stored as %s (%s%s)\n",
                a->row_len, fitlm_type_name(a->want_type), fitlm_type_get(a->want_type)->block_size, count,
                count == 1 ? "" : "s", fitlm_type_name(a->out_type), names, count > 3 ? ", ..." : "");
    }
    free(done);
}

static int add_metadata(qctx *c, fitlm_gguf_writer *w, fitlm_error *err) {
    const fitlm_model *m = c->m;
    int ftype = c->o->scheme->ftype;
    if (m->format == FITLM_FORMAT_GGUF && m->gguf) {
        const fitlm_gguf *g = m->gguf;
        for (uint64_t i = 0; i < g->n_kv; i++) {
            const char *k = g->kv[i].key.s;
            if (!strcmp(k, "general.file_type") || !strcmp(k, "general.quantization_version")) continue;
            if (fitlm_gguf_writer_add_value(w, k, &g->kv[i].value, err) != 0) return -1;
        }
        if (fitlm_gguf_writer_add_u32(w, "general.file_type", (uint32_t)ftype, err) != 0) return -1;
    } else if (fitlm_export_gguf_metadata(m, w, ftype, err) != 0) {
        return -1;
    }
    return fitlm_gguf_writer_add_u32(w, "general.quantization_version", QUANTIZATION_VERSION, err);
}

int fitlm_quantize_model(const fitlm_model *m, const char *out, const fitlm_quantize_opts *opts,
                         fitlm_quantize_stats *stats, fitlm_error *err) {
    if (!opts || !opts->scheme) return fitlm_fail(err, "no quantization type given");
    if ((opts->output_type != FITLM_TYPE_INVALID && !fitlm_quant_override_ok(opts->output_type)) ||
        (opts->embd_type != FITLM_TYPE_INVALID && !fitlm_quant_override_ok(opts->embd_type)))
        return fitlm_fail(err, "an override type must be one of F32, F16, BF16, Q8_0, Q6_K, Q5_0, Q4_K, Q4_0");
    if (!m->hp_valid || !m->n_tensors) return fitlm_fail(err, "the model has no usable weights");
    qctx c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.o = opts;
    fitlm_export_plan plan;
    memset(&plan, 0, sizeof plan);
    fitlm_gguf_writer *w = NULL;
    int rc = -1;
    bool gguf_src = m->format == FITLM_FORMAT_GGUF && m->gguf;

    /* 1. the list of output tensors */
    if (gguf_src) {
        c.n = m->n_tensors;
    } else {
        fitlm_convert_opts co = {FITLM_FORMAT_GGUF, FITLM_TYPE_INVALID};
        if (fitlm_export_plan_build(&plan, m, &co, err) != 0) goto done;
        c.plan = &plan;
        c.n = plan.n;
    }
    c.items = calloc(c.n ? c.n : 1, sizeof *c.items);
    if (!c.items) {
        fitlm_fail(err, "out of memory");
        goto done;
    }
    bool tied = true;
    for (size_t i = 0; i < c.n; i++) {
        fitlm_tensor_kind kind = gguf_src ? m->tensors[i].kind : plan.t[i].kind;
        if (kind == FITLM_T_OUTPUT) tied = false;
    }
    uint64_t max_row = 1;
    for (size_t i = 0; i < c.n; i++) {
        qitem *it = &c.items[i];
        fitlm_tensor_kind kind;
        int layer;
        if (gguf_src) {
            const fitlm_tensor *t = &m->tensors[i];
            it->name = t->name;
            it->src = t;
            it->n_dims = t->n_dims ? t->n_dims : 1;
            memcpy(it->ne, t->ne, sizeof it->ne);
            kind = t->kind;
            layer = t->layer;
        } else {
            const fitlm_export_tensor *et = &plan.t[i];
            it->name = et->name;
            it->src = et->src;
            it->gen = et->gen;
            it->et = et;
            it->n_dims = et->n_dims;
            memcpy(it->ne, et->ne, sizeof it->ne);
            kind = et->kind;
            layer = et->layer;
        }
        if (it->n_dims > 4) {
            fitlm_fail(err, "tensor '%s' has %u dimensions", it->name, it->n_dims);
            goto done;
        }
        if (setup_item(&c, it, kind, layer, tied, err) != 0 || check_kernels(it, err) != 0) goto done;
        if (it->row_len > max_row) max_row = it->row_len;
        c.total_in += it->src ? it->src->nbytes : it->n_elements * 4;
    }
    if (opts->notes) print_fallback_notes(&c, opts->notes);
    if (max_row > ((uint64_t)1 << 32)) {
        fitlm_fail(err, "rows of %" PRIu64 " elements are too long", max_row);
        goto done;
    }

    /* 2. threads and per-thread row buffers */
    c.pool = fitlm_threadpool_new(opts->n_threads);
    c.nth = c.pool ? fitlm_threadpool_size(c.pool) : 1;
    if (c.nth < 1) c.nth = 1;
    c.scratch = calloc((size_t)c.nth, sizeof *c.scratch);
    c.thread_bad = calloc((size_t)c.nth, sizeof *c.thread_bad);
    c.bad_row = calloc((size_t)c.nth, sizeof *c.bad_row);
    if (!c.scratch || !c.thread_bad || !c.bad_row) {
        fitlm_fail(err, "out of memory");
        goto done;
    }
    for (int i = 0; i < c.nth; i++)
        if (!(c.scratch[i] = malloc((size_t)max_row * sizeof(float)))) {
            fitlm_fail(err, "out of memory");
            goto done;
        }

    /* 3. metadata, tensor infos, then the data through fill() */
    if (!(w = fitlm_gguf_writer_new(3, err))) goto done;
    if (add_metadata(&c, w, err) != 0) goto done;
    for (size_t i = 0; i < c.n; i++)
        if (fitlm_gguf_writer_add_tensor(w, c.items[i].name, c.items[i].out_type, c.items[i].n_dims, c.items[i].ne,
                                         NULL, err) != 0)
            goto done;
    clock_gettime(CLOCK_MONOTONIC, &c.t0);
    if (fitlm_gguf_writer_write(w, out, fill, &c, err) != 0) goto done;

    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->n_tensors = c.n;
        for (size_t i = 0; i < c.n; i++) {
            const qitem *it = &c.items[i];
            stats->n_elements += it->n_elements;
            stats->in_bytes += it->src ? it->src->nbytes : it->n_elements * 4;
            stats->out_bytes += it->out_bytes;
            stats->n_fallbacks += it->fallback;
            if (it->out_type >= 0 && it->out_type < 64) stats->type_tensors[it->out_type]++;
        }
        struct stat st;
        if (stat(out, &st) == 0) stats->out_file_bytes = (uint64_t)st.st_size;
    }
    rc = 0;
done:
    if (c.scratch)
        for (int i = 0; i < c.nth; i++) free(c.scratch[i]);
    free(c.scratch);
    free(c.thread_bad);
    free(c.bad_row);
    fitlm_threadpool_free(c.pool);
    fitlm_gguf_writer_free(w);
    free(c.items);
    fitlm_export_plan_free(&plan);
    return rc;
}
