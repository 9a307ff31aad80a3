#version 450
// y[t, r] = sum_c W[r, c] x[t, c]: one workgroup per weight row and TN tokens.
// Each of the 64 threads decodes units of 32 weights once and applies them to
// the TN token rows; partial sums meet in a fixed-order tree, so a token's
// result does not depend on which other tokens share the call.
#include "common.glsl"
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
} pc;
#include "dequant.glsl"
#define TN 8
shared float red[TN][64];
void main() {
    uint r = gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
    uint t0 = pc.tok0 + gl_WorkGroupID.y * TN;
    uint nt = min(uint(TN), pc.n_tok - t0);
    float acc[TN];
    [[unroll]] for (uint t = 0u; t < TN; t++) acc[t] = 0.0;
    uint rb = pc.w_off + r * pc.row_bytes;
    uint nu = (pc.K + 31u) / 32u;
    for (uint u = tid; u < nu; u += 64u) {
        float w[32];
        decode_unit(rb, u, pc.K, w);
        uint n = min(32u, pc.K - 32u * u);
        [[unroll]] for (uint t = 0u; t < TN; t++) {
            if (t < nt) {
                uint xb = pc.x_off + (t0 + t) * pc.K + 32u * u;
                float s = 0.0;
                [[unroll]] for (uint j = 0u; j < 32u; j++)
                    if (j < n) s += w[j] * X[xb + j];
                acc[t] += s;
            }
        }
    }
    [[unroll]] for (uint t = 0u; t < TN; t++) red[t][tid] = acc[t];
    barrier();
    [[unroll]] for (uint s = 32u; s > 0u; s >>= 1) {
        if (tid < s) {
            [[unroll]] for (uint t = 0u; t < TN; t++) red[t][tid] += red[t][tid + s];
        }
        barrier();
    }
    if (tid < nt) Y[pc.y_off + (t0 + tid) * pc.y_stride + r] = red[tid][0];
}
