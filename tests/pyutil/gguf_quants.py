"""Independent numpy dequantizers for the GGUF tensor types fitlm writes, written
from the ggml block layouts (GGUF spec / ggml-common.h descriptions), for
checking fitlm's quantizer from outside its C code. numpy only.

Layouts (little-endian, one block after another along a row):
  F32  float32                      F16 float16          BF16 the high 16 bits of a float32
  Q8_0 32 elements, 34 bytes:  f16 d; int8 q[32]                    x = d*q
  Q4_0 32 elements, 18 bytes:  f16 d; u8 qs[16]  (element j: low nibble of qs[j],
                               element j+16: high nibble)            x = d*(q-8)
  Q5_0 32 elements, 22 bytes:  f16 d; u32 qh; u8 qs[16]; the 5th bit of element j
                               is bit j of qh                        x = d*(q-16)
  Q4_K 256 elements, 144 bytes: f16 d; f16 dmin; u8 scales[12]; u8 qs[128]
       8 sub-blocks of 32 with 6-bit scale sc and min m packed in scales[12]:
         j < 4: sc = s[j] & 63, m = s[j+4] & 63
         j >= 4: sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4, m = (s[j+4] >> 4) | (s[j] >> 6) << 4
       64-element chunk c uses qs[32c:32c+32]: its first 32 elements are the low
       nibbles (sub-block 2c), the next 32 the high nibbles (sub-block 2c+1);
       x = d*sc*q - dmin*m
  Q6_K 256 elements, 210 bytes: u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
       two halves of 128; half h uses ql[64h:64h+64], qh[32h:32h+32], scales[8h:8h+8];
       for l < 32: q0 = ql[l] & 15 | (qh[l] & 3) << 4           -> element l
                   q1 = ql[l+32] & 15 | (qh[l] >> 2 & 3) << 4   -> element l+32
                   q2 = ql[l] >> 4 | (qh[l] >> 4 & 3) << 4      -> element l+64
                   q3 = ql[l+32] >> 4 | (qh[l] >> 6 & 3) << 4   -> element l+96
       the scale of element e (within the half) is scales[e // 16]; x = d*scale*(q-32)
"""
import numpy as np

# ggml type id -> (name, block elements, block bytes)
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 6: ("Q5_0", 32, 22), 8: ("Q8_0", 32, 34),
         12: ("Q4_K", 256, 144), 14: ("Q6_K", 256, 210), 30: ("BF16", 1, 2)}
BY_NAME = {v[0]: k for k, v in TYPES.items()}


def nbytes(type_id, n_elements):
    _, bs, bb = TYPES[type_id]
    assert n_elements % bs == 0
    return n_elements // bs * bb


def _blocks(raw, bb):
    b = np.frombuffer(raw, dtype=np.uint8)
    assert b.size % bb == 0, "size is not a whole number of blocks"
    return b.reshape(-1, bb)


def _f16(col2):
    return np.ascontiguousarray(col2).view("<f2").astype(np.float32).reshape(-1)


def dequantize(type_id, raw, n_elements=None):
    """Returns a flat float32 array of the tensor's elements."""
    if type_id == 0:
        out = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif type_id == 1:
        out = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    elif type_id == 30:
        out = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    elif type_id == 8:
        b = _blocks(raw, 34)
        d = _f16(b[:, 0:2])
        q = b[:, 2:34].view(np.int8).astype(np.float32)
        out = (d[:, None] * q).reshape(-1)
    elif type_id == 2:
        b = _blocks(raw, 18)
        d = _f16(b[:, 0:2])
        qs = b[:, 2:18]
        q = np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.float32) - 8.0
        out = (d[:, None] * q).reshape(-1)
    elif type_id == 6:
        b = _blocks(raw, 22)
        d = _f16(b[:, 0:2])
        qh = np.ascontiguousarray(b[:, 2:6]).view("<u4").reshape(-1).astype(np.uint64)
        qs = b[:, 6:22].astype(np.uint64)
        bits = (qh[:, None] >> np.arange(32, dtype=np.uint64)[None, :]) & 1
        lo = np.concatenate([qs & 15, qs >> 4], axis=1)
        q = (lo | (bits << 4)).astype(np.float32) - 16.0
        out = (d[:, None] * q).reshape(-1)
    elif type_id == 12:
        b = _blocks(raw, 144)
        d = _f16(b[:, 0:2])
        dmin = _f16(b[:, 2:4])
        s = b[:, 4:16].astype(np.int32)
        sc = np.zeros((b.shape[0], 8), np.int32)
        mn = np.zeros((b.shape[0], 8), np.int32)
        for j in range(8):
            if j < 4:
                sc[:, j] = s[:, j] & 63
                mn[:, j] = s[:, j + 4] & 63
            else:
                sc[:, j] = (s[:, j + 4] & 15) | ((s[:, j - 4] >> 6) << 4)
                mn[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
        qs = b[:, 16:144].reshape(-1, 4, 32)
        q = np.stack([qs & 15, qs >> 4], axis=2).reshape(-1, 8, 32).astype(np.float32)
        x = (d[:, None] * sc)[:, :, None] * q - (dmin[:, None] * mn)[:, :, None]
        out = x.reshape(-1)
    elif type_id == 14:
        b = _blocks(raw, 210)
        ql = b[:, 0:128].astype(np.int32)
        qh = b[:, 128:192].astype(np.int32)
        scales = b[:, 192:208].view(np.int8).astype(np.float32)
        d = _f16(b[:, 208:210])
        halves = []
        for h in range(2):
            L = ql[:, 64 * h:64 * h + 64]
            H = qh[:, 32 * h:32 * h + 32]
            q0 = (L[:, :32] & 15) | ((H & 3) << 4)
            q1 = (L[:, 32:] & 15) | (((H >> 2) & 3) << 4)
            q2 = (L[:, :32] >> 4) | (((H >> 4) & 3) << 4)
            q3 = (L[:, 32:] >> 4) | (((H >> 6) & 3) << 4)
            q = np.concatenate([q0, q1, q2, q3], axis=1).astype(np.float32) - 32.0  # 128 elements
            sc = np.repeat(scales[:, 8 * h:8 * h + 8], 16, axis=1)
            halves.append(d[:, None] * sc * q)
        out = np.concatenate(halves, axis=1).reshape(-1)
    else:
        raise ValueError("no reference dequantizer for ggml type %d" % type_id)
    out = out.astype(np.float32)
    if n_elements is not None:
        assert out.size == n_elements, "expected %d elements, got %d" % (n_elements, out.size)
    return out


def _f16_bytes(x):
    return np.asarray(x, dtype=np.float32).astype("<f2").tobytes()


def quantize_q8_0(x):
    """A plain reference quantizer (round(x/d), d = amax/127), used only to
    check that dequantize() reads the layout it was written for."""
    x = np.asarray(x, np.float32).reshape(-1, 32)
    d = (np.abs(x).max(axis=1) / 127.0).astype(np.float16).astype(np.float32)
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0)
    q = np.clip(np.rint(x * inv[:, None]), -127, 127).astype(np.int8)
    out = bytearray()
    for i in range(x.shape[0]):
        out += _f16_bytes(d[i]) + q[i].tobytes()
    return bytes(out)
