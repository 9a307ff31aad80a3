#!/usr/bin/python3
"""Writes a random-weight Llama model as an F16 GGUF file, for benchmarks.

    python3 bench/make_model.py OUT.gguf [--preset tinyllama|small|llama3-8b] [--seed N]

Default preset: the shape of TinyLlama 1.1B (22 layers, hidden 2048, 32 heads,
4 KV heads, FFN 5632, vocabulary 32000, context 2048); llama3-8b has the shape
of Llama 3 8B (32 layers, hidden 4096, 32 heads, 8 KV heads, FFN 14336,
vocabulary 128256; a 16 GB F16 file). Weight matrices are
N(0, 0.02) in F16, norms 1.0 in F32, untied output. The F16 values are
bfloat16 values (rounded to bfloat16 first), as in the F16 files converted from
the bfloat16 checkpoints most models are published in; --full-f16 keeps all
11 significant bits (an F16 file of a float32-trained model). The file carries a minimal
but valid SentencePiece-style ("llama") vocabulary: <unk> <s> </s>, the 256
byte tokens <0x00>..<0xFF>, then filler pieces, so `fitlm run` can tokenize.

The GGUF layout (v3, little-endian, 32-byte alignment) is written from the GGUF
spec, streaming one tensor at a time (memory stays at one tensor). numpy only.
"""
import argparse
import struct
import sys

import numpy as np

PRESETS = {
    "tinyllama": dict(n_layers=22, dim=2048, n_heads=32, n_kv_heads=4, ffn=5632, vocab=32000, ctx=2048),
    "small": dict(n_layers=2, dim=256, n_heads=4, n_kv_heads=2, ffn=512, vocab=512, ctx=256),
    "llama3-8b": dict(n_layers=32, dim=4096, n_heads=32, n_kv_heads=8, ffn=14336, vocab=128256, ctx=8192),
}
ALIGN = 32

# GGUF metadata value types
U32, I32, F32T, BOOL, STR, ARR = 4, 5, 6, 7, 8, 9
# ggml tensor types
GGML_F32, GGML_F16 = 0, 1


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, value):
    out = gguf_str(key) + struct.pack("<I", vtype)
    if vtype == U32:
        return out + struct.pack("<I", value)
    if vtype == I32:
        return out + struct.pack("<i", value)
    if vtype == F32T:
        return out + struct.pack("<f", value)
    if vtype == BOOL:
        return out + struct.pack("<B", 1 if value else 0)
    if vtype == STR:
        return out + gguf_str(value)
    etype, items = value
    out += struct.pack("<IQ", etype, len(items))
    if etype == STR:
        return out + b"".join(gguf_str(x) for x in items)
    fmt = {U32: "<%dI", I32: "<%di", F32T: "<%df"}[etype]
    return out + struct.pack(fmt % len(items), *items)


def vocabulary(n):
    """<unk>, <s>, </s>, 256 byte tokens, then distinct filler pieces."""
    tokens = ["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256)]
    types = [2, 3, 3] + [6] * 256  # unknown, control, control, byte
    letters = "etaoinshrdlucmfwypvbgkqjxz"
    pieces = ["\u2581"] + list(letters) + ["\u2581" + c for c in letters]
    k = 2
    while len(tokens) + len(pieces) < n:
        for i in range(len(letters) ** k):
            w, j = "", i
            for _ in range(k):
                w += letters[j % len(letters)]
                j //= len(letters)
            pieces.append("\u2581" + w)
            pieces.append(w)
            if len(tokens) + len(pieces) >= n:
                break
        k += 1
    tokens += pieces[:n - len(tokens)]
    types += [1] * (n - len(types))
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(i) for i in range(n - 259)]
    return tokens, scores, types


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--preset", default="tinyllama", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full-f16", action="store_true", help="F16 values not rounded to bfloat16 first")
    a = ap.parse_args()
    p = PRESETS[a.preset]
    L, D, H, KV, F, V = p["n_layers"], p["dim"], p["n_heads"], p["n_kv_heads"], p["ffn"], p["vocab"]
    hd = D // H
    tokens, scores, types = vocabulary(V)
    kvs = [
        gguf_kv("general.architecture", STR, "llama"),
        gguf_kv("general.name", STR, "random-%s" % a.preset),
        gguf_kv("general.file_type", U32, 1),
        gguf_kv("llama.context_length", U32, p["ctx"]),
        gguf_kv("llama.embedding_length", U32, D),
        gguf_kv("llama.block_count", U32, L),
        gguf_kv("llama.feed_forward_length", U32, F),
        gguf_kv("llama.attention.head_count", U32, H),
        gguf_kv("llama.attention.head_count_kv", U32, KV),
        gguf_kv("llama.attention.layer_norm_rms_epsilon", F32T, 1e-5),
        gguf_kv("llama.rope.freq_base", F32T, 10000.0),
        gguf_kv("llama.rope.dimension_count", U32, hd),
        gguf_kv("llama.vocab_size", U32, V),
        gguf_kv("tokenizer.ggml.model", STR, "llama"),
        gguf_kv("tokenizer.ggml.tokens", ARR, (STR, tokens)),
        gguf_kv("tokenizer.ggml.scores", ARR, (F32T, scores)),
        gguf_kv("tokenizer.ggml.token_type", ARR, (I32, types)),
        gguf_kv("tokenizer.ggml.bos_token_id", U32, 1),
        gguf_kv("tokenizer.ggml.eos_token_id", U32, 2),
        gguf_kv("tokenizer.ggml.unknown_token_id", U32, 0),
        gguf_kv("tokenizer.ggml.add_bos_token", BOOL, True),
    ]
    # tensors: (name, numpy shape [rows, cols] or [n], ggml type)
    tensors = [("token_embd.weight", (V, D), GGML_F16)]
    for l in range(L):
        b = "blk.%d." % l
        tensors += [(b + "attn_norm.weight", (D,), GGML_F32), (b + "attn_q.weight", (D, D), GGML_F16),
                    (b + "attn_k.weight", (KV * hd, D), GGML_F16), (b + "attn_v.weight", (KV * hd, D), GGML_F16),
                    (b + "attn_output.weight", (D, D), GGML_F16), (b + "ffn_norm.weight", (D,), GGML_F32),
                    (b + "ffn_gate.weight", (F, D), GGML_F16), (b + "ffn_down.weight", (D, F), GGML_F16),
                    (b + "ffn_up.weight", (F, D), GGML_F16)]
    tensors += [("output_norm.weight", (D,), GGML_F32), ("output.weight", (V, D), GGML_F16)]

    infos, offset = b"", 0
    for name, shape, t in tensors:
        n = int(np.prod(shape))
        infos += gguf_str(name) + struct.pack("<I", len(shape)) + struct.pack("<%dQ" % len(shape), *reversed(shape))
        infos += struct.pack("<IQ", t, offset)
        nbytes = n * (4 if t == GGML_F32 else 2)
        offset += (nbytes + ALIGN - 1) // ALIGN * ALIGN
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + infos
    head += b"\0" * ((ALIGN - len(head) % ALIGN) % ALIGN)

    rng = np.random.default_rng(a.seed)
    total = 0
    with open(a.out, "wb") as f:
        f.write(head)
        for name, shape, t in tensors:
            if t == GGML_F32:
                data = np.ones(shape, dtype="<f4").tobytes()
            else:
                x = rng.standard_normal(shape, dtype=np.float32)
                x *= 0.02
                if not a.full_f16:  # round to nearest even bfloat16 (exact in F16, see above)
                    b = x.view(np.uint32)
                    b += np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))
                    b &= np.uint32(0xFFFF0000)
                data = x.astype("<f2").tobytes()
            f.write(data)
            f.write(b"\0" * ((ALIGN - len(data) % ALIGN) % ALIGN))
            total += int(np.prod(shape))
    print("wrote %s: %s preset, %.3f B parameters, %.2f GB" % (a.out, a.preset, total / 1e9,
                                                                (len(head) + offset) / 1e9), file=sys.stderr)


if __name__ == "__main__":
    main()
