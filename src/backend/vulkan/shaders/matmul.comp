#version 450
// y[t, r] = sum_c W[r, c] x[t, c]: one workgroup per 8 weight rows and TN
// tokens, 8 threads per row. Each thread decodes units of 32 weights once
// (straight from the quantized blocks in device memory) and applies them to
// the TN token rows; the 8 partial sums of a row meet in a fixed-order tree,
// so a token's result does not depend on which other tokens share the call.
// SG=1: the tree is a butterfly of subgroup shuffles among the row's 8 lanes
// (devices whose subgroups are multiples of 8 with shuffles; the same order of
// additions as the shared-memory tree), else shared memory and barriers.
// The products are summed with explicit fma (not left to the compiler's
// contraction), so that matmul_tiled.comp, which adds the same terms in the
// same order, gives bit-identical results.
#include "common.glsl"
#if SG
#extension GL_KHR_shader_subgroup_shuffle : enable
#endif
layout(local_size_x = 64) in;
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
#define TN 8
#if !SG
shared float red[TN][64];
#endif
void main() {
    uint tid = gl_LocalInvocationID.x, lane = tid & 7u;
    uint r = gl_WorkGroupID.x * 8u + (tid >> 3);
    uint t0 = pc.tok0 + gl_WorkGroupID.y * TN;
    uint nt = min(uint(TN), pc.n_tok - t0);
    float acc[TN];
    [[unroll]] for (uint t = 0u; t < TN; t++) acc[t] = 0.0;
    uint rb = pc.w_off + r * pc.row_bytes;
    uint nu = r < pc.n_rows ? (pc.K + 31u) / 32u : 0u;
    for (uint u = lane; u < nu; u += 8u) {
        float w[32];
        decode_unit(rb, u, pc.K, w);
        uint n = min(32u, pc.K - 32u * u);
        [[unroll]] for (uint t = 0u; t < TN; t++) {
            if (t < nt) {
                uint xb = pc.x_off + (t0 + t) * pc.K + 32u * u;
                float s = 0.0;
                [[unroll]] for (uint j = 0u; j < 32u; j++)
                    if (j < n) s = fma(w[j], X[xb + j], s);
                acc[t] += s;
            }
        }
    }
#if SG
    [[unroll]] for (uint t = 0u; t < TN; t++) {
        float v = acc[t];
        v += subgroupShuffleXor(v, 4u);
        v += subgroupShuffleXor(v, 2u);
        v += subgroupShuffleXor(v, 1u);
        acc[t] = v;
    }
    if (lane < nt && r < pc.n_rows) Y[pc.y_off + (t0 + lane) * pc.y_stride + r] = acc[lane];
#else
    [[unroll]] for (uint t = 0u; t < TN; t++) red[t][tid] = acc[t];
    barrier();
    [[unroll]] for (uint s = 4u; s > 0u; s >>= 1) {
        if (lane < s) {
            [[unroll]] for (uint t = 0u; t < TN; t++) red[t][tid] += red[t][tid + s];
        }
        barrier();
    }
    if (lane < nt && r < pc.n_rows) Y[pc.y_off + (t0 + lane) * pc.y_stride + r] = red[lane][tid - lane];
#endif
}
