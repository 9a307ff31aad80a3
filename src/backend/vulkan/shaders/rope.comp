#version 450
// In-place rotary embedding. One thread per (token, head, pair); the cos/sin
// of each (token, pair) come from the host (the CPU backend's own cosf/sinf),
// so both backends rotate by exactly the same factors.
#include "common.glsl"
layout(local_size_x = 256) in;
layout(std430, binding = 0) buffer Xb { float X[]; };
layout(std430, binding = 1) readonly buffer Ab { float CS[]; };
layout(push_constant) uniform PC {
    uint x_off;
    uint stride;   // floats per token row
    uint n_heads;
    uint head_dim;
    uint half_layout; // 1: rotate-half pairs (i, i + half); 0: adjacent (2i, 2i+1)
    uint n_tok;
    uint cs_off;   // float index of the table: [token][pair] {cos, sin}
    uint base;     // first (token, head, pair) index of this dispatch
} pc;
void main() {
    uint half_ = pc.head_dim / 2u;
    uint g = pc.base + gl_GlobalInvocationID.x;
    if (g >= pc.n_tok * pc.n_heads * half_) return;
    uint i = g % half_, h = (g / half_) % pc.n_heads, t = g / (half_ * pc.n_heads);
    float c = CS[pc.cs_off + 2u * (t * half_ + i)], s = CS[pc.cs_off + 2u * (t * half_ + i) + 1u];
    uint v = pc.x_off + t * pc.stride + h * pc.head_dim;
    uint a = pc.half_layout != 0u ? v + i : v + 2u * i;
    uint b = pc.half_layout != 0u ? v + i + half_ : v + 2u * i + 1u;
    float x0 = X[a], x1 = X[b];
    X[a] = x0 * c - x1 * s;
    X[b] = x0 * s + x1 * c;
}
