"""Independent readers/writers for the model file formats, written from the
format descriptions (GGUF spec, huggingface/safetensors README, the llama2.c
run.c layout in shared/data/stories260K/README.md), for checking fitlm's C code.
numpy only."""
import json
import struct

import numpy as np

# ---------------------------------------------------------------- llama2.c

LLAMA2C_FIELDS = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"]


def read_llama2c(path):
    """Returns (header dict, dict of canonical GGUF name -> float32 array in [out][in] row-major form)."""
    raw = open(path, "rb").read()
    h = dict(zip(LLAMA2C_FIELDS, struct.unpack("<7i", raw[:28])))
    shared = h["vocab_size"] > 0
    V = abs(h["vocab_size"])
    D, F, L, H, KV = h["dim"], h["hidden_dim"], h["n_layers"], h["n_heads"], h["n_kv_heads"]
    hd = D // H
    kvd = D * KV // H
    a = np.frombuffer(raw, dtype="<f4", offset=28)
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        out = a[pos:pos + n].reshape(shape)
        pos += n
        return out

    t = {"token_embd.weight": take(V, D)}
    per = [("attn_norm", (D,)), ("attn_q", (D, D)), ("attn_k", (kvd, D)), ("attn_v", (kvd, D)),
           ("attn_output", (D, D)), ("ffn_norm", (D,)), ("ffn_gate", (F, D)), ("ffn_down", (D, F)),
           ("ffn_up", (F, D))]
    for name, shape in per:
        arr = take(L, *shape)
        for l in range(L):
            t["blk.%d.%s.weight" % (l, name)] = arr[l]
    t["output_norm.weight"] = take(D)
    pos += h["seq_len"] * hd  # freq_cis real + imag
    if not shared:
        t["output.weight"] = take(V, D)
    assert pos * 4 + 28 == len(raw), "layout mismatch"
    h["head_dim"] = hd
    return h, t


# ---------------------------------------------------------------- GGUF

GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
GGML_NP = {0: ("<f4", 1, 4), 1: ("<f2", 1, 2), 30: ("<u2", 1, 2), 24: ("<i1", 1, 1), 26: ("<i4", 1, 4),
           8: (None, 32, 34), 2: (None, 32, 18), 12: (None, 256, 144), 14: (None, 256, 210)}


class GGUF:
    def __init__(self, path):
        self.raw = open(path, "rb").read()
        self.pos = 0
        assert self._take(4) == b"GGUF"
        self.version, = self._u("<I")
        n_tensors, n_kv = self._u("<QQ")
        self.kv = {}
        self.kv_types = {}  # key -> (type, array element type or None), for rewriting
        for _ in range(n_kv):
            k = self._str()
            t, = self._u("<I")
            if t == 9:
                et, = struct.unpack("<I", self.raw[self.pos:self.pos + 4])
                self.kv_types[k] = (t, et)
            else:
                self.kv_types[k] = (t, None)
            self.kv[k] = self._val(t)
        self.tensors = {}
        order = []
        for _ in range(n_tensors):
            name = self._str()
            nd, = self._u("<I")
            ne = list(self._u("<%dQ" % nd))
            typ, off = self._u("<IQ")
            order.append((name, ne, typ, off))
        align = self.kv.get("general.alignment", 32)
        self.data_start = (self.pos + align - 1) // align * align
        for name, ne, typ, off in order:
            n = int(np.prod(ne))
            _, bs, bb = GGML_NP[typ]
            nbytes = n // bs * bb
            start = self.data_start + off
            self.tensors[name] = dict(ne=ne, type=typ, offset=start, nbytes=nbytes,
                                      bytes=self.raw[start:start + nbytes])
        self.order = [o[0] for o in order]

    def _take(self, n):
        b = self.raw[self.pos:self.pos + n]
        self.pos += n
        return b

    def _u(self, fmt):
        s = struct.calcsize(fmt)
        v = struct.unpack(fmt, self._take(s))
        return v

    def _str(self):
        n, = self._u("<Q")
        return self._take(n).decode("utf-8")

    def _val(self, t):
        if t in GGUF_SCALAR:
            return self._u(GGUF_SCALAR[t])[0]
        if t == 8:
            return self._str()
        if t == 9:
            et, n = self._u("<IQ")
            return [self._val(et) for _ in range(n)]
        raise ValueError("bad type %d" % t)

    def array(self, name):
        """float32/float16/... numpy array shaped [ne1][ne0] (row-major, rows of ne[0])."""
        t = self.tensors[name]
        dt = GGML_NP[t["type"]][0]
        return np.frombuffer(t["bytes"], dtype=dt).reshape(list(reversed(t["ne"])))


# ---------------------------------------------------------------- safetensors

ST_NP = {"F32": "<f4", "F16": "<f2", "BF16": "<u2", "I32": "<i4", "I8": "<i1", "U8": "<u1", "I64": "<i8",
         "F64": "<f8", "I16": "<i2"}


def read_safetensors(path):
    """Returns dict name -> (dtype string, shape list, numpy array of the raw elements)."""
    raw = open(path, "rb").read()
    n, = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        arr = np.frombuffer(raw[base + b:base + e], dtype=ST_NP[v["dtype"]]).reshape(v["shape"])
        out[k] = (v["dtype"], v["shape"], arr)
    return out


def write_safetensors(path, tensors, header_extra=None):
    """tensors: list of (name, dtype string, numpy array). Contiguous, in order."""
    hdr = {"__metadata__": {"format": "pt"}}
    blobs = []
    pos = 0
    for name, dt, arr in tensors:
        b = np.ascontiguousarray(arr).tobytes()
        hdr[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [pos, pos + len(b)]}
        blobs.append(b)
        pos += len(b)
    if header_extra:
        hdr.update(header_extra)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def bf16_bits(x):
    """float32 -> bfloat16 bit patterns, round to nearest even (NaN quieted)."""
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return r


def hf_permute(w, n_heads):
    """transformers' convert_llama_weights_to_hf.py permute():
    w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)"""
    dim1, dim2 = w.shape
    return w.reshape(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(0, 2, 1, 3).reshape(dim1, dim2)


def write_gguf(path, kvs, tensors, alignment=32):
    """Minimal GGUF v3 writer from the spec. kvs: list of (key, gguf value type, value);
    arrays as (9, (elem_type, list)). tensors: list of (name, ggml type, ne list, bytes)."""
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b

    def val(t, v):
        if t in GGUF_SCALAR:
            return struct.pack(GGUF_SCALAR[t], v)
        if t == 8:
            return s(v)
        et, items = v
        return struct.pack("<IQ", et, len(items)) + b"".join(val(et, x) for x in items)

    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)))
    for k, t, v in kvs:
        out += s(k) + struct.pack("<I", t) + val(t, v)
    off = 0
    offs = []
    for name, typ, ne, data in tensors:
        offs.append(off)
        out += s(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", typ, off)
        off += (len(data) + alignment - 1) // alignment * alignment
    out += b"\0" * ((alignment - len(out) % alignment) % alignment)
    for (name, typ, ne, data), o in zip(tensors, offs):
        out += data + b"\0" * ((alignment - len(data) % alignment) % alignment)
    open(path, "wb").write(bytes(out))


def llama3_inv_freq(head_dim, theta, factor, low, high, orig):
    """transformers' _compute_llama3_parameters (modeling_rope_utils), in numpy float64."""
    inv_freq = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    low_wavelen = orig / low
    high_wavelen = orig / high
    wavelen = 2 * np.pi / inv_freq
    inv_freq_llama = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (orig / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return inv_freq, np.where(medium, smoothed, inv_freq_llama)


def gguf_kv_list(g):
    """A GGUF object's metadata as write_gguf's (key, type, value) list."""
    out = []
    for k, v in g.kv.items():
        t, et = g.kv_types[k]
        out.append((k, t, (et, v) if t == 9 else v))
    return out
