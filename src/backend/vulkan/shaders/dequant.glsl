// Decoding of one "unit" of a weight row: 32 consecutive elements (the last
// unit of a float row may be shorter). WTYPE selects the type; the including
// shader declares the word array W. rb is the byte address of the row.
// Quantized layouts (src/quant/blocks.h):
//   Q8_0 34 B {half d; i8 q[32]}                x = d*q
//   Q4_0 18 B {half d; u8 qs[16]}               x = d*(q-8), q: lo nibble j<16, hi j>=16
//   Q4_K 144 B {half d, dmin; u8 sc[12]; u8 qs[128]}      8 sub-blocks of 32
//   Q5_K 176 B {half d, dmin; u8 sc[12]; u8 qh[32]; u8 qs[128]}
//   Q6_K 210 B {u8 ql[128]; u8 qh[64]; i8 sc[16]; half d}  16 sub-blocks of 16

#if WTYPE == T_Q4_K || WTYPE == T_Q5_K
// 6-bit scale and min of sub-block j (fitlm_k4_scale_min)
void k4_scale_min(uint sb, uint j, out float sc, out float mn) {
    if (j < 4u) {
        sc = float(RD8(W, sb + j) & 63u);
        mn = float(RD8(W, sb + j + 4u) & 63u);
    } else {
        sc = float((RD8(W, sb + j + 4u) & 15u) | ((RD8(W, sb + j - 4u) >> 6) << 4));
        mn = float((RD8(W, sb + j + 4u) >> 4) | ((RD8(W, sb + j) >> 6) << 4));
    }
}
#endif

// Fills w[0..n) with elements [32u, 32u + n) of the row, n = min(32, K - 32u).
void decode_unit(uint rb, uint u, uint K, out float w[32]) {
#if WTYPE == T_F32
    uint base = (rb >> 2) + 32u * u;
    uint n = min(32u, K - 32u * u);
    [[unroll]] for (uint j = 0u; j < 32u; j++) w[j] = j < n ? uintBitsToFloat(W[base + j]) : 0.0;
#elif WTYPE == T_F16 || WTYPE == T_BF16
    uint a = rb + 64u * u;
    uint n = min(32u, K - 32u * u);
    [[unroll]] for (uint j = 0u; j < 32u; j++) {
        uint h = j < n ? RD16(W, a + 2u * j) : 0u;
#if WTYPE == T_F16
        w[j] = unpackHalf2x16(h).x;
#else
        w[j] = uintBitsToFloat(h << 16);
#endif
    }
#elif WTYPE == T_Q8_0
    uint a = rb + 34u * u;
    float d = RDF16(W, a);
    [[unroll]] for (uint j = 0u; j < 32u; j++) w[j] = d * float(RDI8(W, a + 2u + j));
#elif WTYPE == T_Q4_0
    uint a = rb + 18u * u;
    float d = RDF16(W, a);
    [[unroll]] for (uint j = 0u; j < 16u; j++) {
        uint q = RD8(W, a + 2u + j);
        w[j] = d * (float(q & 15u) - 8.0);
        w[j + 16u] = d * (float(q >> 4) - 8.0);
    }
#elif WTYPE == T_Q4_K || WTYPE == T_Q5_K
#if WTYPE == T_Q4_K
    uint a = rb + 144u * (u >> 3);
    uint qs = a + 16u;
#else
    uint a = rb + 176u * (u >> 3);
    uint qs = a + 48u;
    uint qh = a + 16u;
#endif
    uint j = u & 7u, c = j >> 1, hi = j & 1u;
    float sc, mn;
    k4_scale_min(a + 4u, j, sc, mn);
    float d = RDF16(W, a) * sc, m = RDF16(W, a + 2u) * mn;
    [[unroll]] for (uint l = 0u; l < 32u; l++) {
        uint q = (RD8(W, qs + 32u * c + l) >> (4u * hi)) & 15u;
#if WTYPE == T_Q5_K
        q |= ((RD8(W, qh + l) >> (2u * c + hi)) & 1u) << 4;
#endif
        w[l] = d * float(q) - m;
    }
#elif WTYPE == T_Q6_K
    uint a = rb + 210u * (u >> 3);
    uint j = u & 7u, h = j >> 2, k = j & 3u;
    float d = RDF16(W, a + 208u);
    uint ql = a + 64u * h + ((k & 1u) != 0u ? 32u : 0u);
    uint qh = a + 128u + 32u * h;
    uint shl = (k >> 1) * 4u, shh = 2u * k;
    float s0 = d * float(RDI8(W, a + 192u + 8u * h + 2u * k));
    float s1 = d * float(RDI8(W, a + 192u + 8u * h + 2u * k + 1u));
    [[unroll]] for (uint l = 0u; l < 32u; l++) {
        uint q = ((RD8(W, ql + l) >> shl) & 15u) | (((RD8(W, qh + l) >> shh) & 3u) << 4);
        w[l] = (l < 16u ? s0 : s1) * (float(q) - 32.0);
    }
#else
#error unknown WTYPE
#endif
}
