/* CPU compute kernels: (de)quantization of the GGUF block formats, dot products
 * and matrix multiplication with run-time SIMD dispatch.
 *
 * Conventions: a weight matrix W has `rows` rows of `cols` elements, stored row
 * after row in its GGUF type (a row is cols/block_size blocks). Activations are
 * float32, token after token: X[t*cols + c]. All functions are thread-safe; none
 * allocate except where noted.
 */
#ifndef FITLM_BACKEND_CPU_KERNELS_H
#define FITLM_BACKEND_CPU_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/quant.h"
#include "sys/cpu_features.h"
#include "sys/threadpool.h"


/* True if the type can be used as a matmul weight (F32, F16, BF16, Q8_0, Q4_0,
 * Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, Q2_K, Q3_K ...). */
bool fitlm_cpu_type_supported(int type);


/* Y[t*rows + r] = sum_c W[r, c] * X[t*cols + c] for t < n_tokens, r < rows.
 * Splits the work over the pool (NULL = run on the calling thread). Activations
 * are quantized on the fly where the integer dot products need it (Q8_0/Q8_K)
 * into the pool's scratch buffer (fitlm_threadpool_scratch; with pool == NULL
 * a stack buffer, or for more than 32 KiB a temporary malloc freed before
 * returning). Small calls run on the calling thread only (see
 * fitlm_cpu_set_parallel_threshold). cols must be a multiple of the
 * block size (of 256 for the K types); an unsupported type or shape fills Y
 * with NaN. */
void fitlm_cpu_matmul(fitlm_threadpool *pool, int wtype, const void *W, int64_t rows, int64_t cols, const float *X,
                      int64_t n_tokens, float *Y);

/* Matmuls of fewer multiply-adds than this run on the calling thread only
 * (default 2^18, about where waking the workers stops paying); 0 = always use
 * the pool (tests). */
void fitlm_cpu_set_parallel_threshold(int64_t macs);

/* Under the AVX2 kernel family, the x16 Q4_0 / Q8_0 kernels with AVX-VNNI:
 * FITLM_CPU_AVXVNNI_AUTO (default: where the CPU has it), _OFF (the
 * maddubs kernels), _EMULATE (the AVX-VNNI code with the instruction
 * emulated in AVX2: for testing it on CPUs without AVX-VNNI). The
 * environment variable FITLM_CPU_AVXVNNI=0|emulate sets the same at start. */
enum { FITLM_CPU_AVXVNNI_AUTO = 0, FITLM_CPU_AVXVNNI_OFF = 1, FITLM_CPU_AVXVNNI_EMULATE = 2 };
void fitlm_cpu_set_avxvnni(int mode);
/* True if the x16 kernels of `wtype` under the AVX2 family use AVX-VNNI now
 * (emulated or not). */
bool fitlm_cpu_avxvnni_active(int wtype);

/* Under the AVX-512 family, the x16 Q4_0 / Q8_0 kernels on AMX-INT8 for
 * every whole tile of 16 tokens (prompts, decode steps of 16+ sequences):
 * FITLM_CPU_AMX_AUTO (default: where the CPU and the OS allow it), _OFF (the
 * VNNI kernels only). The environment variable FITLM_CPU_AMX=0 sets _OFF at
 * start. Both give the same bits. */
enum { FITLM_CPU_AMX_AUTO = 0, FITLM_CPU_AMX_OFF = 1 };
void fitlm_cpu_set_amx(int mode);
/* True if repacked `wtype` matmuls of 16+ tokens use AMX now. */
bool fitlm_cpu_amx_active(int wtype);

/* Scalar reference of the same (the oracle for tests). */
void fitlm_cpu_matmul_ref(int wtype, const void *W, int64_t rows, int64_t cols, const float *X, int64_t n_tokens,
                          float *Y);

/* Oracle for the integer kernels: like fitlm_cpu_matmul_ref, but the
 * activations are first quantized exactly as fitlm_cpu_matmul quantizes them
 * (Q8 per 32 values for Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 weights, Q8_K per 256 for the
 * K types; unchanged for F32/F16/BF16), and sums are kept in double. If Yabs is
 * not NULL it receives sum_c |W[r,c] * x[c]| (the scale for error bounds).
 * No allocation. */
void fitlm_cpu_matmul_ref_qact(int wtype, const void *W, int64_t rows, int64_t cols, const float *X,
                               int64_t n_tokens, double *Y, double *Yabs);

/* Name of the ISA whose kernel fitlm_cpu_matmul uses for this weight type now
 * ("avx512", "avx2", "scalar"; "none" if unsupported). Static string. */
const char *fitlm_cpu_kernel_isa_name(int wtype);

/* Gets row `r` of W as floats (embedding lookup). */
int fitlm_cpu_get_row(int wtype, const void *W, int64_t cols, int64_t r, float *dst);

/* ---- repacked weights (load-time layout for the integer kernels) ----
 * The "x16" layouts of Q4_0, Q8_0, Q4_1, Q5_0, Q5_1, Q2_K to Q6_K, and F16 /
 * BF16 (32 columns as a block): per 16 rows, block b of all 16 rows is one
 * group (same size as the plain layout; a group of 16 rows starts where it
 * did): the blocks' fp16 fields (row k at 2k), then the other bytes as
 * 64-byte vectors whose 4-byte lane k holds 4 consecutive bytes of row k, in
 * the order the kernels read them (matmul.c: x16_desc, x16_slot_src; Q5_0 /
 * Q5_1's fifth bits reordered, x16_qh_to_lane). One vpdpbusd then works on 4 columns of 16 rows at once; the
 * kernels (fitlm_dot_repacked_avx512 / _avx2) serve decode and prompts. Q8_0
 * and K-type rows longer than the 64 KiB unpack buffer keep their plain layout:
 * the copy only moves them into huge pages (fitlm_cpu_alloc_weights).
 *
 * True if fitlm_cpu_repack can repack this weight on this CPU (rows % 16 ==
 * 0 and cols a multiple of the block, or the long-row copy; with a kernel for
 * the layout under the active ISA: AVX2 or AVX-512 VNNI for Q4_0, Q8_0, Q2_K
 * to Q6_K; AVX-512 for Q4_1, Q5_0, Q5_1 and F16; AVX512_BF16 for BF16). */
bool fitlm_cpu_repackable(int wtype, int64_t rows, int64_t cols);
/* Writes the repacked form of W (rows x cols, plain layout) to dst (the same
 * number of bytes, not overlapping W), split over the pool's threads (NULL:
 * the calling thread). Returns 0, -1 if not repackable. */
int fitlm_cpu_repack(fitlm_threadpool *pool, int wtype, const void *W, int64_t rows, int64_t cols, void *dst);
/* Back to the plain layout: rows [row0, row0 + n_rows) of a repacked W
 * (row0 and n_rows multiples of 4) into dst (n_rows plain rows). */
void fitlm_cpu_unpack_rows(int wtype, const void *P, int64_t cols, int64_t row0, int64_t n_rows, void *dst);
/* fitlm_cpu_matmul / fitlm_cpu_get_row for a repacked W. Decode (one
 * token) uses the repacked kernel; several tokens unpack a few rows at a
 * time into a stack buffer and use the plain kernels. */
void fitlm_cpu_matmul_repacked(fitlm_threadpool *pool, int wtype, const void *P, int64_t rows, int64_t cols,
                               const float *X, int64_t n_tokens, float *Y);
/* One weight matrix of fitlm_cpu_matmul_multi: W (rows x the shared cols) and
 * its output Y (n_tokens rows of `rows` floats). */
typedef struct fitlm_cpu_mm {
    const void *W;
    int64_t rows;
    float *Y;
} fitlm_cpu_mm;
#define FITLM_CPU_MM_MAX 4
/* Y_i = W_i X for n <= FITLM_CPU_MM_MAX matrices of one type and column count
 * that share their input X (Q, K, V; gate and up): X is quantized once and the
 * rows of all of them are handed out in one parallel pass. All are in the
 * plain layout (repacked false) or all repacked copies (as for
 * fitlm_cpu_matmul_repacked). Results equal separate calls bit for bit. */
void fitlm_cpu_matmul_multi(fitlm_threadpool *pool, int wtype, int64_t cols, const float *X, int64_t n_tokens, int n,
                            const fitlm_cpu_mm *mats, bool repacked);
int fitlm_cpu_get_row_repacked(int wtype, const void *P, int64_t cols, int64_t r, float *dst);
/* Memory for a repacked copy: 64-byte aligned, and for 2 MiB or more 2 MiB
 * aligned with transparent huge pages requested (fewer TLB misses while
 * decode streams it: about +2-3 GB/s per core here). The caller frees it with
 * free(). NULL when out of memory. */
void *fitlm_cpu_alloc_weights(size_t bytes);

#endif
