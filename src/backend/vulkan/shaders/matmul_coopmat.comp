#version 450
// y[t, r] = sum_c W[r, c] x[t, c] for batches of many tokens (prefill) on
// tensor cores, through VK_NV_cooperative_matrix: one workgroup of 128
// invocations (4 subgroups of 32) per tile of 64 weight rows x 64 tokens. Each
// step decodes 2 units (64 elements) of the tile's 64 rows into shared memory
// as f16 (dequant.glsl's decode_unit, so every weight type) beside the 64
// tokens' 64 activations rounded to f16; each subgroup multiplies 16x16x16
// f16 matrices into four f32 16x16 accumulators (32 rows x 32 tokens).
//
// NOT bit-identical to matmul.comp / matmul_tiled.comp: the inputs are rounded
// to f16 (values beyond +-65504 clamped) and the sums run in the hardware's
// order. The host uses this shader only when asked (FITLM_VULKAN_COOPMAT=1)
// and the device reports the 16x16x16 f16 x f16 + f32 shape in subgroup
// scope with subgroups of 32 (backend/coopmat_select.c). Padding (rows,
// tokens, elements past K) is 0. The accumulators go out through shared
// memory, half the tokens at a time, with the bounds checked.
//
// EMULATE=1 (a test variant, FITLM_VULKAN_COOPMAT=emulate, for devices without
// cooperative matrices such as lavapipe): the same tiles, loads and stores
// with the NV functions' element addressing (element (i, j) of a row-major
// matrix at off + i * stride + j, of a column-major one at off + j * stride + i),
// multiplied by scalar code; subgroup s is invocations 32s..32s+31, lane l
// holds elements l + 32q (q < 8; row e & 15, column e >> 4) of each
// accumulator. So everything but the NV intrinsics is tested on lavapipe.
#if EMULATE
#else
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_KHR_shader_subgroup_basic : require
#endif
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#include "common.glsl"
layout(local_size_x = 128) in;
layout(std430, binding = 0) readonly buffer Wb { uint W[]; };
layout(std430, binding = 1) readonly buffer Xb { float X[]; };
layout(std430, binding = 2) writeonly buffer Yb { float Y[]; };
layout(push_constant) uniform PC {
    uint w_off;     // byte address of row 0 (of this dispatch) in W
    uint row_bytes;
    uint K;         // elements per row
    uint n_tok;
    uint x_off;     // float index of token 0 in X
    uint y_off;     // float index of (token 0, row 0 of this dispatch) in Y
    uint y_stride;  // floats per token row of Y
    uint tok0;      // first token of this dispatch
    uint n_rows;    // rows of this dispatch
} pc;
#include "dequant.glsl"
#define BM 64u
#define BN 64u
#define BK 64u
#define LD 72u  // f16 elements per row of a tile (BK + 8: 16-byte multiple, shifts the banks)
#define F16_MAX 65504.0
// Ws[row * LD + k]: the A operand, row-major; Xs[tok * LD + k]: the B operand
// (k x tokens), column-major; Cs[tok * BM + row]: the accumulators of half
// the tokens at the end (two passes: 26 KiB of shared memory in all).
shared float16_t Ws[BM * LD];
shared float16_t Xs[BN * LD];
shared float Cs[BM * (BN / 2u)];
#if EMULATE
// c += A B for the lane's 8 elements: A 16x16 row-major at Ws[oa], B 16x16
// column-major at Xs[ob]
void emu_mul_add(inout float c[8], uint oa, uint ob, uint lane) {
    [[dont_unroll]] for (uint q = 0u; q < 8u; q++) {
        uint e = lane + 32u * q, m = e & 15u, n = e >> 4u;
        float s = c[q];
        [[dont_unroll]] for (uint k = 0u; k < 16u; k++) s = fma(float(Ws[oa + m * LD + k]), float(Xs[ob + n * LD + k]), s);
        c[q] = s;
    }
}
#endif
void main() {
    uint tid = gl_LocalInvocationID.x;
#if EMULATE
    uint sg = tid >> 5u, lane = tid & 31u;
    float acc[2][2][8];
    [[unroll]] for (uint i = 0u; i < 2u; i++)
        [[unroll]] for (uint j = 0u; j < 2u; j++)
            [[unroll]] for (uint q = 0u; q < 8u; q++) acc[i][j][q] = 0.0;
#else
    uint sg = gl_SubgroupID;           // 0..3
    fcoopmatNV<32, gl_ScopeSubgroup, 16, 16> acc[2][2];
    [[unroll]] for (uint i = 0u; i < 2u; i++)
        [[unroll]] for (uint j = 0u; j < 2u; j++) acc[i][j] = fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>(0.0);
#endif
    uint sr = 32u * (sg >> 1u), st = 32u * (sg & 1u);
    uint r0 = gl_WorkGroupID.x * BM;
    uint t0 = pc.tok0 + gl_WorkGroupID.y * BN;
    uint nu = (pc.K + 31u) / 32u;
    uint steps = (nu + 1u) / 2u;
    for (uint k = 0u; k < steps; k++) {
        {
            // one unit of one row: row tid & 63, unit 2k + (tid >> 6)
            uint row = tid & 63u, ul = tid >> 6u, u = 2u * k + ul;
            float w[32];
            if (r0 + row < pc.n_rows && u < nu) {
                decode_unit(pc.w_off + (r0 + row) * pc.row_bytes, u, pc.K, w);
            } else {
                [[unroll]] for (uint j = 0u; j < 32u; j++) w[j] = 0.0;
            }
            [[unroll]] for (uint j = 0u; j < 32u; j++)
                Ws[row * LD + 32u * ul + j] = float16_t(clamp(w[j], -F16_MAX, F16_MAX));
        }
        // 64 tokens x 64 activations, 32 per invocation
        [[unroll]] for (uint i = 0u; i < 32u; i++) {
            uint idx = i * 128u + tid, tok = idx >> 6u, c = idx & 63u;
            uint gc = BK * k + c, t = t0 + tok;
            float v = (t < pc.n_tok && gc < pc.K) ? X[pc.x_off + t * pc.K + gc] : 0.0;
            Xs[tok * LD + c] = float16_t(clamp(v, -F16_MAX, F16_MAX));
        }
        barrier();
        [[unroll]] for (uint kk = 0u; kk < BK; kk += 16u) {
#if EMULATE
            [[dont_unroll]] for (uint i = 0u; i < 2u; i++)
                [[dont_unroll]] for (uint j = 0u; j < 2u; j++)
                    emu_mul_add(acc[i][j], (sr + 16u * i) * LD + kk, (st + 16u * j) * LD + kk, lane);
#else
            fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> a[2], b[2];
            [[unroll]] for (uint i = 0u; i < 2u; i++) coopMatLoadNV(a[i], Ws, (sr + 16u * i) * LD + kk, LD, false);
            [[unroll]] for (uint j = 0u; j < 2u; j++) coopMatLoadNV(b[j], Xs, (st + 16u * j) * LD + kk, LD, true);
            [[unroll]] for (uint i = 0u; i < 2u; i++)
                [[unroll]] for (uint j = 0u; j < 2u; j++) acc[i][j] = coopMatMulAddNV(a[i], b[j], acc[i][j]);
#endif
        }
        barrier();
    }
    // C[row][tok] at Cs[(tok - 32h) * BM + row] (column-major, stride BM) for
    // the tokens 32h..32h+31 of pass h, which subgroups 1 and 3 (h = 1) or 0
    // and 2 (h = 0) hold; then all 128 invocations write them out
    [[unroll]] for (uint h = 0u; h < 2u; h++) {
        if ((sg & 1u) == h) {
            [[unroll]] for (uint i = 0u; i < 2u; i++)
                [[unroll]] for (uint j = 0u; j < 2u; j++) {
#if EMULATE
                    [[unroll]] for (uint q = 0u; q < 8u; q++) {
                        uint e = lane + 32u * q, m = e & 15u, n = e >> 4u;
                        Cs[16u * j * BM + sr + 16u * i + n * BM + m] = acc[i][j][q];
                    }
#else
                    coopMatStoreNV(acc[i][j], Cs, 16u * j * BM + sr + 16u * i, BM, true);
#endif
                }
        }
        barrier();
        [[unroll]] for (uint i = 0u; i < 16u; i++) {
            uint o = tid + 128u * i, tok = 32u * h + (o >> 6u), row = o & 63u;
            if (t0 + tok < pc.n_tok && r0 + row < pc.n_rows)
                Y[pc.y_off + (t0 + tok) * pc.y_stride + r0 + row] = Cs[o];
        }
        barrier();
    }
}
