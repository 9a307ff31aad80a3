#version 450
// out[t] = row ids[t] of the embedding matrix, decoded to F32: one thread per
// unit of 32 elements.
#include "common.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Wb { uint W[]; };
layout(std430, binding = 1) writeonly buffer Ob { float O[]; };
layout(std430, binding = 2) readonly buffer Ab { int A[]; };
layout(push_constant) uniform PC {
    uint w_off;
    uint row_bytes;
    uint K;
    uint n_tok;
    uint ids_off;   // int index of ids[0] in A
    uint o_off;     // float index of token 0 in O
    uint tok0;
} pc;
#include "dequant.glsl"
void main() {
    uint u = gl_GlobalInvocationID.x, t = pc.tok0 + gl_WorkGroupID.y;
    uint nu = (pc.K + 31u) / 32u;
    if (u >= nu || t >= pc.n_tok) return;
    uint row = uint(A[pc.ids_off + t]);
    float w[32];
    decode_unit(pc.w_off + row * pc.row_bytes, u, pc.K, w);
    uint n = min(32u, pc.K - 32u * u);
    uint ob = pc.o_off + t * pc.K + 32u * u;
    [[unroll]] for (uint j = 0u; j < 32u; j++)
        if (j < n) O[ob + j] = w[j];
}
