#version 450
// y[t, r] = sum_c W[r, c] x[t, c] for batches of many tokens (prefill): one
// workgroup of 256 invocations per tile of 32 weight rows x 32 tokens. Each
// step decodes 4 units of 32 weights of the tile's rows once into shared
// memory (and the tokens' 128 activations beside them); each invocation
// accumulates a register tile of 4 rows x 4 tokens.
//
// Bit-identical to matmul.comp (the matrix-vector shader), so a token's result
// does not depend on which shader ran or which tokens share the call. There,
// for output (r, t), lane L of the row's 8 sums the units u = L, L+8, ... in
// increasing order, each unit's 32 products first summed on their own from 0
// with fma in element order; the 8 lane sums a_0..a_7 then meet as
// ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)). Here the 256 invocations are 4
// groups g of 64; in step k (units 4k..4k+3) group g takes unit 4k+g, whose
// lane class is g + 4*(k & 1): the group keeps acc[0] = a_g and acc[1] =
// a_(g+4), and the groups meet through shared memory in the same order.
// Padding (rows, tokens, elements past K) is 0: fma(0, 0, s) = s, as skipping.
#include "common.glsl"
layout(local_size_x = 256) in;
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
#define BM 32u
#define BN 32u
#define BK 128u
// k-major: Ws[k * BM + row], Xs[k * BN + (token ^ (k & 31))] (consecutive
// invocations read consecutive words; the XOR swizzle spreads the stores of
// one token's consecutive k over the banks); Ws holds the 4 x 32 x 32 group
// sums at the end.
shared float Ws[BK * BM];
shared float Xs[BK * BN];
#define XS(c, tok) Xs[(c) * BN + ((tok) ^ ((c) & 31u))]
void main() {
    uint tid = gl_LocalInvocationID.x;
    uint g = tid >> 6, p = tid & 63u, pr = p >> 3, pt = p & 7u;
    uint r0 = gl_WorkGroupID.x * BM;
    uint t0 = pc.tok0 + gl_WorkGroupID.y * BN;
    uint nu = (pc.K + 31u) / 32u;
    uint steps = (nu + 3u) / 4u;
    float acc[2][16];
    [[unroll]] for (uint i = 0u; i < 16u; i++) {
        acc[0][i] = 0.0;
        acc[1][i] = 0.0;
    }
    for (uint k = 0u; k < steps; k++) {
        if (tid < 128u) {
            // one unit of one row: row tid & 31, unit 4k + (tid >> 5)
            uint row = tid & 31u, ul = tid >> 5, u = 4u * k + ul;
            float w[32];
            if (r0 + row < pc.n_rows && u < nu) {
                decode_unit(pc.w_off + (r0 + row) * pc.row_bytes, u, pc.K, w);
            } else {
                [[unroll]] for (uint j = 0u; j < 32u; j++) w[j] = 0.0;
            }
            [[unroll]] for (uint j = 0u; j < 32u; j++) Ws[(32u * ul + j) * BM + row] = w[j];
        } else {
            // 32 tokens x 128 activations, 32 per invocation
            uint q = tid - 128u;
            [[unroll]] for (uint i = 0u; i < 32u; i++) {
                uint idx = i * 128u + q, tok = idx >> 7, c = idx & 127u;
                uint gc = BK * k + c, t = t0 + tok;
                XS(c, tok) = (t < pc.n_tok && gc < pc.K) ? X[pc.x_off + t * pc.K + gc] : 0.0;
            }
        }
        barrier();
        float s[16];
        [[unroll]] for (uint i = 0u; i < 16u; i++) s[i] = 0.0;
        for (uint j = 0u; j < 32u; j++) {
            uint c = 32u * g + j;
            float wv[4], xv[4];
            [[unroll]] for (uint i = 0u; i < 4u; i++) {
                wv[i] = Ws[c * BM + pr + 8u * i];
                xv[i] = XS(c, pt + 8u * i);
            }
            [[unroll]] for (uint i = 0u; i < 4u; i++)
                [[unroll]] for (uint e = 0u; e < 4u; e++) s[4u * i + e] = fma(wv[i], xv[e], s[4u * i + e]);
        }
        if ((k & 1u) == 0u) {
            [[unroll]] for (uint i = 0u; i < 16u; i++) acc[0][i] += s[i];
        } else {
            [[unroll]] for (uint i = 0u; i < 16u; i++) acc[1][i] += s[i];
        }
        barrier();
    }
    // group sums a_g + a_(g+4), at [g][token][row]
    [[unroll]] for (uint i = 0u; i < 4u; i++)
        [[unroll]] for (uint e = 0u; e < 4u; e++)
            Ws[g * (BM * BN) + (pt + 8u * e) * BM + pr + 8u * i] = acc[0][4u * i + e] + acc[1][4u * i + e];
    barrier();
    [[unroll]] for (uint i = 0u; i < 4u; i++) {
        uint o = tid + 256u * i, tok = o >> 5, row = o & 31u;
        float v = (Ws[o] + Ws[2u * BM * BN + o]) + (Ws[BM * BN + o] + Ws[3u * BM * BN + o]);
        if (t0 + tok < pc.n_tok && r0 + row < pc.n_rows) Y[pc.y_off + (t0 + tok) * pc.y_stride + r0 + row] = v;
    }
}
