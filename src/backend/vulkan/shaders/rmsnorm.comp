#version 450
// y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w: one workgroup per row. y may
// be x (each thread rewrites only the elements it read).
#include "common.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) buffer Xb { float X[]; };
layout(std430, binding = 1) readonly buffer Wb { float Wt[]; };
layout(std430, binding = 2) buffer Yb { float Y[]; };
layout(push_constant) uniform PC {
    uint x_off;
    uint w_off;
    uint y_off;
    uint n;
    float eps;
    uint row0;
} pc;
shared float red[64];
void main() {
    uint r = pc.row0 + gl_WorkGroupID.x, tid = gl_LocalInvocationID.x;
    uint xb = pc.x_off + r * pc.n, yb = pc.y_off + r * pc.n;
    float ss = 0.0;
    for (uint i = tid; i < pc.n; i += 64u) ss += X[xb + i] * X[xb + i];
    red[tid] = ss;
    barrier();
    [[unroll]] for (uint s = 32u; s > 0u; s >>= 1) {
        if (tid < s) red[tid] += red[tid + s];
        barrier();
    }
    float scale = 1.0 / sqrt(red[0] / float(pc.n) + pc.eps);
    for (uint i = tid; i < pc.n; i += 64u) Y[yb + i] = Wt[pc.w_off + i] * (scale * X[xb + i]);
}
