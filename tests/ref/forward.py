"""Independent float64 numpy reference of the LLaMA-family forward pass, written
from the published architecture definitions (Llama / Mistral / Qwen2 as in the
Hugging Face transformers modelling code and the Meta reference), plus a
minimal GGUF v3 writer written from the GGUF specification. Used by
tests/test_forward_ref.py; shares no code with fitlm.

Weights are given as GGUF stores them: a matrix with GGUF shape [in, out] is a
numpy array of shape (out, in), so y = W @ x.
"""
import math
import struct

import numpy as np

# ---------------------------------------------------------------- reference


def rope_inv_freq(cfg):
    d = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (np.arange(0, d, 2, dtype=np.float64) / d))
    sc = cfg.get("rope_scaling")
    if sc is None:
        return inv
    if sc["type"] == "linear":
        return inv / sc["factor"]
    if sc["type"] == "llama3":
        factor, lo, hi, orig = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"], sc["original_context"]
        low_wavelen, high_wavelen = orig / lo, orig / hi
        out = inv.copy()
        for i, f in enumerate(inv):
            wavelen = 2 * math.pi / f
            if wavelen < high_wavelen:
                out[i] = f
            elif wavelen > low_wavelen:
                out[i] = f / factor
            else:
                s = (orig / wavelen - lo) / (hi - lo)
                out[i] = (1 - s) * f / factor + s * f
        return out
    raise ValueError(sc["type"])


def apply_rope(x, positions, inv_freq, layout):
    """x: (T, H, D). layout 'adjacent': pairs (2i, 2i+1) (Meta reference, GGUF
    llama); 'half': pairs (i, i+D/2) (HF rotate_half, GGUF neox/qwen2)."""
    ang = positions[:, None].astype(np.float64) * inv_freq[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    out = np.empty_like(x)
    d = x.shape[-1]
    if layout == "adjacent":
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
    else:
        x0, x1 = x[..., : d // 2], x[..., d // 2:]
        out[..., : d // 2] = x0 * cos - x1 * sin
        out[..., d // 2:] = x1 * cos + x0 * sin
    return out


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def quantize_act_q8(x):
    """What the CPU kernels do to the activations of a Q4_0..Q8_0 matmul
    (kernels.h: quantized on the fly): blocks of 32, d = max|x| / 127 in
    float32, q = round-half-even(x * (1/d)); returns the dequantized values."""
    x = np.asarray(x, dtype=np.float32)
    shape = x.shape
    x = x.reshape(-1, 32)
    d = (np.abs(x).max(axis=1) / np.float32(127)).astype(np.float32)
    inv = np.where(d > 0, np.float32(1) / np.where(d > 0, d, np.float32(1)), np.float32(0)).astype(np.float32)
    q = np.clip(np.rint(x * inv[:, None]), -127, 127)
    return (q.astype(np.float64) * d[:, None].astype(np.float64)).reshape(shape)


def round_bf16(x):
    """float64 -> float32 -> bfloat16 (round to nearest even) -> float64: the
    ACT_BF16 activations of fitlm's BF16 matmuls."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def forward(cfg, w, ids, qact=(), bact=()):
    """Logits (T, vocab) for token ids at positions 0..T-1. Matrices named in
    qact get their input rows through quantize_act_q8 first, those in bact
    through round_bf16."""

    def mm(h, name):
        if name in qact:
            h = quantize_act_q8(h)
        elif name in bact:
            h = round_bf16(h)
        return h @ w[name].T

    T = len(ids)
    H, KV, D = cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"]
    eps = cfg["eps"]
    inv = rope_inv_freq(cfg)
    pos = np.arange(T)
    x = w["token_embd.weight"][ids].astype(np.float64)
    window = cfg.get("sliding_window", 0)
    # mask[q, k]: k <= q, and q - k < window when a window is set
    qi, ki = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    allowed = ki <= qi
    if window:
        allowed &= (qi - ki) < window
    for l in range(cfg["n_layers"]):
        p = "blk.%d." % l
        h = rmsnorm(x, w[p + "attn_norm.weight"], eps)
        q = mm(h, p + "attn_q.weight")
        k = mm(h, p + "attn_k.weight")
        v = mm(h, p + "attn_v.weight")
        if p + "attn_q.bias" in w:
            q = q + w[p + "attn_q.bias"]
            k = k + w[p + "attn_k.bias"]
            v = v + w[p + "attn_v.bias"]
        if p + "attn_q_norm.weight" in w:  # qwen3: RMSNorm of each head's q and k, before RoPE
            q = rmsnorm(q.reshape(T, H, D), w[p + "attn_q_norm.weight"], eps)
            k = rmsnorm(k.reshape(T, KV, D), w[p + "attn_k_norm.weight"], eps)
        q = apply_rope(q.reshape(T, H, D), pos, inv, cfg["rope_layout"])
        k = apply_rope(k.reshape(T, KV, D), pos, inv, cfg["rope_layout"])
        v = v.reshape(T, KV, D)
        rep = H // KV
        k = np.repeat(k, rep, axis=1)
        v = np.repeat(v, rep, axis=1)
        scores = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(D)
        scores = np.where(allowed[None], scores, -np.inf)
        scores -= scores.max(axis=-1, keepdims=True)
        pr = np.exp(scores)
        pr /= pr.sum(axis=-1, keepdims=True)
        att = np.einsum("hqk,khd->qhd", pr, v).reshape(T, H * D)
        x = x + mm(att, p + "attn_output.weight")
        h = rmsnorm(x, w[p + "ffn_norm.weight"], eps)
        g = mm(h, p + "ffn_gate.weight")
        u = mm(h, p + "ffn_up.weight")
        x = x + mm((g / (1 + np.exp(-g))) * u, p + "ffn_down.weight")
    x = rmsnorm(x, w["output_norm.weight"], eps)
    return mm(x, "output.weight" if "output.weight" in w else "token_embd.weight")


# ---------------------------------------------------------------- GGUF writer

GGUF_U32, GGUF_F32, GGUF_STRING = 4, 6, 8
TYPE_F32, TYPE_F16, TYPE_Q4_0, TYPE_Q8_0, TYPE_BF16 = 0, 1, 2, 8, 30


def to_bf16(a):
    """float32 -> bfloat16 bits (round to nearest even) and their float64 values."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    bits = u.astype(np.uint16)
    return bits, (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def _str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(path, kv, tensors, alignment=32):
    """kv: list of (key, kind, value) with kind 'u32', 'f32' or 'str'.
    tensors: list of (name, ggml_type, numpy array or raw bytes, ne list)."""
    out = bytearray()
    out += struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(kv))
    for key, kind, val in kv:
        out += _str(key)
        if kind == "raw":  # (value type, encoded value bytes) copied from another file
            out += struct.pack("<I", val[0]) + val[1]
        elif kind == "u32":
            out += struct.pack("<II", GGUF_U32, val)
        elif kind == "f32":
            out += struct.pack("<If", GGUF_F32, val)
        else:
            out += struct.pack("<I", GGUF_STRING) + _str(val)
    blobs, off = [], 0
    for name, typ, data, ne in tensors:
        raw = data if isinstance(data, (bytes, bytearray)) else np.ascontiguousarray(data).tobytes()
        out += _str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
        out += struct.pack("<IQ", typ, off)
        blobs.append(raw)
        off += len(raw)
        off = (off + alignment - 1) // alignment * alignment
    while len(out) % alignment:
        out += b"\0"
    for raw in blobs:
        out += raw
        while len(out) % alignment:
            out += b"\0"
    with open(path, "wb") as f:
        f.write(out)


def _gguf_metadata(data):
    """Walks the header and metadata of GGUF bytes (spec: magic, version,
    tensor count, kv count, then key string, uint32 type, value per entry).
    Returns (n_tensors, [(key, type, value start, value end)], offset after
    the metadata)."""
    magic, version, n_tensors, n_kv = struct.unpack_from("<IIQQ", data, 0)
    assert magic == 0x46554747 and version in (2, 3)
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(t, o):
        if t in sizes:
            return o + sizes[t]
        if t == GGUF_STRING:
            return o + 8 + struct.unpack_from("<Q", data, o)[0]
        et, n = struct.unpack_from("<IQ", data, o)
        o += 12
        if et in sizes:
            return o + n * sizes[et]
        for _ in range(n):
            o = skip(et, o)
        return o

    entries, o = [], 24
    for _ in range(n_kv):
        n = struct.unpack_from("<Q", data, o)[0]
        key = data[o + 8:o + 8 + n].decode()
        o += 8 + n
        t = struct.unpack_from("<I", data, o)[0]
        o += 4
        end = skip(t, o)
        entries.append((key, t, o, end))
        o = end
    return n_tensors, entries, o


def read_gguf_kv_raw(path, prefix):
    """The metadata entries of a GGUF file whose key starts with prefix, as
    (key, "raw", (type, bytes)) items for write_gguf."""
    with open(path, "rb") as f:
        data = f.read()
    _, entries, _ = _gguf_metadata(data)
    return [(key, "raw", (t, data[o:end])) for key, t, o, end in entries if key.startswith(prefix)]


def _dequant_q8_0(raw, n):
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 34)
    d = b[:, :2].copy().view(np.float16).astype(np.float64)
    q = b[:, 2:].copy().view(np.int8).astype(np.float64)
    return (d * q).reshape(-1)[:n]


def _dequant_q4_0(raw, n):
    # block: fp16 d, 16 bytes; value j (0..15) = low nibble of byte j, value j+16 = high nibble; (q - 8) * d
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    d = b[:, :2].copy().view(np.float16).astype(np.float64)
    qs = b[:, 2:]
    lo = (qs & 0x0F).astype(np.float64) - 8
    hi = (qs >> 4).astype(np.float64) - 8
    return (d * np.concatenate([lo, hi], axis=1)).reshape(-1)[:n]


DEQUANT = {
    0: lambda raw, n: np.frombuffer(raw, dtype=np.float32)[:n].astype(np.float64),
    1: lambda raw, n: np.frombuffer(raw, dtype=np.float16)[:n].astype(np.float64),
    2: _dequant_q4_0,
    8: _dequant_q8_0,
}
TYPE_BYTES = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34)}  # (block elements, block bytes)


def quantize_q8_0(a):
    """GGUF Q8_0 blocks (fp16 d = max|x|/127, 32 int8) for a float array whose
    size is a multiple of 32: returns (raw bytes, the dequantized float64 values
    in the same shape)."""
    shape = np.shape(a)
    x = np.asarray(a, dtype=np.float32).reshape(-1, 32)
    d = (np.abs(x).max(axis=1) / np.float32(127)).astype(np.float16)
    d32 = d.astype(np.float32)
    inv = np.where(d32 > 0, 1 / np.where(d32 > 0, d32, 1), 0).astype(np.float32)
    q = np.clip(np.rint(x * inv[:, None]), -127, 127).astype(np.int8)
    raw = np.zeros((x.shape[0], 34), dtype=np.uint8)
    raw[:, :2] = d.view(np.uint8).reshape(-1, 2)
    raw[:, 2:] = q.view(np.uint8)
    return raw.tobytes(), _dequant_q8_0(raw.tobytes(), x.size).reshape(shape)


def quantize_q4_0(a):
    """GGUF Q4_0 blocks (fp16 d, 16 bytes of nibbles: value j low nibble of
    byte j, value j+16 high nibble, x = (q - 8) * d)."""
    shape = np.shape(a)
    x = np.asarray(a, dtype=np.float32).reshape(-1, 32)
    d = (np.abs(x).max(axis=1) / np.float32(7)).astype(np.float16)
    d32 = d.astype(np.float32)
    inv = np.where(d32 > 0, 1 / np.where(d32 > 0, d32, 1), 0).astype(np.float32)
    q = (np.clip(np.rint(x * inv[:, None]), -8, 7) + 8).astype(np.uint8)
    raw = np.zeros((x.shape[0], 18), dtype=np.uint8)
    raw[:, :2] = d.view(np.uint8).reshape(-1, 2)
    raw[:, 2:] = q[:, :16] | (q[:, 16:] << 4)
    return raw.tobytes(), _dequant_q4_0(raw.tobytes(), x.size).reshape(shape)


def read_gguf_tensors(path):
    """{name: float64 array of shape (rows, ne0) or (ne0,)} for the F32, F16,
    Q8_0 and Q4_0 tensors of a GGUF file, dequantized from the block layouts of
    the GGUF specification; other types raise."""
    with open(path, "rb") as f:
        data = f.read()
    n_tensors, entries, o = _gguf_metadata(data)
    alignment = 32
    for key, t, start, _ in entries:
        if key == "general.alignment":
            alignment = struct.unpack_from("<I", data, start)[0]
    infos = []
    for _ in range(n_tensors):
        n = struct.unpack_from("<Q", data, o)[0]
        name = data[o + 8:o + 8 + n].decode()
        o += 8 + n
        nd = struct.unpack_from("<I", data, o)[0]
        o += 4
        ne = list(struct.unpack_from("<%dQ" % nd, data, o))
        o += 8 * nd
        typ, off = struct.unpack_from("<IQ", data, o)
        o += 12
        infos.append((name, ne, typ, off))
    base = (o + alignment - 1) // alignment * alignment
    out = {}
    for name, ne, typ, off in infos:
        if typ not in DEQUANT:
            raise ValueError("%s: type %d not handled by the reference" % (name, typ))
        count = int(np.prod(ne))
        be, bb = TYPE_BYTES[typ]
        raw = data[base + off: base + off + count // be * bb]
        a = DEQUANT[typ](raw, count)
        out[name] = a.reshape(ne[::-1]) if len(ne) > 1 else a
    return out


def random_model(cfg, seed, tied=True, bias=False, weight_type=TYPE_F32, attn_gain=1.0, qk_norm=False):
    """Random weights for cfg: returns (weights as float64 dict, GGUF tensor list).
    With weight_type F16 the matrices are stored as F16 and the float64 copies
    are the rounded values (so the reference sees exactly what the file holds).
    attn_gain scales attn_v and attn_output, making the output depend more on
    the context than on the current token. qk_norm adds qwen3's per-head
    attn_q_norm / attn_k_norm vectors (head_dim each)."""
    rng = np.random.default_rng(seed)
    dim, H, KV, D, F, V = cfg["dim"], cfg["n_heads"], cfg["n_kv_heads"], cfg["head_dim"], cfg["ffn"], cfg["vocab"]
    w, tens = {}, []

    def add(name, shape, scale, matrix=True):
        a = (rng.standard_normal(shape) * scale).astype(np.float32)
        if not matrix:
            a = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        if weight_type == TYPE_BF16:  # matrices and vectors alike
            bits, vals = to_bf16(a)
            w[name] = vals
            tens.append((name, TYPE_BF16, bits, list(reversed(shape))))
        elif matrix and weight_type in (8, 2):
            raw, deq = (quantize_q8_0 if weight_type == 8 else quantize_q4_0)(a)
            w[name] = deq.astype(np.float64)
            tens.append((name, weight_type, raw, list(reversed(shape))))
        elif matrix and weight_type == TYPE_F16:
            a16 = a.astype(np.float16)
            w[name] = a16.astype(np.float64)
            tens.append((name, TYPE_F16, a16, list(reversed(shape))))
        else:
            w[name] = a.astype(np.float64)
            tens.append((name, TYPE_F32, a, list(reversed(shape))))

    add("token_embd.weight", (V, dim), 0.5)
    for l in range(cfg["n_layers"]):
        p = "blk.%d." % l
        add(p + "attn_norm.weight", (dim,), 0, matrix=False)
        add(p + "attn_q.weight", (H * D, dim), dim ** -0.5)
        add(p + "attn_k.weight", (KV * D, dim), dim ** -0.5)
        add(p + "attn_v.weight", (KV * D, dim), dim ** -0.5 * math.sqrt(attn_gain))
        if bias:
            for n, m in (("attn_q.bias", H * D), ("attn_k.bias", KV * D), ("attn_v.bias", KV * D)):
                b = (0.2 * rng.standard_normal(m)).astype(np.float32)
                w[p + n] = b.astype(np.float64)
                tens.append((p + n, TYPE_F32, b, [m]))
        if qk_norm:
            add(p + "attn_q_norm.weight", (D,), 0, matrix=False)
            add(p + "attn_k_norm.weight", (D,), 0, matrix=False)
        add(p + "attn_output.weight", (dim, H * D), (H * D) ** -0.5 * math.sqrt(attn_gain))
        add(p + "ffn_norm.weight", (dim,), 0, matrix=False)
        add(p + "ffn_gate.weight", (F, dim), dim ** -0.5)
        add(p + "ffn_up.weight", (F, dim), dim ** -0.5)
        add(p + "ffn_down.weight", (dim, F), F ** -0.5)
    add("output_norm.weight", (dim,), 0, matrix=False)
    if not tied:
        add("output.weight", (V, dim), dim ** -0.5)
    return w, tens


def gguf_kv(cfg, arch):
    kv = [("general.architecture", "str", arch), ("general.name", "str", "fitlm-test-" + arch),
          (arch + ".block_count", "u32", cfg["n_layers"]), (arch + ".embedding_length", "u32", cfg["dim"]),
          (arch + ".feed_forward_length", "u32", cfg["ffn"]), (arch + ".attention.head_count", "u32", cfg["n_heads"]),
          (arch + ".attention.head_count_kv", "u32", cfg["n_kv_heads"]), (arch + ".context_length", "u32", cfg["ctx"]),
          (arch + ".attention.layer_norm_rms_epsilon", "f32", cfg["eps"]),
          (arch + ".rope.freq_base", "f32", cfg["rope_theta"]), (arch + ".vocab_size", "u32", cfg["vocab"])]
    if cfg["head_dim"] * cfg["n_heads"] != cfg["dim"]:
        kv.append((arch + ".attention.key_length", "u32", cfg["head_dim"]))
        kv.append((arch + ".attention.value_length", "u32", cfg["head_dim"]))
    if cfg.get("sliding_window"):
        kv.append((arch + ".attention.sliding_window", "u32", cfg["sliding_window"]))
    sc = cfg.get("rope_scaling")
    if sc:
        kv.append((arch + ".rope.scaling.type", "str", sc["type"]))
        kv.append((arch + ".rope.scaling.factor", "f32", sc["factor"]))
        if sc["type"] == "llama3":
            kv.append((arch + ".rope.scaling.original_context_length", "u32", sc["original_context"]))
            kv.append((arch + ".rope.scaling.low_freq_factor", "f32", sc["low_freq_factor"]))
            kv.append((arch + ".rope.scaling.high_freq_factor", "f32", sc["high_freq_factor"]))
    return kv
