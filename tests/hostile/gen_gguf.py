#!/usr/bin/env python3
"""Writes a corpus of malformed GGUF files for fitlm's robustness tests.

Usage: python3 tests/hostile/gen_gguf.py OUTDIR

Every file is built straight from the GGUF specification (python stdlib only),
not with fitlm's writer. OUTDIR/gguf.tsv lists them, one per line:

    file<TAB>layer<TAB>what is wrong

layer is
  gguf       the container is malformed: the GGUF reader must refuse it;
  model      a well-formed GGUF whose model is wrong (missing/unknown
             architecture, inconsistent hyperparameters, missing or misshapen
             tensors): the model loader must refuse it;
  tokenizer  a well-formed GGUF model whose tokenizer metadata is wrong: the
             tokenizer must refuse it;
  ok         a valid tiny llama model (valid-tiny-llama.gguf): everything must
             accept it.
Each model/tokenizer file is the valid tiny llama with exactly one defect.
Output is deterministic.
"""
import os
import random
import struct
import sys

# ---- GGUF value types (spec) ----
U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?",
               U64: "<Q", I64: "<q", F64: "<d"}

# ---- ggml tensor types used here: id -> (elements per block, bytes per block) ----
T_F32, T_F16, T_Q4_0, T_Q8_0, T_Q4_K = 0, 1, 2, 8, 12
BLOCK = {T_F32: (1, 4), T_F16: (1, 2), T_Q4_0: (32, 18), T_Q8_0: (32, 34), T_Q4_K: (256, 144)}

U64_MAX = 2**64 - 1


def u32(x):
    return struct.pack("<I", x & 0xFFFFFFFF)


def u64(x):
    return struct.pack("<Q", x & U64_MAX)


def gstr(s, length=None):
    """A GGUF string; `length` overrides the encoded length (to lie)."""
    b = s.encode() if isinstance(s, str) else s
    return u64(len(b) if length is None else length) + b


def enc(vtype, v):
    """Encodes a value body (no type tag). Arrays: v = (elem_type, [items])."""
    if vtype == STR:
        return gstr(v)
    if vtype == ARR:
        et, items = v
        return u32(et) + u64(len(items)) + b"".join(enc(et, x) for x in items)
    return struct.pack(_SCALAR_FMT[vtype], v)


def kv(key, vtype, v):
    return gstr(key) + u32(vtype) + enc(vtype, v)


def kv_raw(key, vtype, body):
    return gstr(key) + u32(vtype) + body


def nbytes_of(ttype, dims):
    bs, bb = BLOCK[ttype]
    n = 1
    for d in dims:
        n *= d
    return n // bs * bb


def tinfo(name, dims, ttype, offset):
    return gstr(name) + u32(len(dims)) + b"".join(u64(d) for d in dims) + u32(ttype) + u64(offset)


def align_up(x, a):
    return (x + a - 1) // a * a


def gguf(kvs, tinfos, data=b"", version=3, n_kv=None, n_tensors=None, alignment=32, magic=b"GGUF", pad=True):
    """Assembles a file from encoded kv pairs and tensor infos; counts may lie."""
    head = magic + u32(version) + u64(len(tinfos) if n_tensors is None else n_tensors) + \
        u64(len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(tinfos)
    if pad and alignment:
        head += b"\0" * (align_up(len(head), alignment) - len(head))
    return head + data


def layout(tensors, alignment=32):
    """tensors: [(name, dims, type, bytes)] -> (tinfos, data) with aligned offsets."""
    infos, data = [], b""
    for name, dims, ttype, blob in tensors:
        off = align_up(len(data), alignment)
        data += b"\0" * (off - len(data)) + blob
        infos.append(tinfo(name, dims, ttype, off))
    data += b"\0" * (align_up(len(data), alignment) - len(data))
    return infos, data


# ---- a small valid file (a few kv pairs, two tensors) used as the base of the container cases ----
def small_kvs():
    return [kv("general.architecture", STR, "llama"), kv("general.name", STR, "hostile"),
            kv("llama.block_count", U32, 1)]


def small_tensors():
    return [("a.weight", [8, 2], T_F32, bytes(range(64))), ("b.weight", [32], T_Q8_0, bytes(34))]


# ---- the valid tiny llama model ----
TINY = dict(n_layer=2, dim=64, n_head=4, n_head_kv=2, ffn=128, vocab=32, ctx=128)


def tiny_tokens():
    toks = ["<unk>", "<s>", "</s>", "\u2581"] + [chr(c) for c in range(ord("a"), ord("a") + 20)] + \
        ["\u2581the", "\u2581a", "\u2581is", "\u2581of", "\u2581to", "\u2581and", "in", "er"]
    assert len(toks) == TINY["vocab"]
    scores = [0.0, 0.0, 0.0] + [-float(i) for i in range(1, len(toks) - 2)]
    types = [2, 3, 3] + [1] * (len(toks) - 3)  # UNKNOWN, CONTROL, CONTROL, NORMAL...
    return toks, scores, types


def tiny_model(overrides=None, drop_keys=(), drop_tensors=(), shape_overrides=None, extra_kvs=(), version=3,
               extra_tensors=(), tensor_values=None, alignment=32, matrix_type=T_F16):
    """The tiny llama as bytes, with optional defects:
    overrides: {key: (type, value)} replaces or adds metadata; drop_keys: keys left out;
    drop_tensors: tensor names left out; shape_overrides: {name: dims};
    extra_tensors: [(name, dims, type, bytes)] appended; tensor_values: {name: [floats]}
    replaces a tensor's values; alignment: of the data section (general.alignment
    must say so in overrides when it is not 32); matrix_type: T_F16 or T_F32."""
    c = TINY
    head_dim = c["dim"] // c["n_head"]
    kv_dim = head_dim * c["n_head_kv"]
    toks, scores, types = tiny_tokens()
    meta = [
        ("general.architecture", STR, "llama"),
        ("general.name", STR, "tiny-llama"),
        ("general.file_type", U32, 1),
        ("llama.context_length", U32, c["ctx"]),
        ("llama.embedding_length", U32, c["dim"]),
        ("llama.block_count", U32, c["n_layer"]),
        ("llama.feed_forward_length", U32, c["ffn"]),
        ("llama.attention.head_count", U32, c["n_head"]),
        ("llama.attention.head_count_kv", U32, c["n_head_kv"]),
        ("llama.rope.dimension_count", U32, head_dim),
        ("llama.rope.freq_base", F32, 10000.0),
        ("llama.attention.layer_norm_rms_epsilon", F32, 1e-5),
        ("llama.vocab_size", U32, c["vocab"]),
        ("tokenizer.ggml.model", STR, "llama"),
        ("tokenizer.ggml.pre", STR, "default"),
        ("tokenizer.ggml.tokens", ARR, (STR, toks)),
        ("tokenizer.ggml.scores", ARR, (F32, scores)),
        ("tokenizer.ggml.token_type", ARR, (I32, types)),
        ("tokenizer.ggml.bos_token_id", U32, 1),
        ("tokenizer.ggml.eos_token_id", U32, 2),
        ("tokenizer.ggml.unknown_token_id", U32, 0),
        ("tokenizer.ggml.add_bos_token", BOOL, True),
        ("tokenizer.ggml.add_eos_token", BOOL, False),
    ]
    overrides = dict(overrides or {})
    kvs = []
    for key, t, v in meta:
        if key in drop_keys:
            continue
        if key in overrides:
            t, v = overrides.pop(key)
        kvs.append(kv(key, t, v))
    for key, (t, v) in overrides.items():
        kvs.append(kv(key, t, v))
    kvs += list(extra_kvs)

    shapes = [("token_embd.weight", [c["dim"], c["vocab"]], matrix_type)]
    for i in range(c["n_layer"]):
        p = "blk.%d." % i
        shapes += [(p + "attn_norm.weight", [c["dim"]], T_F32),
                   (p + "attn_q.weight", [c["dim"], c["dim"]], matrix_type),
                   (p + "attn_k.weight", [c["dim"], kv_dim], matrix_type),
                   (p + "attn_v.weight", [c["dim"], kv_dim], matrix_type),
                   (p + "attn_output.weight", [c["dim"], c["dim"]], matrix_type),
                   (p + "ffn_norm.weight", [c["dim"]], T_F32),
                   (p + "ffn_gate.weight", [c["dim"], c["ffn"]], matrix_type),
                   (p + "ffn_up.weight", [c["dim"], c["ffn"]], matrix_type),
                   (p + "ffn_down.weight", [c["ffn"], c["dim"]], matrix_type)]
    shapes += [("output_norm.weight", [c["dim"]], T_F32), ("output.weight", [c["dim"], c["vocab"]], matrix_type)]
    rng = random.Random(1234)
    tensors = []
    for name, dims, ttype in shapes:
        if name in drop_tensors:
            continue
        if shape_overrides and name in shape_overrides:
            dims = shape_overrides[name]
        n = 1
        for d in dims:
            n *= d
        if tensor_values and name in tensor_values:
            vals = tensor_values[name]
        elif name.endswith("norm.weight"):
            vals = [1.0 + rng.uniform(-0.1, 0.1) for _ in range(n)]
        else:
            vals = [rng.gauss(0.0, 0.05) for _ in range(n)]
        fmt = "<%df" % n if ttype == T_F32 else "<%de" % n
        tensors.append((name, dims, ttype, struct.pack(fmt, *vals)))
    tensors += list(extra_tensors)
    infos, data = layout(tensors, alignment)
    return gguf(kvs, infos, data, version=version, alignment=alignment)


# ---- the corpus ----
def container_cases():
    """(name, bytes, what) for files the GGUF reader must refuse."""
    cases = []

    def add(name, data, what):
        cases.append((name, data, what))

    kvs, (infos, data) = small_kvs(), layout(small_tensors())
    valid_small = gguf(kvs, infos, data)
    ti_a = tinfo("a.weight", [8, 2], T_F32, 0)
    ti_b = tinfo("b.weight", [32], T_Q8_0, 64)

    def with_tensor(info, blob=b"", extra_infos=(), alignment=32, kvs_=None):
        return gguf(kvs if kvs_ is None else kvs_, [info] + list(extra_infos), blob, alignment=alignment)

    # magic and version
    add("empty.gguf", b"", "empty file")
    add("magic-only.gguf", b"GGUF", "file of only the magic")
    add("bad-magic.gguf", b"GGML" + valid_small[4:], "bad magic (GGML)")
    add("bad-magic-zero.gguf", b"\0" * 64, "bad magic (zeros)")
    add("short-2-bytes.gguf", b"GG", "2-byte file")
    for v, tag in [(0, "0"), (1, "1"), (4, "4"), (0xFFFFFFFF, "huge"), (0x03000000, "bigendian")]:
        add("version-%s.gguf" % tag, b"GGUF" + u32(v) + valid_small[8:], "version %d" % v)
    add("truncated-header.gguf", valid_small[:13], "header cut inside the tensor count")
    add("truncated-header-nkv.gguf", valid_small[:20], "header cut inside the metadata count")
    # lying counts
    add("n-tensors-huge.gguf", gguf(kvs, infos, data, n_tensors=2**63), "n_tensors = 2^63")
    add("n-tensors-wrap.gguf", gguf(kvs, infos, data, n_tensors=U64_MAX), "n_tensors = 2^64-1")
    add("n-kv-huge.gguf", gguf(kvs, infos, data, n_kv=2**40), "n_kv = 2^40")
    add("n-kv-wrap.gguf", gguf(kvs, infos, data, n_kv=U64_MAX), "n_kv = 2^64-1")
    add("n-kv-one-too-many.gguf", gguf(kvs, [], b"", n_kv=len(kvs) + 1), "n_kv one more than present")
    add("n-tensors-one-too-many.gguf", gguf(kvs, infos, b"", n_tensors=3, pad=False),
        "n_tensors one more than present")
    # strings
    add("key-len-past-eof.gguf", gguf([gstr("general.name", 1000) + b"x" * 20], [], b"", pad=False),
        "key length 1000 past end of file")
    add("key-len-wrap.gguf", gguf([gstr("general.name", U64_MAX) + u32(STR) + gstr("x")], []),
        "key length 2^64-1")
    add("key-empty.gguf", gguf([kv("", U32, 1)], []), "empty key")
    add("key-nul.gguf", gguf([kv(b"general\0name", STR, "x")], []), "NUL inside a key")
    add("key-too-long.gguf", gguf([kv("k" * 70000, U32, 1)], []), "70000-byte key")
    add("str-len-past-eof.gguf", gguf([kv_raw("general.name", STR, gstr("abc", 4096))], [], pad=False),
        "string value length past end of file")
    add("str-len-wrap.gguf", gguf([kv_raw("general.name", STR, gstr("abc", U64_MAX))], []),
        "string value length 2^64-1")
    add("str-len-wrap-minus-8.gguf", gguf([kv_raw("general.name", STR, gstr("abc", U64_MAX - 7))], []),
        "string value length 2^64-8 (wraps when added to the position)")
    # value types
    add("value-type-13.gguf", gguf([kv_raw("general.name", 13, u32(0))], []), "value type 13")
    add("value-type-huge.gguf", gguf([kv_raw("general.name", 0xFFFFFFFF, u32(0))], []), "value type 2^32-1")
    add("array-elem-type-13.gguf", gguf([kv_raw("x.arr", ARR, u32(13) + u64(1) + u32(0))], []),
        "array element type 13")
    add("array-elem-type-huge.gguf", gguf([kv_raw("x.arr", ARR, u32(0x80000000) + u64(1) + u32(0))], []),
        "array element type 2^31")
    add("array-huge-count-u32.gguf", gguf([kv_raw("x.arr", ARR, u32(U32) + u64(2**62) + u32(7))], []),
        "array of 2^62 uint32")
    add("array-count-wrap.gguf", gguf([kv_raw("x.arr", ARR, u32(U64) + u64(2**61 + 1) + u64(7))], []),
        "array of 2^61+1 uint64 (byte size wraps)")
    add("array-huge-count-str.gguf", gguf([kv_raw("tokenizer.ggml.tokens", ARR, u32(STR) + u64(2**40) + gstr("a"))],
                                          []),
        "array of 2^40 strings")
    add("array-huge-count-arr.gguf", gguf([kv_raw("x.arr", ARR, u32(ARR) + u64(2**50) + u32(U8) + u64(0))], []),
        "array of 2^50 arrays")
    add("array-str-len-past-eof.gguf",
        gguf([kv_raw("x.arr", ARR, u32(STR) + u64(2) + gstr("ok") + gstr("bad", 999))], [], pad=False),
        "string inside an array runs past end of file")
    deep = (u32(ARR) + u64(1)) * 99 + u32(U8) + u64(1) + b"\x05"
    add("array-nested-100.gguf", gguf([kv_raw("x.deep", ARR, deep)], []), "arrays nested 100 deep")
    deep = (u32(ARR) + u64(1)) * 99999 + u32(U8) + u64(1) + b"\x05"
    add("array-nested-100000.gguf", gguf([kv_raw("x.deep", ARR, deep)], []),
        "arrays nested 100000 deep (stack exhaustion)")
    add("bool-value-2.gguf", gguf([kv_raw("x.flag", BOOL, b"\x02")], []), "bool value 2")
    add("bool-array-value-7.gguf", gguf([kv_raw("x.flags", ARR, u32(BOOL) + u64(3) + b"\x01\x00\x07")], []),
        "bool array element 7")
    add("duplicate-key.gguf", gguf(kvs + [kv("general.name", STR, "again")], infos, data), "duplicate key")
    add("truncated-kv.gguf", valid_small[:40], "file cut inside the metadata")
    # alignment
    add("alignment-0.gguf", gguf(kvs + [kv("general.alignment", U32, 0)], infos, data), "general.alignment 0")
    add("alignment-3.gguf", gguf(kvs + [kv("general.alignment", U32, 3)], infos, data, alignment=3),
        "general.alignment 3")
    for a in (1, 2, 4):
        add("alignment-%d.gguf" % a, gguf(kvs + [kv("general.alignment", U32, a)], infos, data, alignment=a),
            "general.alignment %d (the spec: a multiple of 8; misaligned loads)" % a)
    add("alignment-string.gguf", gguf(kvs + [kv("general.alignment", STR, "32")], infos, data),
        "general.alignment is a string")
    add("alignment-u64.gguf", gguf(kvs + [kv("general.alignment", U64, 32)], infos, data),
        "general.alignment is a uint64 (the spec says uint32)")
    # tensor infos
    add("n-dims-0.gguf", with_tensor(gstr("a.weight") + u32(0) + u32(T_F32) + u64(0), bytes(64)), "n_dims 0")
    add("n-dims-5.gguf", with_tensor(tinfo("a.weight", [1, 1, 1, 1, 1], T_F32, 0), bytes(64)), "n_dims 5")
    add("n-dims-huge.gguf", with_tensor(gstr("a.weight") + u32(0xFFFFFFFF) + u64(1), bytes(64)), "n_dims 2^32-1")
    add("dims-product-overflow.gguf", with_tensor(tinfo("a.weight", [2**32, 2**32, 2], T_F32, 0), bytes(64)),
        "dims 2^32 x 2^32 x 2: element count overflows u64")
    add("dims-product-overflow-i64.gguf", with_tensor(tinfo("a.weight", [2**62, 4], T_F32, 0), bytes(64)),
        "dims 2^62 x 4: element count overflows int64")
    add("nbytes-overflow.gguf", with_tensor(tinfo("a.weight", [2**62], T_F32, 0), bytes(64)),
        "2^62 F32 elements: byte size overflows u64")
    add("dim-zero.gguf", with_tensor(tinfo("a.weight", [8, 0], T_F32, 0), bytes(64)), "zero dimension")
    for t, what in [(40, "unknown tensor type 40"), (1000, "type 1000 (not a GGUF type)"),
                    (0xFFFFFFFF, "tensor type 2^32-1"), (4, "removed tensor type 4 (Q4_2)"),
                    (5, "removed tensor type 5 (Q4_3)"), (31, "removed tensor type 31 (Q4_0_4_4)")]:
        add("tensor-type-%d.gguf" % t, with_tensor(tinfo("a.weight", [32], t, 0), bytes(256)), what)
    add("rows-not-block-multiple.gguf", with_tensor(tinfo("a.weight", [48, 2], T_Q4_0, 0), bytes(256)),
        "Q4_0 row of 48 elements (block size 32)")
    add("rows-not-block-multiple-k.gguf", with_tensor(tinfo("a.weight", [128], T_Q4_K, 0), bytes(256)),
        "Q4_K row of 128 elements (block size 256)")
    add("offset-past-eof.gguf", with_tensor(tinfo("a.weight", [8, 2], T_F32, 4096), bytes(64)),
        "tensor offset past end of file")
    add("offset-misaligned.gguf", with_tensor(tinfo("a.weight", [8, 2], T_F32, 4), bytes(96)),
        "tensor offset 4 not a multiple of the alignment 32")
    add("offset-wrap.gguf", with_tensor(tinfo("a.weight", [8, 2], T_F32, 2**64 - 32), bytes(64)),
        "tensor offset 2^64-32 (wraps when added to the data section start)")
    add("data-past-eof.gguf", with_tensor(tinfo("a.weight", [1024, 1024], T_F32, 0), bytes(64)),
        "4 MiB tensor in a file of a few hundred bytes")
    add("overlap.gguf", with_tensor(ti_a, bytes(128), [tinfo("b.weight", [8], T_F32, 32)]),
        "tensors overlap (offset 0 + 64 bytes and offset 32)")
    add("overlap-same-offset.gguf", with_tensor(ti_a, bytes(128), [tinfo("b.weight", [8, 2], T_F32, 0)]),
        "two tensors at the same offset")
    add("truncated-data.gguf", valid_small[:-40], "file cut inside the tensor data")
    add("truncated-tensor-info.gguf", gguf(kvs, infos, b"", pad=False)[:-10], "file cut inside a tensor info")
    add("duplicate-tensor.gguf", with_tensor(ti_a, bytes(128), [tinfo("a.weight", [8], T_F32, 64)]),
        "duplicate tensor name")
    add("tensor-name-65.gguf", with_tensor(tinfo("t" * 65, [8, 2], T_F32, 0), bytes(64)), "65-byte tensor name")
    add("tensor-name-huge.gguf", with_tensor(gstr("a", 2**63) + u32(1), bytes(64)), "tensor name length 2^63")
    add("tensor-name-empty.gguf", with_tensor(tinfo("", [8, 2], T_F32, 0), bytes(64)), "empty tensor name")
    add("tensor-name-nul.gguf", with_tensor(tinfo(b"a\0b", [8, 2], T_F32, 0), bytes(64)), "NUL in a tensor name")
    _ = ti_b
    return cases


def model_cases():
    cases = []

    def add(name, data, what):
        cases.append((name, data, what))

    dim = TINY["dim"]
    add("model-no-architecture.gguf", tiny_model(drop_keys=("general.architecture",)), "general.architecture missing")
    add("model-unknown-architecture.gguf", tiny_model({"general.architecture": (STR, "mamba-xl-9000")}),
        "unknown architecture 'mamba-xl-9000'")
    add("model-architecture-not-string.gguf", tiny_model({"general.architecture": (U32, 7)}),
        "general.architecture is a uint32")
    add("model-heads-not-dividing.gguf", tiny_model({"llama.attention.head_count": (U32, 5)}),
        "5 heads do not divide the hidden size 64")
    add("model-kv-heads-not-dividing.gguf", tiny_model({"llama.attention.head_count_kv": (U32, 3)}),
        "3 KV heads do not divide 4 heads")
    add("model-heads-zero.gguf", tiny_model({"llama.attention.head_count": (U32, 0)}), "0 attention heads")
    add("model-block-count-zero.gguf", tiny_model({"llama.block_count": (U32, 0)}), "block_count 0")
    add("model-no-embedding-length.gguf", tiny_model(drop_keys=("llama.embedding_length",)),
        "llama.embedding_length missing")
    add("model-block-count-too-big.gguf", tiny_model({"llama.block_count": (U32, 3)}),
        "block_count 3 but tensors for 2 layers")
    add("model-block-count-huge.gguf", tiny_model({"llama.block_count": (U32, 0xFFFFFFFF)}),
        "block_count 2^32-1")
    add("model-embedding-length-huge.gguf", tiny_model({"llama.embedding_length": (U64, 2**40)}),
        "embedding_length 2^40 (tensors are 64 wide)")
    add("model-missing-tensor.gguf", tiny_model(drop_tensors=("blk.1.ffn_down.weight",)),
        "blk.1.ffn_down.weight missing")
    add("model-missing-token-embd.gguf", tiny_model(drop_tensors=("token_embd.weight",)), "token_embd.weight missing")
    add("model-shape-attn-q.gguf", tiny_model(shape_overrides={"blk.0.attn_q.weight": [dim, dim - 4]}),
        "blk.0.attn_q.weight is 64x60, hparams say 64x64")
    add("model-shape-attn-k.gguf", tiny_model(shape_overrides={"blk.1.attn_k.weight": [dim, dim]}),
        "blk.1.attn_k.weight is 64x64, KV heads say 64x32")
    add("model-shape-ffn-transposed.gguf", tiny_model(shape_overrides={"blk.0.ffn_down.weight": [dim, TINY["ffn"]]}),
        "blk.0.ffn_down.weight transposed (64x128 instead of 128x64)")
    add("model-shape-norm.gguf", tiny_model(shape_overrides={"output_norm.weight": [dim * 2]}),
        "output_norm.weight has 128 elements, hidden size is 64")
    add("model-shape-embd-vocab.gguf", tiny_model(shape_overrides={"token_embd.weight": [dim, TINY["vocab"] - 1]}),
        "token_embd.weight has 31 rows, the vocabulary has 32 tokens")
    add("model-shape-3d.gguf", tiny_model(shape_overrides={"blk.0.attn_v.weight": [dim, 16, 2]}),
        "blk.0.attn_v.weight is 3-dimensional")
    add("model-arch-nul.gguf", tiny_model({"general.architecture": (STR, b"llama\0x")}),
        "general.architecture = 'llama\\0x' (a NUL inside the string)")
    add("model-eps-nan.gguf", tiny_model({"llama.attention.layer_norm_rms_epsilon": (F32, float("nan"))}),
        "rms_norm_eps NaN")
    add("model-eps-zero.gguf", tiny_model({"llama.attention.layer_norm_rms_epsilon": (F32, 0.0)}), "rms_norm_eps 0")
    return cases


def run_cases():
    """Describable files the runtime must refuse (non-finite or zero values in
    the small tensors it checks at load)."""
    cases = []
    dim, half = TINY["dim"], TINY["dim"] // TINY["n_head"] // 2
    norm = [1.0] * dim
    cases.append(("run-attn-norm-nan.gguf", tiny_model(tensor_values={"blk.1.attn_norm.weight": norm[:5] + [
        float("nan")] + norm[6:]}), "a NaN in blk.1.attn_norm.weight"))
    cases.append(("run-output-norm-inf.gguf", tiny_model(tensor_values={"output_norm.weight": [float("inf")] + norm[1:]}),
                  "+Inf in output_norm.weight"))
    cases.append(("run-ffn-norm-neg-inf.gguf", tiny_model(tensor_values={"blk.0.ffn_norm.weight":
                                                                          norm[:-1] + [float("-inf")]}),
                  "-Inf in blk.0.ffn_norm.weight"))
    for tag, vals in (("zeros", [0.0] * half), ("nan", [1.0] * (half - 1) + [float("nan")]),
                      ("negative", [-1.0] * half)):
        blob = struct.pack("<%df" % half, *vals)
        cases.append(("run-rope-freqs-%s.gguf" % tag, tiny_model(extra_tensors=[("rope_freqs.weight", [half], T_F32,
                                                                                  blob)]),
                      "rope_freqs.weight of %s (RoPE divides by it)" % tag))
    return cases


def tokenizer_cases():
    cases = []

    def add(name, data, what):
        cases.append((name, data, what))

    toks, scores, types = tiny_tokens()
    add("tok-scores-short.gguf", tiny_model({"tokenizer.ggml.scores": (ARR, (F32, scores[:-1]))}),
        "31 scores for 32 tokens")
    add("tok-types-long.gguf", tiny_model({"tokenizer.ggml.token_type": (ARR, (I32, types + [1]))}),
        "33 token types for 32 tokens")
    add("tok-bos-out-of-range.gguf", tiny_model({"tokenizer.ggml.bos_token_id": (U32, 32)}),
        "BOS id 32 with 32 tokens")
    # (2^32-1 is not used here: like llama.cpp, fitlm reads it as "no such token")
    add("tok-eos-out-of-range.gguf", tiny_model({"tokenizer.ggml.eos_token_id": (U32, 0x7FFFFFFF)}),
        "EOS id 2^31-1 with 32 tokens")
    add("tok-eos-equal-vocab.gguf", tiny_model({"tokenizer.ggml.eos_token_id": (U32, 32)}),
        "EOS id 32 with 32 tokens (one past the end)")
    add("tok-eot-out-of-range.gguf", tiny_model({"tokenizer.ggml.eot_token_id": (U32, 40)}),
        "EOT id 40 with 32 tokens")
    add("tok-unk-out-of-range.gguf", tiny_model({"tokenizer.ggml.unknown_token_id": (U32, 1000)}),
        "unknown-token id 1000 with 32 tokens")
    add("tok-unknown-model.gguf", tiny_model({"tokenizer.ggml.model": (STR, "wordpiece-9000")}),
        "unknown tokenizer.ggml.model 'wordpiece-9000'")
    add("tok-tokens-not-strings.gguf", tiny_model({"tokenizer.ggml.tokens": (ARR, (I32, list(range(32))))}),
        "tokenizer.ggml.tokens is an array of int32")
    add("tok-scores-not-floats.gguf", tiny_model({"tokenizer.ggml.scores": (ARR, (STR, ["x"] * 32))}),
        "tokenizer.ggml.scores is an array of strings")
    add("tok-no-tokens.gguf", tiny_model(drop_keys=("tokenizer.ggml.tokens",)), "tokenizer.ggml.tokens missing")
    add("tok-gpt2-no-merges.gguf", tiny_model({"tokenizer.ggml.model": (STR, "gpt2")}),
        "gpt2 tokenizer without tokenizer.ggml.merges")
    add("tok-token-type-invalid.gguf", tiny_model({"tokenizer.ggml.token_type": (ARR, (I32, [99] * 32))}),
        "token types 99 (valid are 1..6)")
    return cases


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: gen_gguf.py OUTDIR\n")
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    rows = [("valid-tiny-llama.gguf", tiny_model(), "ok", "a valid tiny llama model (2 layers, dim 64, "
             "4 heads, 2 KV heads, ffn 128, vocab 32)")]
    rows += [(n, d, "gguf", w) for n, d, w in container_cases()]
    rows += [(n, d, "model", w) for n, d, w in model_cases()]
    rows += [(n, d, "run", w) for n, d, w in run_cases()]
    rows += [(n, d, "tokenizer", w) for n, d, w in tokenizer_cases()]
    names = set()
    with open(os.path.join(out, "gguf.tsv"), "w") as m:
        for name, data, layer, what in rows:
            assert name not in names, name
            names.add(name)
            with open(os.path.join(out, name), "wb") as f:
                f.write(data)
            m.write("%s\t%s\t%s\n" % (name, layer, what))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
