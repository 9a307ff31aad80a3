// Shared helpers of the fitlm Vulkan shaders. Buffers are bound as arrays of
// 32-bit words; quantized blocks (2-byte aligned) are read through these
// byte/halfword helpers so that no 8/16-bit storage feature is needed.
#extension GL_EXT_control_flow_attributes : enable

// weight / cache type ids (the GGUF ids, as fitlm_type)
#define T_F32 0
#define T_F16 1
#define T_Q4_0 2
#define T_Q8_0 8
#define T_Q4_K 12
#define T_Q5_K 13
#define T_Q6_K 14
#define T_BF16 30

#define RD8(BUF, a) ((BUF[(a) >> 2] >> (((a) & 3u) * 8u)) & 0xFFu)
#define RD16(BUF, a) ((BUF[(a) >> 2] >> (((a) & 2u) * 8u)) & 0xFFFFu)
#define RDF16(BUF, a) unpackHalf2x16(RD16(BUF, a)).x
#define RDI8(BUF, a) (int(RD8(BUF, a) << 24) >> 24)
