#!/usr/bin/env python3
"""Dequantization of every GGUF block type, checked bit for bit against an
independent numpy implementation written from the GGUF/ggml block-layout
definitions (not from fitlm's C code).

Random raw blocks (all bit patterns of the quants; fp16 scales drawn from
ordinary, subnormal and arbitrary bit patterns including inf/nan) are written
to a file, dequantized by tests/test_dequant_tool (tool mode), and compared
as float32 bit patterns (any NaN equals any NaN: the payload of a NaN product
is not part of the format).

Float32 operations are done in the order the format formulas are written,
e.g. Q4_K: (d * sc) * q - (dmin * m), each step rounded to float32."""
import os
import subprocess
import sys

import numpy as np

F32 = np.float32


def half(raw, off):
    """fp16 field at byte offset `off` of every block -> float32 array."""
    return raw[:, off:off + 2].copy().view('<f2').reshape(-1).astype(F32)


def nib_lo(b):
    return (b & 0x0F).astype(np.int32)


def nib_hi(b):
    return (b >> 4).astype(np.int32)


def q4_0(raw):
    d = half(raw, 0)[:, None]
    qs = raw[:, 2:18]
    q = np.concatenate([nib_lo(qs), nib_hi(qs)], axis=1) - 8
    return d * q.astype(F32)


def q4_1(raw):
    d, m = half(raw, 0)[:, None], half(raw, 2)[:, None]
    qs = raw[:, 4:20]
    q = np.concatenate([nib_lo(qs), nib_hi(qs)], axis=1)
    return d * q.astype(F32) + m


def fifth_bits(qh4):
    bits = np.unpackbits(qh4, axis=1, bitorder='little').astype(np.int32)  # bit j of the LE uint32
    return bits << 4


def q5_0(raw):
    d = half(raw, 0)[:, None]
    hb = fifth_bits(raw[:, 2:6])
    qs = raw[:, 6:22]
    q = np.concatenate([nib_lo(qs), nib_hi(qs)], axis=1) + hb - 16
    return d * q.astype(F32)


def q5_1(raw):
    d, m = half(raw, 0)[:, None], half(raw, 2)[:, None]
    hb = fifth_bits(raw[:, 4:8])
    qs = raw[:, 8:24]
    q = np.concatenate([nib_lo(qs), nib_hi(qs)], axis=1) + hb
    return d * q.astype(F32) + m


def q8_0(raw):
    d = half(raw, 0)[:, None]
    q = raw[:, 2:34].view(np.int8).astype(F32)
    return d * q


def two_bit_planes(qs64):
    """256 2-bit values: element 128h + 32j + l is bits 2j..2j+1 of qs[32h + l]."""
    out = np.empty((qs64.shape[0], 256), np.int32)
    for h in range(2):
        for j in range(4):
            out[:, 128 * h + 32 * j:128 * h + 32 * j + 32] = (qs64[:, 32 * h:32 * h + 32] >> (2 * j)) & 3
    return out


def q2_k(raw):
    scales = raw[:, 0:16]
    q = two_bit_planes(raw[:, 16:80])
    d, dmin = half(raw, 80)[:, None], half(raw, 82)[:, None]
    sc = np.repeat(scales & 0x0F, 16, axis=1).astype(F32)
    mn = np.repeat(scales >> 4, 16, axis=1).astype(F32)
    return (d * sc) * q.astype(F32) - (dmin * mn)


def q3_k(raw):
    hmask = raw[:, 0:32]
    low = two_bit_planes(raw[:, 32:96])
    s = raw[:, 96:108].astype(np.int32)
    d = half(raw, 108)[:, None]
    # 16 six-bit scales: low 4 bits from the nibbles of bytes 0..7 (sub-blocks
    # 0..7 low nibbles, 8..15 high nibbles), high 2 bits from bytes 8..11
    # (byte 8 + j%4, bit pair j//4), then minus 32
    sc = np.empty((raw.shape[0], 16), np.int32)
    for j in range(16):
        lo = (s[:, j] & 0x0F) if j < 8 else (s[:, j - 8] >> 4)
        hi = (s[:, 8 + j % 4] >> (2 * (j // 4))) & 3
        sc[:, j] = (lo | (hi << 4)) - 32
    hbit = np.empty((raw.shape[0], 256), np.int32)
    for h in range(2):
        for j in range(4):
            hbit[:, 128 * h + 32 * j:128 * h + 32 * j + 32] = (hmask >> (4 * h + j)) & 1
    q = low - np.where(hbit == 1, 0, 4)
    return (d * np.repeat(sc, 16, axis=1).astype(F32)) * q.astype(F32)


def k4_scales(s12):
    """8 (scale, min) pairs of 6 bits packed in 12 bytes."""
    s = s12.astype(np.int32)
    sc = np.empty((s.shape[0], 8), np.int32)
    mn = np.empty((s.shape[0], 8), np.int32)
    for j in range(8):
        if j < 4:
            sc[:, j] = s[:, j] & 63
            mn[:, j] = s[:, j + 4] & 63
        else:
            sc[:, j] = (s[:, j + 4] & 0x0F) | ((s[:, j - 4] >> 6) << 4)
            mn[:, j] = (s[:, j + 4] >> 4) | ((s[:, j] >> 6) << 4)
    return sc, mn


def q45_k(raw, five):
    d, dmin = half(raw, 0)[:, None], half(raw, 2)[:, None]
    sc, mn = k4_scales(raw[:, 4:16])
    if five:
        qh, qs = raw[:, 16:48], raw[:, 48:176]
    else:
        qh, qs = None, raw[:, 16:144]
    q = np.empty((raw.shape[0], 256), np.int32)
    for c in range(4):
        chunk = qs[:, 32 * c:32 * c + 32]
        lo, hi = nib_lo(chunk), nib_hi(chunk)
        if five:
            lo = lo + (((qh >> (2 * c)) & 1).astype(np.int32) << 4)
            hi = hi + (((qh >> (2 * c + 1)) & 1).astype(np.int32) << 4)
        q[:, 64 * c:64 * c + 32] = lo
        q[:, 64 * c + 32:64 * c + 64] = hi
    scale = np.repeat(sc, 32, axis=1).astype(F32)
    mins = np.repeat(mn, 32, axis=1).astype(F32)
    return (d * scale) * q.astype(F32) - (dmin * mins)


def q6_k(raw):
    ql, qh = raw[:, 0:128], raw[:, 128:192]
    sc = raw[:, 192:208].view(np.int8).astype(np.int32)
    d = half(raw, 208)[:, None]
    q = np.empty((raw.shape[0], 256), np.int32)
    for h in range(2):
        L = ql[:, 64 * h:64 * h + 64].astype(np.int32)
        H = qh[:, 32 * h:32 * h + 32].astype(np.int32)
        base = 128 * h
        q[:, base + 0:base + 32] = (L[:, 0:32] & 15) | ((H & 3) << 4)
        q[:, base + 32:base + 64] = (L[:, 32:64] & 15) | (((H >> 2) & 3) << 4)
        q[:, base + 64:base + 96] = (L[:, 0:32] >> 4) | (((H >> 4) & 3) << 4)
        q[:, base + 96:base + 128] = (L[:, 32:64] >> 4) | (((H >> 6) & 3) << 4)
    q -= 32
    return (d * np.repeat(sc, 16, axis=1).astype(F32)) * q.astype(F32)


def f16(raw):
    return raw.reshape(-1).view('<f2').astype(F32)


def bf16(raw):
    return (raw.reshape(-1).view('<u2').astype(np.uint32) << 16).view(F32)


# name: (block elements, block bytes, numpy dequantizer, byte offsets of fp16 scale fields)
TYPES = {
    'Q4_0': (32, 18, q4_0, [0]),
    'Q4_1': (32, 20, q4_1, [0, 2]),
    'Q5_0': (32, 22, q5_0, [0]),
    'Q5_1': (32, 24, q5_1, [0, 2]),
    'Q8_0': (32, 34, q8_0, [0]),
    'Q2_K': (256, 84, q2_k, [80, 82]),
    'Q3_K': (256, 110, q3_k, [108]),
    'Q4_K': (256, 144, lambda r: q45_k(r, False), [0, 2]),
    'Q5_K': (256, 176, lambda r: q45_k(r, True), [0, 2]),
    'Q6_K': (256, 210, q6_k, [208]),
    'F16': (1, 2, f16, []),
    'BF16': (1, 2, bf16, []),
}


def random_halves(rng, n):
    """fp16 bit patterns: mostly ordinary scales, some subnormal, some arbitrary
    (which includes huge values, inf and nan)."""
    kind = rng.integers(0, 10, n)
    ordinary = np.abs(rng.normal(0, 0.02, n)).astype(np.float16).view(np.uint16)
    ordinary = ordinary ^ (rng.integers(0, 2, n).astype(np.uint16) << 15)  # some negative scales
    subnormal = rng.integers(1, 0x400, n).astype(np.uint16)
    arbitrary = rng.integers(0, 0x10000, n).astype(np.uint16)
    return np.where(kind < 7, ordinary, np.where(kind < 9, subnormal, arbitrary)).astype('<u2')


def tool_path():
    fbin = os.environ.get('FITLM_BIN')
    if not fbin:
        print('SKIP: FITLM_BIN is not set')
        sys.exit(77)
    return os.path.join(os.path.dirname(fbin), 'tests', 'test_dequant_tool')


def main():
    np.seterr(all="ignore")  # nan/inf scales are part of the test
    tool = tool_path()
    tmp = os.environ.get('FITLM_TMP', '/tmp')
    rng = np.random.default_rng(20261121)
    nblocks = 600 if os.environ.get('FITLM_SANITIZED') else 4000
    failures = 0
    for name, (bs, bb, fn, half_offs) in TYPES.items():
        n = nblocks if bs > 1 else nblocks * 64
        raw = rng.integers(0, 256, (n, bb), dtype=np.uint8)
        for off in half_offs:
            raw[:, off:off + 2] = random_halves(rng, n).view(np.uint8).reshape(n, 2)
        if bs == 1:  # make sure every special half pattern appears
            specials = np.array([0x0000, 0x8000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x7c01,
                                 0x7f80, 0xff80, 0x7fc0, 0x0080, 0x007f], '<u2')
            raw.reshape(-1).view('<u2')[:len(specials)] = specials
        want = fn(raw).reshape(-1).astype(F32)
        pin = os.path.join(tmp, 'dequant_%s.bin' % name)
        pout = os.path.join(tmp, 'dequant_%s.f32' % name)
        raw.tofile(pin)
        r = subprocess.run([tool, name, pin, pout], capture_output=True, text=True)
        if r.returncode != 0:
            print('FAIL %s: tool exited %d: %s' % (name, r.returncode, r.stderr.strip()))
            failures += 1
            continue
        got = np.fromfile(pout, dtype='<f4')
        if got.shape != want.shape:
            print('FAIL %s: %d values, want %d' % (name, got.size, want.size))
            failures += 1
            continue
        same = (got.view(np.uint32) == want.view(np.uint32)) | (np.isnan(got) & np.isnan(want))
        bad = np.flatnonzero(~same)
        if bad.size:
            i = bad[0]
            print('FAIL %s: %d of %d values differ; first at %d (block %d): got %r (0x%08x) want %r (0x%08x)' %
                  (name, bad.size, got.size, i, i // bs, got[i], got.view(np.uint32)[i], want[i],
                   want.view(np.uint32)[i]))
            failures += 1
        else:
            print('ok %s: %d values bit-exact (%d nan, %d inf, %d subnormal-scale blocks)' %
                  (name, got.size, int(np.isnan(want).sum()), int(np.isinf(want).sum()),
                   int(sum(((raw[:, o + 1] & 0x7c) == 0).sum() for o in half_offs))))
        os.remove(pin)
        os.remove(pout)
    # the tool must refuse a file that is not a whole number of blocks
    pin = os.path.join(tmp, 'dequant_bad.bin')
    np.zeros(17, np.uint8).tofile(pin)
    r = subprocess.run([tool, 'Q4_0', pin, pin + '.out'], capture_output=True, text=True)
    if r.returncode == 0:
        print('FAIL: tool accepted a partial block')
        failures += 1
    os.remove(pin)
    print('%d failures' % failures)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
