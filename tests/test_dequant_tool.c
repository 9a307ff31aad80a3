/* Three modes:
 *  - tool mode, `test_dequant_tool TYPE IN OUT`: dequantizes the raw blocks in
 *    file IN with fitlm_dequantize_row and writes little-endian float32 to OUT
 *    (used by test_dequant.py, which checks the values against numpy);
 *  - `test_dequant_tool matmul TYPE W X ROWS COLS NTOK THREADS ISA OUT`: runs
 *    fitlm_cpu_matmul on the raw weights in W and float32 activations in X with
 *    the given thread count and kernel family (scalar/avx2/avx512, lowered to
 *    what the CPU has) and writes Y as float32 (test_matmul_numpy.py);
 *  - test mode (no arguments): hand-made blocks whose values follow directly
 *    from the GGUF block definitions, and get_row/dequantize agreement. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/kernels.h"
#include "sys/threadpool.h"
#include "check.h"
#include "format/ggml_type.h"
#include "util/fp16.h"

static int tool(const char *tname, const char *in, const char *out) {
    int type = fitlm_type_from_name(tname);
    const fitlm_type_info *ti = fitlm_type_get(type);
    if (!ti || !fitlm_cpu_type_supported(type)) {
        fprintf(stderr, "test_dequant_tool: unsupported type %s\n", tname);
        return 2;
    }
    FILE *f = fopen(in, "rb");
    if (!f) {
        fprintf(stderr, "test_dequant_tool: %s: cannot open\n", in);
        return 2;
    }
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return 2;
    }
    long size = ftell(f);
    rewind(f);
    if (size < 0 || size % ti->block_bytes != 0 || size > (1l << 30)) {
        fprintf(stderr, "test_dequant_tool: %s: %ld bytes is not a whole number of %s blocks\n", in, size, tname);
        fclose(f);
        return 2;
    }
    int64_t nblk = size / ti->block_bytes, n = nblk * ti->block_size;
    uint8_t *raw = malloc((size_t)size + 1);
    float *y = malloc(sizeof(float) * (size_t)(n + 1));
    int rc = 2;
    if (raw && y && fread(raw, 1, (size_t)size, f) == (size_t)size && fitlm_dequantize_row(type, raw, y, n) == 0) {
        FILE *o = fopen(out, "wb");
        if (o && fwrite(y, sizeof(float), (size_t)n, o) == (size_t)n) rc = 0;
        if (o && fclose(o) != 0) rc = 2;
    }
    if (rc) fprintf(stderr, "test_dequant_tool: failed on %s\n", in);
    fclose(f);
    free(raw);
    free(y);
    return rc;
}

static void *read_file(const char *path, size_t want) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    void *buf = malloc(want ? want : 1);
    size_t got = buf ? fread(buf, 1, want, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != want || extra) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int matmul_tool(char **a) {
    int type = fitlm_type_from_name(a[0]);
    long long rows = atoll(a[3]), cols = atoll(a[4]), ntok = atoll(a[5]);
    int threads = atoi(a[6]);
    bool ok;
    if (!fitlm_cpu_type_supported(type) || rows <= 0 || cols <= 0 || ntok <= 0 || rows > 1 << 20 ||
        cols > 1 << 20 || ntok > 4096 || threads < 1 || threads > 64) {
        fprintf(stderr, "test_dequant_tool: bad matmul arguments\n");
        return 2;
    }
    uint64_t wbytes = fitlm_type_row_bytes(type, (uint64_t)cols, &ok) * (uint64_t)rows;
    if (!ok || wbytes > (1u << 30)) return 2;
    void *W = read_file(a[1], (size_t)wbytes);
    float *X = read_file(a[2], sizeof(float) * (size_t)(cols * ntok));
    float *Y = malloc(sizeof(float) * (size_t)(rows * ntok));
    int rc = 2;
    if (W && X && Y) {
        fitlm_cpu_isa want = !strcmp(a[7], "scalar") ? FITLM_ISA_SCALAR
                             : !strcmp(a[7], "avx2") ? FITLM_ISA_AVX2
                                                     : FITLM_ISA_AVX512;
        fitlm_cpu_isa_set(want);
        fitlm_cpu_set_parallel_threshold(0);
        fitlm_threadpool *pool = fitlm_threadpool_new(threads);
        fitlm_cpu_matmul(pool, type, W, rows, cols, X, ntok, Y);
        fitlm_threadpool_free(pool);
        FILE *o = fopen(a[8], "wb");
        if (o && fwrite(Y, sizeof(float), (size_t)(rows * ntok), o) == (size_t)(rows * ntok)) rc = 0;
        if (o && fclose(o) != 0) rc = 2;
        printf("%s\n", fitlm_cpu_kernel_isa_name(type));
    } else {
        fprintf(stderr, "test_dequant_tool: cannot read the matmul inputs (sizes?)\n");
    }
    free(W);
    free(X);
    free(Y);
    return rc;
}

static void put_half(uint8_t *p, float v) {
    uint16_t h = fitlm_fp32_to_fp16(v);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

int main(int argc, char **argv) {
    if (argc == 4) return tool(argv[1], argv[2], argv[3]);
    if (argc == 11 && !strcmp(argv[1], "matmul")) return matmul_tool(argv + 2);
    if (argc != 1) {
        fprintf(stderr, "usage: test_dequant_tool [TYPE IN.bin OUT.f32]\n");
        return 2;
    }
    float y[256];

    /* Q4_0: d = 0.5, qs[0] = 0x1f: element 0 = low nibble 15 - 8 = 7 -> 3.5,
     * element 16 = high nibble 1 - 8 = -7 -> -3.5 */
    uint8_t q40[18] = {0};
    put_half(q40, 0.5f);
    q40[2] = 0x1f;
    for (int j = 1; j < 16; j++) q40[2 + j] = 0x88; /* zeros */
    CHECK(fitlm_dequantize_row(FITLM_TYPE_Q4_0, q40, y, 32) == 0, "q4_0");
    CHECK(y[0] == 3.5f && y[16] == -3.5f && y[1] == 0.0f && y[31] == 0.0f, "q4_0 values %g %g", (double)y[0],
          (double)y[16]);

    /* Q5_1: d = 2, m = -1, qh bit 16 set: element 16 = (high nibble | 16) */
    uint8_t q51[24] = {0};
    put_half(q51, 2.0f);
    put_half(q51 + 2, -1.0f);
    q51[4 + 2] = 0x01; /* bit 16 of qh */
    q51[8] = 0x23;     /* element 0 = 3, element 16 = 2 | 16 = 18 */
    CHECK(fitlm_dequantize_row(FITLM_TYPE_Q5_1, q51, y, 32) == 0, "q5_1");
    CHECK(y[0] == 5.0f && y[16] == 35.0f && y[1] == -1.0f, "q5_1 values %g %g %g", (double)y[0], (double)y[16],
          (double)y[1]);

    /* Q4_K: d = 1, dmin = 0.5; sub-block 0 scale 3 min 2, sub-block 1 scale
     * 5 min 1, sub-block 4 scale 0x25 (low nibble 5 in byte 8, high bits 2 in
     * byte 0 bits 6-7) min 0x13 (low nibble 3 in byte 8, high bits 1 in byte 4); qs[0] = 0xa7: element 0 = 7, element 32 = 10 */
    uint8_t q4k[144] = {0};
    put_half(q4k, 1.0f);
    put_half(q4k + 2, 0.5f);
    q4k[4 + 0] = 3 | (2 << 6); /* scale0 = 3, high bits of scale4 = 2 */
    q4k[4 + 1] = 5;            /* scale1 = 5 */
    q4k[4 + 4] = 2 | (1 << 6); /* min0 = 2, high bits of min4 = 1 */
    q4k[4 + 5] = 1;            /* min1 = 1 */
    q4k[4 + 8] = 0x35;         /* scale4 low = 5, min4 low = 3 */
    q4k[16] = 0xa7;
    CHECK(fitlm_dequantize_row(FITLM_TYPE_Q4_K, q4k, y, 256) == 0, "q4_k");
    CHECK(y[0] == 3.0f * 7.0f - 1.0f, "q4_k e0 %g", (double)y[0]);
    CHECK(y[32] == 5.0f * 10.0f - 0.5f, "q4_k e32 %g", (double)y[32]);
    CHECK(y[128] == 0x25 * 0.0f - 0.5f * (float)(3 | (1 << 4)), "q4_k e128 %g", (double)y[128]);

    /* Q6_K: d = 0.25, scales[0] = -2, ql[0] = 0x21, qh[0] = 0x03:
     * element 0 = (1 | 3 << 4) - 32 = 17 -> 0.25 * -2 * 17 = -8.5;
     * element 64 = (2 | 0) - 32 = -30 with scales[4] = 1 -> -7.5 */
    uint8_t q6k[210] = {0};
    q6k[0] = 0x21;
    q6k[128] = 0x03;
    q6k[192] = (uint8_t)(int8_t)-2;
    q6k[196] = 1;
    put_half(q6k + 208, 0.25f);
    CHECK(fitlm_dequantize_row(FITLM_TYPE_Q6_K, q6k, y, 256) == 0, "q6_k");
    CHECK(y[0] == -8.5f && y[64] == -7.5f, "q6_k %g %g", (double)y[0], (double)y[64]);

    /* Q3_K: all hmask bits clear -> q = low2 - 4; scale of sub-block 0 from
     * byte 0 low nibble (1) and byte 8 bits 0-1 (2): 0x21 - 32 = 1 */
    uint8_t q3k[110] = {0};
    q3k[96 + 0] = 0x01;
    q3k[96 + 8] = 0x02;
    q3k[32] = 0x03; /* element 0: low2 = 3 -> q = -1 */
    put_half(q3k + 108, 2.0f);
    CHECK(fitlm_dequantize_row(FITLM_TYPE_Q3_K, q3k, y, 256) == 0, "q3_k");
    CHECK(y[0] == -2.0f && y[1] == -8.0f, "q3_k %g %g", (double)y[0], (double)y[1]);

    /* get_row == dequantize of the same row; bad shapes refused */
    uint8_t two[36] = {0};
    put_half(two, 1.0f);
    put_half(two + 18, 2.0f);
    two[20] = 0x99;
    float r1[32];
    CHECK(fitlm_cpu_get_row(FITLM_TYPE_Q4_0, two, 32, 1, r1) == 0 && r1[0] == 2.0f && r1[16] == 2.0f, "get_row");
    CHECK(fitlm_dequantize_row(FITLM_TYPE_Q4_0, two, y, 33) == -1, "partial block refused");
    CHECK(fitlm_dequantize_row(FITLM_TYPE_IQ2_XXS, two, y, 256) == -1, "unsupported type refused");
    return check_report();
}
