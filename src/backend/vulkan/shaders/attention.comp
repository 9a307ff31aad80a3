#version 450
// Causal grouped-query attention over the paged KV pool in one pass with an
// online softmax: one workgroup per (query head, token); positions are taken
// 64 at a time (one per thread for the scores), the running maximum and sum
// rescale the accumulated output (each thread owns head_dim/64 dimensions).
// A token's result depends only on its query and its sequence's cache rows.
#include "common.glsl"
layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer Qb { float Q[]; };
layout(std430, binding = 1) readonly buffer Kb { uint KC[]; };
layout(std430, binding = 2) readonly buffer Vb { uint VC[]; };
layout(std430, binding = 3) writeonly buffer Ob { float O[]; };
layout(std430, binding = 4) readonly buffer Ab { int A[]; };
layout(push_constant) uniform PC {
    uint q_off;      // float index of token 0 in Q (and O: o_off)
    uint o_off;
    uint k_off;      // byte address of slot 0 in KC / VC
    uint v_off;
    uint row_bytes;  // bytes per cache slot
    uint n_heads;
    uint group;      // n_heads / n_kv_heads
    uint head_dim;
    uint window;     // 0: no sliding window
    uint block_shift;
    float scale;
    uint pos_o;      // int indices into A: pos[t], seq[t], table offset[seq], tables
    uint seq_o;
    uint tbo_o;
    uint tok0;
} pc;
#if KV == T_F32
#define KV_AT(B, rb, i) uintBitsToFloat(B[((rb) >> 2) + (i)])
#elif KV == T_F16
#define KV_AT(B, rb, i) RDF16(B, (rb) + 2u * (i))
#else
#define KV_AT(B, rb, i) (RDF16(B, (rb) + ((i) >> 5) * 34u) * float(RDI8(B, (rb) + ((i) >> 5) * 34u + 2u + ((i) & 31u))))
#endif
#define MAXD 4 /* head_dim <= 256 */
shared float qs[256];
shared float sc[64];
shared uint sl[64];
shared float red[64];
void main() {
    uint h = gl_WorkGroupID.x, t = pc.tok0 + gl_WorkGroupID.y, tid = gl_LocalInvocationID.x;
    uint hd = pc.head_dim, kvo = (h / pc.group) * hd;
    int p_hi = A[pc.pos_o + t];
    int s = A[pc.seq_o + t];
    uint tb = uint(A[pc.tbo_o + uint(s)]);
    int p_lo = pc.window > 0u ? max(0, p_hi - int(pc.window) + 1) : 0;
    uint qb = pc.q_off + t * pc.n_heads * hd + h * hd;
    for (uint d = tid; d < hd; d += 64u) qs[d] = Q[qb + d];
    barrier();
    uint mask = (1u << pc.block_shift) - 1u;
    float m = -3.0e38, l = 0.0;
    float acc[MAXD];
    [[unroll]] for (uint j = 0u; j < MAXD; j++) acc[j] = 0.0;
    for (int c0 = p_lo; c0 <= p_hi; c0 += 64) {
        int p = c0 + int(tid);
        float sv = -3.0e38;
        if (p <= p_hi) {
            uint slot = (uint(A[tb + (uint(p) >> pc.block_shift)]) << pc.block_shift) | (uint(p) & mask);
            sl[tid] = slot;
            uint rb = pc.k_off + slot * pc.row_bytes;
            float dot = 0.0;
            for (uint d = 0u; d < hd; d++) dot += qs[d] * KV_AT(KC, rb, kvo + d);
            sv = dot * pc.scale;
        }
        red[tid] = sv;
        barrier();
        [[unroll]] for (uint st = 32u; st > 0u; st >>= 1) {
            if (tid < st) red[tid] = max(red[tid], red[tid + st]);
            barrier();
        }
        float mn = max(m, red[0]);
        barrier();
        float e = p <= p_hi ? exp(sv - mn) : 0.0;
        sc[tid] = e;
        red[tid] = e;
        barrier();
        [[unroll]] for (uint st = 32u; st > 0u; st >>= 1) {
            if (tid < st) red[tid] += red[tid + st];
            barrier();
        }
        float f = exp(m - mn);
        l = l * f + red[0];
        uint n = uint(min(64, p_hi - c0 + 1));
        [[unroll]] for (uint j = 0u; j < MAXD; j++) {
            uint d = tid + 64u * j;
            if (d < hd) {
                float a = acc[j] * f;
                for (uint i = 0u; i < n; i++) a += sc[i] * KV_AT(VC, pc.v_off + sl[i] * pc.row_bytes, kvo + d);
                acc[j] = a;
            }
        }
        m = mn;
        barrier();
    }
    uint ob = pc.o_off + t * pc.n_heads * hd + h * hd;
    [[unroll]] for (uint j = 0u; j < MAXD; j++) {
        uint d = tid + 64u * j;
        if (d < hd) O[ob + d] = acc[j] / l;
    }
}
