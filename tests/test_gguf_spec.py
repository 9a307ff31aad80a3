#!/usr/bin/env python3
"""Independent check of fitlm's GGUF reader and writer against the GGUF spec.

This file has its own GGUF encoder and parser, written from the specification
(struct + numpy only, nothing shared with fitlm's C code), and compares them
with fitlm through tests/test_gguf_dump (a canonical text dump; format in
tests/test_gguf_dump.c):

1. python writes files (every metadata type, nested arrays, tensors F32, F16,
   Q8_0, Q4_K, BF16, I8 of raw bytes; v2/v3; alignments 8/16/32/64; 1, 2 and 4, which the spec forbids, refused) and fitlm's
   reader must dump exactly what python put in;
2. python's parser and fitlm's reader must agree on the shared real vocab
   files (written by llama.cpp's gguf-py);
3. fitlm's writer writes a sample, and python parses it and checks every value,
   every tensor byte (numpy for F32/F16), the alignment and the padding.
"""
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
TYPE_NAMES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array",
              "uint64", "int64", "float64"]
FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<I", BOOL: "<B", U64: "<Q",
       I64: "<q", F64: "<Q"}  # floats are carried as their bit patterns
SIZE = {t: struct.calcsize(f) for t, f in FMT.items()}
# ggml tensor types: id -> (block elements, block bytes), from the GGUF spec / ggml docs
GGML = {0: (1, 4), 1: (1, 2), 8: (32, 34), 12: (256, 144), 24: (1, 1), 30: (1, 2)}



def f32bits(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f64bits(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


# ---------- encoder ----------
def e_str(b):
    return struct.pack("<Q", len(b)) + b


def e_val(t, v):
    """v: int (floats as bits) for scalars, bytes for strings, (et, items) for arrays."""
    if t == STR:
        return e_str(v)
    if t == ARR:
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(e_val(et, x) for x in items)
    return struct.pack(FMT[t], v)


def align_up(x, a):
    return (x + a - 1) // a * a


def build(version, alignment, kvs, tensors):
    """kvs: [(key bytes, type, value)]; tensors: [(name, dims, ggml type, data bytes)].
    Returns (file bytes, relative offsets)."""
    if alignment != 32:
        kvs = [(b"general.alignment", U32, alignment)] + kvs
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += e_str(k) + struct.pack("<I", t) + e_val(t, v)
    offs, pos = [], 0
    for name, dims, tt, data in tensors:
        pos = align_up(pos, alignment)
        offs.append(pos)
        pos += len(data)
        out += e_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + \
            struct.pack("<IQ", tt, offs[-1])
    out += b"\0" * (align_up(len(out), alignment) - len(out))
    base = len(out)
    for (name, dims, tt, data), off in zip(tensors, offs):
        out += b"\0" * (base + off - len(out)) + data
    out += b"\0" * (align_up(len(out), alignment) - len(out))
    return out, kvs, offs, base


# ---------- parser ----------
class Parser:
    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, n):
        if n > len(self.d) - self.p:
            raise ValueError("truncated at %d" % self.p)
        b = self.d[self.p:self.p + n]
        self.p += n
        return b

    def un(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self):
        return self.take(self.un("<Q"))

    def value(self, t):
        if t == STR:
            return self.string()
        if t == ARR:
            et, n = self.un("<I"), self.un("<Q")
            if et in SIZE:
                return (et, self.take(n * SIZE[et]))  # raw bytes
            return (et, [self.value(et) for _ in range(n)])
        return self.un(FMT[t])


def parse(data):
    p = Parser(data)
    if p.take(4) != b"GGUF":
        raise ValueError("magic")
    version, n_t, n_kv = p.un("<I"), p.un("<Q"), p.un("<Q")
    kvs = []
    for _ in range(n_kv):
        k = p.string()
        t = p.un("<I")
        kvs.append((k, t, p.value(t)))
    alignment = 32
    for k, t, v in kvs:
        if k == b"general.alignment":
            alignment = v
    tensors = []
    for _ in range(n_t):
        name = p.string()
        nd = p.un("<I")
        dims = [p.un("<Q") for _ in range(nd)]
        tt, off = p.un("<I"), p.un("<Q")
        tensors.append([name, dims, tt, off])
    data_offset = align_up(p.p, alignment)
    out = []
    for name, dims, tt, off in tensors:
        bs, bb = GGML[tt]
        n = int(np.prod(dims, dtype=object))
        nbytes = n // bs * bb
        out.append((name, dims, tt, off, data[data_offset + off:data_offset + off + nbytes]))
    return dict(version=version, kvs=kvs, tensors=out, alignment=alignment, data_offset=data_offset,
                header_end=p.p)


# ---------- canonical dump (same format as tests/test_gguf_dump.c) ----------
def fnv1a(b):
    h = 0xcbf29ce484222325
    for c in b:
        h = ((h ^ c) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def d_val(t, v):
    if t in (F32,):
        return "0x%08x" % v
    if t == F64:
        return "0x%016x" % v
    if t == STR:
        return "s:" + v.hex()
    if t == ARR:
        et, items = v
        if et in SIZE:
            raw = items if isinstance(items, bytes) else b"".join(struct.pack(FMT[et], x) for x in items)
            return "[%s;%d:%s]" % (TYPE_NAMES[et], len(raw) // SIZE[et], raw.hex())
        return "[%s;%d:%s]" % (TYPE_NAMES[et], len(items), ",".join(d_val(et, x) for x in items))
    return str(v)


def dump(version, alignment, data_offset, kvs, tensors):
    """tensors: [(name, dims, type, rel offset, data)]"""
    lines = ["gguf version=%d n_kv=%d n_tensors=%d alignment=%d data_offset=%d" %
             (version, len(kvs), len(tensors), alignment, data_offset)]
    for k, t, v in kvs:
        lines.append("kv %s %s %s" % (k.decode("latin-1"), TYPE_NAMES[t], d_val(t, v)))
    for name, dims, tt, off, data in tensors:
        lines.append("tensor %s type=%d dims=%s offset=%d nbytes=%d fnv=%016x" %
                     (name.decode(), tt, ",".join(map(str, dims)), off, len(data), fnv1a(data)))
    return "\n".join(lines) + "\n"


def dump_parsed(g):
    return dump(g["version"], g["alignment"], g["data_offset"], g["kvs"], g["tensors"])


def c_dump(tool, path):
    r = subprocess.run([tool, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        return None, r.stderr.decode(errors="replace")
    return r.stdout.decode("latin-1"), ""


def first_diff(a, b):
    la, lb = a.splitlines(), b.splitlines()
    for i, (x, y) in enumerate(zip(la, lb)):
        if x != y:
            return "line %d:\n  fitlm:  %s\n  python: %s" % (i + 1, x[:300], y[:300])
    return "line counts %d vs %d" % (len(la), len(lb))


# ---------- 1. python writes, fitlm reads ----------
def sample_metadata():
    rng = np.random.default_rng(7)
    return [
        (b"general.architecture", STR, b"llama"),
        (b"m.u8", U8, 255), (b"m.i8", I8, -128), (b"m.u16", U16, 65535), (b"m.i16", I16, -32768),
        (b"m.u32", U32, 4294967295), (b"m.i32", I32, -2147483648), (b"m.f32", F32, f32bits(-3.5e-3)),
        (b"m.bool", BOOL, 0), (b"m.str", STR, "\u2581caf\u00e9 \U0001f600".encode()), (b"m.empty", STR, b""),
        (b"m.nul", STR, b"a\0b"), (b"m.u64", U64, 2**64 - 1), (b"m.i64", I64, -2**63),
        (b"m.f64", F64, f64bits(-1.0e-300)),
        (b"a.u8", ARR, (U8, [0, 1, 254, 255])), (b"a.i16", ARR, (I16, [-1, 2, -3])),
        (b"a.f32", ARR, (F32, [f32bits(float(x)) for x in rng.standard_normal(17).astype(np.float32)])),
        (b"a.bool", ARR, (BOOL, [1, 0, 1])), (b"a.u64", ARR, (U64, [2**63, 5])),
        (b"a.f64", ARR, (F64, [f64bits(0.1), f64bits(-2.0)])), (b"a.i64", ARR, (I64, [])),
        (b"a.str", ARR, (STR, [b"<unk>", b"", "\u2581the".encode(), bytes(range(1, 40))])),
        (b"a.nested", ARR, (ARR, [(I32, [1, -2]), (I32, []), (I32, [2**31 - 1])])),
        (b"a.nested_str", ARR, (ARR, [(STR, [b"x", b"yz"]), (STR, [])])),
        (b"a.deep", ARR, (ARR, [(ARR, [(ARR, [(U16, [7, 8])])]), (ARR, [])])),
        (b"a.empty_nested", ARR, (ARR, [])),
    ]


def sample_tensors():
    rng = np.random.default_rng(11)
    f32 = (np.arange(24, dtype=np.float32) * 0.25 - 3).reshape(3, 8)  # ne = [8, 3]
    f16 = rng.standard_normal((2, 2, 16)).astype(np.float16)  # ne = [16, 2, 2]
    q8 = rng.integers(0, 256, 34 * 4, dtype=np.uint8).tobytes()  # [64, 2]: 4 blocks
    q4k = rng.integers(0, 256, 144 * 2, dtype=np.uint8).tobytes()  # [256, 1, 1, 2]: 2 blocks
    bf16 = rng.integers(0, 65536, 6, dtype=np.uint16).astype("<u2").tobytes()
    i8 = np.arange(-5, 5, dtype=np.int8).tobytes()
    return [(b"token_embd.weight", [8, 3], 0, f32.astype("<f4").tobytes()),
            (b"blk.0.attn_q.weight", [16, 2, 2], 1, f16.astype("<f2").tobytes()),
            (b"blk.0.ffn_up.weight", [64, 2], 8, q8),
            (b"blk.0.ffn_down.weight", [256, 1, 1, 2], 12, q4k),
            (b"x.bf16", [6], 30, bf16),
            (b"x.i8", [10], 24, i8),
            (b"n" * 64, [1], 0, struct.pack("<f", 1.0))]


def test_python_writes(tool, tmp):
    for version, alignment in [(3, 32), (2, 32), (3, 16), (3, 8), (2, 64)]:
        data, kvs, offs, base = build(version, alignment, sample_metadata(), sample_tensors())
        path = os.path.join(tmp, "py-v%d-a%d.gguf" % (version, alignment))
        with open(path, "wb") as f:
            f.write(data)
        want = dump(version, alignment, base, kvs,
                    [(n, d, t, o, b) for (n, d, t, b), o in zip(sample_tensors(), offs)])
        got, err = c_dump(tool, path)
        check(got is not None, "%s refused by fitlm: %s" % (path, err))
        if got is not None:
            check(got == want, "%s: fitlm's reading differs from what python wrote: %s" %
                  (path, first_diff(got, want)))
        check(dump_parsed(parse(data)) == want, "%s: python parser self-check" % path)
        # one byte short anywhere in the data section must be refused
        with open(path + ".cut", "wb") as f:
            f.write(data[:base + offs[-1] + 3])
        got, err = c_dump(tool, path + ".cut")
        check(got is None and "past end of file" in err, "truncated %s accepted or wrong message: %s" % (path, err))
    # the spec: general.alignment must be a multiple of 8
    for alignment in (1, 2, 4):
        data, _, _, _ = build(3, alignment, sample_metadata(), sample_tensors())
        path = os.path.join(tmp, "py-v3-a%d.gguf" % alignment)
        with open(path, "wb") as f:
            f.write(data)
        got, err = c_dump(tool, path)
        check(got is None and "multiple of 8" in err, "alignment %d accepted or wrong message: %s" % (alignment, err))


# ---------- 2. real files from gguf-py ----------
def test_vocab_files(tool, shared):
    vdir = os.path.join(shared, "data", "vocab")
    names = sorted(n for n in os.listdir(vdir) if n.endswith(".gguf"))
    check(len(names) == 4, "expected 4 vocab files, found %d" % len(names))
    for n in names:
        path = os.path.join(vdir, n)
        with open(path, "rb") as f:
            want = dump_parsed(parse(f.read()))
        got, err = c_dump(tool, path)
        check(got is not None, "%s refused: %s" % (n, err))
        if got is not None:
            check(got == want, "%s: fitlm and the python spec parser disagree: %s" % (n, first_diff(got, want)))


# ---------- 3. fitlm writes, python reads ----------
def test_c_writes(tool, tmp):
    for version, alignment in [(3, 32), (2, 64), (3, 16), (3, 8)]:
        path = os.path.join(tmp, "c-v%d-a%d.gguf" % (version, alignment))
        r = subprocess.run([tool, "--write-sample", path, str(version), str(alignment)])
        check(r.returncode == 0, "fitlm writer failed for v%d a%d" % (version, alignment))
        if r.returncode != 0:
            continue
        with open(path, "rb") as f:
            data = f.read()
        g = parse(data)
        kv = {k.decode(): (t, v) for k, t, v in g["kvs"]}
        check(g["version"] == version, "version %d" % g["version"])
        check(g["alignment"] == alignment, "alignment %d" % g["alignment"])
        check(("general.alignment" in kv) == (alignment != 32), "general.alignment present iff not default")
        if alignment != 32:
            check(kv["general.alignment"] == (U32, alignment), "general.alignment is a uint32")
        expect = {
            "general.architecture": (STR, b"llama"), "s.u32": (U32, 4000000000), "s.i32": (I32, -123456),
            "s.u64": (U64, 2**64 - 1), "s.f32": (F32, f32bits(-0.15625)), "s.bool": (BOOL, 1),
            "s.str": (STR, "h\u00e9llo \u2581world".encode()), "s.u8": (U8, 250), "s.i8": (I8, -7),
            "s.u16": (U16, 65000), "s.i16": (I16, -32000), "s.i64": (I64, -9000000000000000000),
            "s.f64": (F64, f64bits(2.718281828459045)),
            "a.i32": (ARR, (I32, np.array([1, -2, 3, -4, 2147483647], "<i4").tobytes())),
            "a.f32": (ARR, (F32, np.array([0.5, -1.25, 1e10], "<f4").tobytes())),
            "a.str": (ARR, (STR, [b"<s>", b"", "\u2581the".encode(), b"a b"])),
            "a.nested": (ARR, (ARR, [(U16, struct.pack("<HH", 1, 2)), (U16, struct.pack("<H", 3))])),
            "a.nested3": (ARR, (ARR, [(ARR, [(STR, [b"x", b"yz"])])])),
        }
        for k, v in expect.items():
            check(kv.get(k) == v, "%s: %s = %r, expected %r" % (path, k, kv.get(k), v))
        check(len(kv) == len(expect) + (alignment != 32), "%s: %d keys" % (path, len(kv)))
        t = {n.decode(): (dims, tt, off, b) for n, dims, tt, off, b in g["tensors"]}
        check(list(t) == ["t.f32", "t.f16", "t.q8_0", "t.q4_k", "t.bf16"], "tensor names %s" % list(t))
        f32 = np.frombuffer(t["t.f32"][3], "<f4")
        check(t["t.f32"][:2] == ([8, 3], 0) and np.array_equal(f32, np.arange(24, dtype=np.float32) * 0.5),
              "t.f32 values")
        f16 = np.frombuffer(t["t.f16"][3], "<f2")
        check(t["t.f16"][:2] == ([16], 1) and np.array_equal(f16, -np.arange(16, dtype=np.float16)), "t.f16 values")
        for i, (name, dims, tt, nbytes) in enumerate([("t.q8_0", [64, 2], 8, 136), ("t.q4_k", [256], 12, 144),
                                                       ("t.bf16", [4, 2], 30, 16)]):
            idx = i + 2
            pattern = bytes((idx * 31 + j * 7) & 0xFF for j in range(nbytes))
            check(t[name][:2] == (dims, tt) and t[name][3] == pattern, "%s bytes" % name)
        # layout: aligned offsets, zero padding, file ends aligned
        check(g["data_offset"] % alignment == 0, "data offset aligned")
        check(data[g["header_end"]:g["data_offset"]] == b"\0" * (g["data_offset"] - g["header_end"]),
              "header padding is zeros")
        end = 0
        for n, dims, tt, off, b in g["tensors"]:
            check(off % alignment == 0, "%s offset %d aligned" % (n, off))
            check(data[g["data_offset"] + end:g["data_offset"] + off] == b"\0" * (off - end), "padding before %s" % n)
            end = off + len(b)
        check(len(data) == align_up(g["data_offset"] + end, alignment), "file size %d" % len(data))
        got, err = c_dump(tool, path)
        check(got == dump_parsed(g), "%s: fitlm's own reading differs from python's: %s" % (path, err))


def main():
    bindir = os.path.dirname(os.environ.get("FITLM_BIN", ""))
    tool = os.path.join(bindir, "tests", "test_gguf_dump")
    shared = os.environ.get("FITLM_SHARED", "")
    if not os.path.exists(tool):
        print("FAIL: %s not built" % tool)
        return 1
    tmp = tempfile.mkdtemp(prefix="gguf-spec-", dir=os.environ.get("FITLM_TMP") or None)
    test_python_writes(tool, tmp)
    test_vocab_files(tool, shared)
    test_c_writes(tool, tmp)
    return te.report()


if __name__ == "__main__":
    sys.exit(main())
