#version 450
// Elementwise ops over n_tok rows of ne0 floats (MODE):
//   0 add:      D += S1
//   1 add_bias: D[t] += S1 (one row, broadcast)
//   2 silu_mul: D = silu(S1) * S2 (D may be S1)
layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer Db { float D[]; };
layout(std430, binding = 1) readonly buffer S1b { float S1[]; };
layout(std430, binding = 2) readonly buffer S2b { float S2[]; };
layout(push_constant) uniform PC {
    uint d_off;
    uint s1_off;
    uint s2_off;
    uint ne0;
    uint n;     // total elements
    uint base;
} pc;
void main() {
    uint i = pc.base + gl_GlobalInvocationID.x;
    if (i >= pc.n) return;
#if MODE == 0
    D[pc.d_off + i] += S1[pc.s1_off + i];
#elif MODE == 1
    D[pc.d_off + i] += S1[pc.s1_off + i % pc.ne0];
#else
    float g = S1[pc.s1_off + i];
    D[pc.d_off + i] = g / (1.0 + exp(-g)) * S2[pc.s2_off + i];
#endif
}
