#!/usr/bin/env python3
"""Writes a corpus of malformed Hugging Face folders, safetensors files and
llama2.c checkpoints for fitlm's robustness tests.

Usage: python3 tests/hostile/gen_hf.py OUTDIR

Everything is built from the format descriptions (huggingface/safetensors
README, transformers config.json field names, the llama2.c v0 layout in
shared/data/stories260K/README.md) with the python stdlib only, not with
fitlm's writers. OUTDIR/hf.tsv lists the cases, one per line:

    path<TAB>layer<TAB>what is wrong

path is relative to OUTDIR (a folder for HF cases, a .bin file for llama2.c).
layer is
  safetensors  a folder with a valid config.json whose model.safetensors is
               malformed: the safetensors reader must refuse it;
  config       config.json is wrong (missing/zero/negative/huge/non-integer
               fields, inconsistent heads, unknown architecture, bad JSON);
  model        well-formed files that do not make a model (missing shard or
               tensor, index pointing nowhere, wrong shapes);
  llama2c      a llama2.c checkpoint with a bad header or the wrong size;
  run          well-formed and describable (inspect must accept it), but not
               runnable (run must refuse it);
  ok           valid tiny models: everything must accept them.
Each defective case is a valid tiny model with exactly one defect.
Output is deterministic.
"""
import json
import os
import struct
import sys

TINY = dict(hidden=16, ffn=32, layers=2, heads=4, kv=2, vocab=32, ctx=64)


def f32s(n, seed):
    """n deterministic small floats as little-endian float32 bytes."""
    out = bytearray()
    x = seed * 2654435761 % 2**32
    for _ in range(n):
        x = (1103515245 * x + 12345) % 2**31
        out += struct.pack("<f", (x / 2**31 - 0.5) * 0.2)
    return bytes(out)


def tiny_config(arch="LlamaForCausalLM", **over):
    c = dict(TINY)
    cfg = {
        "architectures": [arch],
        "model_type": {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2"}.get(arch, "x"),
        "hidden_size": c["hidden"], "intermediate_size": c["ffn"], "num_hidden_layers": c["layers"],
        "num_attention_heads": c["heads"], "num_key_value_heads": c["kv"], "vocab_size": c["vocab"],
        "max_position_embeddings": c["ctx"], "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "float32",
    }
    for k, v in over.items():
        if v is DROP:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    return cfg


DROP = object()


def tiny_tensors(qkv_bias=False, tied=False):
    """(HF name, shape [out, in]) for the tiny llama, in a fixed order."""
    h, f, v, kvd = TINY["hidden"], TINY["ffn"], TINY["vocab"], TINY["hidden"] * TINY["kv"] // TINY["heads"]
    t = [("model.embed_tokens.weight", [v, h])]
    for l in range(TINY["layers"]):
        p = "model.layers.%d." % l
        t += [(p + "input_layernorm.weight", [h]), (p + "self_attn.q_proj.weight", [h, h]),
              (p + "self_attn.k_proj.weight", [kvd, h]), (p + "self_attn.v_proj.weight", [kvd, h])]
        if qkv_bias:
            t += [(p + "self_attn.q_proj.bias", [h]), (p + "self_attn.k_proj.bias", [kvd]),
                  (p + "self_attn.v_proj.bias", [kvd])]
        t += [(p + "self_attn.o_proj.weight", [h, h]), (p + "post_attention_layernorm.weight", [h]),
              (p + "mlp.gate_proj.weight", [f, h]), (p + "mlp.up_proj.weight", [f, h]),
              (p + "mlp.down_proj.weight", [h, f])]
    t.append(("model.norm.weight", [h]))
    if not tied:
        t.append(("lm_head.weight", [v, h]))
    return t


def prod(s):
    n = 1
    for d in s:
        n *= d
    return n


def safetensors_bytes(tensors, header_override=None, raw_header=None, data_extra=b"", hlen_override=None,
                      misalign=0):
    """tensors: list of (name, shape); F32 data, contiguous. header_override(dict) may edit the header."""
    hdr = {"__metadata__": {"format": "pt"}}
    data = bytearray()
    for i, (name, shape) in enumerate(tensors):
        b = f32s(prod(shape), i + 1)
        hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    if header_override:
        header_override(hdr)
    h = raw_header if raw_header is not None else json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8 + misalign)
    n = len(h) if hlen_override is None else hlen_override
    return struct.pack("<Q", n & (2**64 - 1)) + h + bytes(data) + data_extra


def write_folder(out, name, cfg=None, files=None, raw_cfg=None):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    if raw_cfg is not None:
        open(os.path.join(d, "config.json"), "wb").write(raw_cfg)
    elif cfg is not None:
        open(os.path.join(d, "config.json"), "w").write(json.dumps(cfg, indent=1))
    for fname, data in (files or {}).items():
        open(os.path.join(d, fname), "wb").write(data if isinstance(data, bytes) else data.encode())


def llama2c_bytes(dim=16, hidden=32, layers=2, heads=4, kv=2, vocab=32, seq=16, truncate=None, extra=b""):
    hdr = struct.pack("<7i", dim, hidden, layers, heads, kv, vocab, seq)
    if min(dim, hidden, layers, heads, kv, seq) <= 0 or dim > 4096 or layers > 64 or abs(vocab) > 4096 or seq > 4096 or \
            heads <= 0 or dim % heads or heads % kv:
        return hdr + f32s(64, 7)  # a body of some size: the header alone is wrong
    v = abs(vocab)
    kvd = dim * kv // heads
    n = v * dim + layers * (dim + dim * dim + 2 * kvd * dim + dim * dim + dim + 3 * hidden * dim) + dim
    n += seq * (dim // heads)
    if vocab < 0:
        n += v * dim
    body = f32s(n, 3)
    if truncate is not None:
        body = body[:truncate]
    return hdr + body + extra


def gguf_bytes(kvs, tensors=()):
    """A small GGUF v3 file (spec layout): kvs are (key, 'u32'|'u16'|'str', value);
    tensors (name, ne list) are F32 zeros, 32-byte aligned."""
    def s(x):
        b = x.encode()
        return struct.pack("<Q", len(b)) + b
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        if t == "u32":
            out += s(k) + struct.pack("<II", 4, v)
        elif t == "u16":
            out += s(k) + struct.pack("<IH", 2, v)
        else:
            out += s(k) + struct.pack("<I", 8) + s(v)
    off = 0
    for name, ne in tensors:
        out += s(name) + struct.pack("<I", len(ne)) + struct.pack("<%dQ" % len(ne), *ne) + struct.pack("<IQ", 0, off)
        off += (4 * prod(ne) + 31) // 32 * 32
    out += b"\0" * ((32 - len(out) % 32) % 32)
    return out + b"\0" * off


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: gen_hf.py OUTDIR\n")
        return 2
    out = argv[1]
    os.makedirs(out, exist_ok=True)
    rows = []

    def add(path, layer, what):
        rows.append((path, layer, what))

    T = tiny_tensors()
    cfg = tiny_config()

    # ---------------- ok
    write_folder(out, "ok-hf-llama", cfg, {"model.safetensors": safetensors_bytes(T)})
    add("ok-hf-llama", "ok", "valid tiny llama HF folder (2 layers, hidden 16, 4 heads, 2 KV heads)")
    half = len(T) // 2
    idx = {"metadata": {"total_size": 4 * sum(prod(s) for _, s in T)},
           "weight_map": {n: ("model-00001-of-00002.safetensors" if i < half else "model-00002-of-00002.safetensors")
                          for i, (n, _) in enumerate(T)}}
    write_folder(out, "ok-hf-sharded", cfg, {
        "model-00001-of-00002.safetensors": safetensors_bytes(T[:half]),
        "model-00002-of-00002.safetensors": safetensors_bytes(T[half:]),
        "model.safetensors.index.json": json.dumps(idx)})
    add("ok-hf-sharded", "ok", "valid tiny llama in two shards with model.safetensors.index.json")
    TQ = tiny_tensors(qkv_bias=True, tied=True)
    write_folder(out, "ok-hf-misaligned", tiny_config(), {"model.safetensors": safetensors_bytes(tiny_tensors(), misalign=2)})
    add("ok-hf-misaligned", "ok", "header padded to 8k+2 bytes: F32 data at offsets that are not multiples of 4 "
        "(copied at load)")
    write_folder(out, "ok-hf-qwen2", tiny_config("Qwen2ForCausalLM", tie_word_embeddings=True),
                 {"model.safetensors": safetensors_bytes(TQ)})
    add("ok-hf-qwen2", "ok", "valid tiny qwen2 (QKV biases, tied embeddings)")
    open(os.path.join(out, "ok-llama2c.bin"), "wb").write(llama2c_bytes())
    add("ok-llama2c.bin", "ok", "valid tiny llama2.c checkpoint (shared classifier)")
    open(os.path.join(out, "ok-llama2c-untied.bin"), "wb").write(llama2c_bytes(vocab=-32))
    add("ok-llama2c-untied.bin", "ok", "valid tiny llama2.c checkpoint with its own classifier (vocab_size < 0)")

    # ---------------- safetensors container defects
    def st_case(name, data, what):
        write_folder(out, name, cfg, {"model.safetensors": data})
        add(name, "safetensors", what)

    good = safetensors_bytes(T)
    st_case("st-header-past-eof", safetensors_bytes(T, hlen_override=len(good)), "header length = file size")
    st_case("st-header-huge", safetensors_bytes(T, hlen_override=2**63 + 5), "header length 2^63+5")
    st_case("st-header-200mb", safetensors_bytes(T, hlen_override=200 * 1000 * 1000), "header length 200 MB")
    st_case("st-too-short", b"\x10\x00\x00", "3-byte file")
    st_case("st-empty", b"", "empty file")
    st_case("st-invalid-json", safetensors_bytes(T, raw_header=b'{"a": {"dtype": "F32", '), "truncated JSON header")
    st_case("st-deep-json", safetensors_bytes([], raw_header=b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"),
            "JSON nested 5000 deep")
    st_case("st-not-object", safetensors_bytes([], raw_header=b"[1, 2, 3]"), "header is a JSON array")

    def edit(fn):
        return lambda h: fn(h)

    first = T[0][0]
    second = T[1][0]
    st_case("st-offsets-past-end", safetensors_bytes(T, edit(lambda h: h["lm_head.weight"].update(
        data_offsets=[h["lm_head.weight"]["data_offsets"][0], h["lm_head.weight"]["data_offsets"][1] + 4]))),
            "last tensor's end offset 4 bytes past the data section")
    st_case("st-offsets-reversed", safetensors_bytes(T, edit(lambda h: h[second].update(
        data_offsets=list(reversed(h[second]["data_offsets"]))))), "data_offsets [end, begin]")
    st_case("st-shape-mismatch", safetensors_bytes(T, edit(lambda h: h[first].update(shape=[TINY["vocab"], 8]))),
            "embed_tokens shape 32x8 but 32x16 floats of data")
    st_case("st-unknown-dtype", safetensors_bytes(T, edit(lambda h: h[first].update(dtype="Q9_Z"))), "dtype Q9_Z")
    st_case("st-dtype-not-string", safetensors_bytes(T, edit(lambda h: h[first].update(dtype=32))), "dtype 32")
    st_case("st-missing-offsets", safetensors_bytes(T, edit(lambda h: h[first].pop("data_offsets"))),
            "no data_offsets")

    def overlap(h):
        a = h[second]["data_offsets"]
        h[second]["data_offsets"] = [a[0] - 8, a[1] - 8]

    st_case("st-overlap", safetensors_bytes(T, edit(overlap)), "second tensor overlaps the first by 8 bytes")
    st_case("st-gap", safetensors_bytes(T, data_extra=b"\0" * 64), "64 bytes after the last tensor belong to none")
    st_case("st-shape-negative", safetensors_bytes(T, edit(lambda h: h[first].update(shape=[-32, -16]))),
            "negative dimensions")
    st_case("st-shape-overflow", safetensors_bytes(T, edit(lambda h: h[first].update(shape=[2**32, 2**32, 2**32]))),
            "element count overflows 64 bits")
    st_case("st-shape-float", safetensors_bytes(T, edit(lambda h: h[first].update(shape=[32.5, 16]))),
            "fractional dimension")
    st_case("st-too-many-dims", safetensors_bytes(T, edit(lambda h: h[first].update(shape=[2, 2, 2, 2, 32]))),
            "5 dimensions")
    st_case("st-offsets-float", safetensors_bytes(T, edit(lambda h: h[first].update(data_offsets=[0.5, 2048.5]))),
            "fractional offsets")
    dup = json.dumps({"__metadata__": {}, "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
    dup = dup[:-1] + ', "x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}'
    st_case("st-duplicate-name", struct.pack("<Q", len(dup)) + dup.encode() + b"\0" * 8, "tensor 'x' listed twice")

    st_case("st-shape-nested", safetensors_bytes(T, edit(lambda h: h[first].update(shape=[[32], [16]]))),
            "shape entries are arrays")
    st_case("st-dtype-lowercase", safetensors_bytes(T, edit(lambda h: h[first].update(dtype="f32"))),
            "dtype 'f32' (dtypes are upper case)")
    hdr_ok = json.dumps({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    st_case("st-trailing-garbage", struct.pack("<Q", len(hdr_ok) + 8) + hdr_ok + b"\0" * 8 + b"\0" * 4,
            "NUL bytes after the header's JSON object")
    bad_name = b'{"x\xff\xfe": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}'
    st_case("st-name-invalid-utf8", struct.pack("<Q", len(bad_name)) + bad_name + b"\0" * 4,
            "tensor name is not UTF-8")
    st_case("st-metadata-array", safetensors_bytes(T, edit(lambda h: h.update(__metadata__=[1, 2]))),
            "__metadata__ is an array")

    # ---------------- model-level defects
    write_folder(out, "hf-missing-shard", cfg, {
        "model-00001-of-00002.safetensors": safetensors_bytes(T[:half]),
        "model.safetensors.index.json": json.dumps(idx)})
    add("hf-missing-shard", "model", "model-00002-of-00002.safetensors is missing")
    idx2 = json.loads(json.dumps(idx))
    idx2["weight_map"]["lm_head.weight"] = "elsewhere.safetensors"
    write_folder(out, "hf-index-missing-file", cfg, {
        "model-00001-of-00002.safetensors": safetensors_bytes(T[:half]),
        "model-00002-of-00002.safetensors": safetensors_bytes(T[half:]),
        "model.safetensors.index.json": json.dumps(idx2)})
    add("hf-index-missing-file", "model", "index maps lm_head.weight to a file that does not exist")
    idx3 = json.loads(json.dumps(idx))
    idx3["weight_map"]["lm_head.weight"] = "../../../etc/passwd"
    write_folder(out, "hf-index-path-escape", cfg, {
        "model-00001-of-00002.safetensors": safetensors_bytes(T[:half]),
        "model-00002-of-00002.safetensors": safetensors_bytes(T[half:]),
        "model.safetensors.index.json": json.dumps(idx3)})
    add("hf-index-path-escape", "model", "index names a shard outside the folder")
    idx4 = json.loads(json.dumps(idx))
    idx4["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors"
    write_folder(out, "hf-index-tensor-absent", cfg, {
        "model-00001-of-00002.safetensors": safetensors_bytes(T[:half]),
        "model-00002-of-00002.safetensors": safetensors_bytes(T[half:]),
        "model.safetensors.index.json": json.dumps(idx4)})
    add("hf-index-tensor-absent", "model", "index lists a tensor its shard does not have")
    write_folder(out, "hf-index-invalid-json", cfg, {
        "model-00001-of-00002.safetensors": safetensors_bytes(T[:half]),
        "model.safetensors.index.json": '{"weight_map": {'})
    add("hf-index-invalid-json", "model", "model.safetensors.index.json is not valid JSON")
    write_folder(out, "hf-duplicate-across-shards", cfg, {
        "model-00001-of-00002.safetensors": safetensors_bytes(T[:half + 1]),
        "model-00002-of-00002.safetensors": safetensors_bytes(T[half:]),
        "model.safetensors.index.json": json.dumps(idx)})
    add("hf-duplicate-across-shards", "model", "one tensor in both shards")
    write_folder(out, "hf-missing-tensor", cfg,
                 {"model.safetensors": safetensors_bytes([t for t in T if "layers.1.mlp.down_proj" not in t[0]])})
    add("hf-missing-tensor", "model", "model.layers.1.mlp.down_proj.weight missing")
    write_folder(out, "hf-missing-lm-head", cfg, {"model.safetensors": safetensors_bytes(T[:-1])})
    add("hf-missing-lm-head", "model", "lm_head.weight missing and tie_word_embeddings false")
    bad_shape = [(n, [s[0], s[1] - 4] if n.endswith("layers.0.self_attn.q_proj.weight") else s) for n, s in T]
    write_folder(out, "hf-shape-q", cfg, {"model.safetensors": safetensors_bytes(bad_shape)})
    add("hf-shape-q", "model", "q_proj is 16x12, hparams imply 16x16")
    bad_shape = [(n, list(reversed(s)) if n.endswith("layers.1.mlp.down_proj.weight") else s) for n, s in T]
    write_folder(out, "hf-shape-down-transposed", cfg, {"model.safetensors": safetensors_bytes(bad_shape)})
    add("hf-shape-down-transposed", "model", "down_proj stored transposed")
    write_folder(out, "hf-qwen2-no-bias", tiny_config("Qwen2ForCausalLM"),
                 {"model.safetensors": safetensors_bytes(T)})
    add("hf-qwen2-no-bias", "model", "qwen2 without the q/k/v biases")
    write_folder(out, "hf-extra-layer", cfg,
                 {"model.safetensors": safetensors_bytes(T + [("model.layers.7.mlp.up_proj.weight", [32, 16])])})
    add("hf-extra-layer", "model", "a tensor for layer 7 of a 2-layer model")

    idx5 = {"metadata": {}, "weight_map": [["lm_head.weight", "model-00001-of-00002.safetensors"]]}
    write_folder(out, "hf-index-weight-map-array", cfg, {
        "model-00001-of-00002.safetensors": safetensors_bytes(T[:half]),
        "model-00002-of-00002.safetensors": safetensors_bytes(T[half:]),
        "model.safetensors.index.json": json.dumps(idx5)})
    add("hf-index-weight-map-array", "model", "weight_map is an array")
    write_folder(out, "hf-shard-is-folder", cfg, {
        "model-00001-of-00002.safetensors": safetensors_bytes(T[:half]),
        "model.safetensors.index.json": json.dumps(idx)})
    os.makedirs(os.path.join(out, "hf-shard-is-folder", "model-00002-of-00002.safetensors"), exist_ok=True)
    add("hf-shard-is-folder", "model", "a shard name is a folder")
    write_folder(out, "hf-int-weights", cfg, {"model.safetensors": safetensors_bytes(T, edit(
        lambda h: h["model.layers.0.mlp.up_proj.weight"].update(dtype="I32")))})
    add("hf-int-weights", "run", "an I32 projection matrix (described by inspect, refused by the runtime)")

    # split GGUF (llama.cpp gguf-split naming and split.* keys)
    def split_file(name, no, count, arch=True):
        kvs = ([("general.architecture", "str", "llama")] if arch else []) + [("split.no", "u16", no),
                                                                              ("split.count", "u16", count)]
        open(os.path.join(out, name), "wb").write(gguf_bytes(kvs, [("t%d" % no, [8])]))

    split_file("split-missing-00001-of-00002.gguf", 0, 2)
    add("split-missing-00001-of-00002.gguf", "model", "split 2 of 2 does not exist")
    split_file("split-second-00001-of-00002.gguf", 0, 2)
    split_file("split-second-00002-of-00002.gguf", 1, 2, arch=False)
    add("split-second-00002-of-00002.gguf", "model", "the second split opened directly")
    split_file("split-badname.gguf", 0, 2)
    add("split-badname.gguf", "model", "split.count 2 but the name has no -00001-of-00002")
    split_file("split-mismatch-00001-of-00002.gguf", 0, 2)
    split_file("split-mismatch-00002-of-00002.gguf", 0, 3, arch=False)
    add("split-mismatch-00001-of-00002.gguf", "model", "split 2 says it is split 1 of 3")
    split_file("split-huge-00001-of-65535.gguf", 0, 65535)
    add("split-huge-00001-of-65535.gguf", "model", "split.count 65535")

    # ---------------- config.json defects
    def cfg_case(name, c, what, raw=None):
        write_folder(out, name, c, {"model.safetensors": good}, raw_cfg=raw)
        add(name, "config", what)

    cfg_case("cfg-missing-hidden", tiny_config(hidden_size=DROP), "no hidden_size")
    cfg_case("cfg-zero-layers", tiny_config(num_hidden_layers=0), "num_hidden_layers 0")
    cfg_case("cfg-negative-heads", tiny_config(num_attention_heads=-4), "num_attention_heads -4")
    cfg_case("cfg-huge-vocab", tiny_config(vocab_size=2**40), "vocab_size 2^40")
    cfg_case("cfg-huge-layers", tiny_config(num_hidden_layers=4000000000), "4e9 layers")
    cfg_case("cfg-heads-not-dividing", tiny_config(num_attention_heads=3, num_key_value_heads=1),
             "3 heads do not divide hidden 16")
    cfg_case("cfg-kv-not-dividing", tiny_config(num_key_value_heads=3), "3 KV heads do not divide 4 heads")
    cfg_case("cfg-kv-zero", tiny_config(num_key_value_heads=0), "num_key_value_heads 0")
    cfg_case("cfg-unknown-arch", tiny_config("GPTBigCodeForCausalLM"), "architecture GPTBigCodeForCausalLM")
    cfg_case("cfg-no-arch", tiny_config(architectures=DROP, model_type=DROP), "no architectures/model_type")
    cfg_case("cfg-string-number", tiny_config(hidden_size="16"), "hidden_size is a string")
    cfg_case("cfg-float-size", tiny_config(intermediate_size=32.5), "intermediate_size 32.5")
    cfg_case("cfg-eps-negative", tiny_config(rms_norm_eps=-1e-5), "rms_norm_eps negative")
    cfg_case("cfg-theta-zero", tiny_config(rope_theta=0), "rope_theta 0")
    cfg_case("cfg-rope-scaling-unknown", tiny_config(rope_scaling={"rope_type": "fancy", "factor": 2.0}),
             "rope_scaling type 'fancy'")
    cfg_case("cfg-llama3-no-orig", tiny_config(rope_scaling={"rope_type": "llama3", "factor": 8.0}),
             "llama3 rope_scaling without original_max_position_embeddings")
    cfg_case("cfg-invalid-json", None, "config.json is not JSON", raw=b'{"hidden_size": 16,,}')
    cfg_case("cfg-deep-json", None, "config.json nested 100000 deep", raw=b"[" * 100000 + b"]" * 100000)
    cfg_case("cfg-not-object", None, "config.json is a number", raw=b"42")
    write_folder(out, "cfg-missing", None, {"model.safetensors": good})
    add("cfg-missing", "config", "no config.json")
    cfg_case("cfg-duplicate-key", None, "hidden_size given twice (16, then 32): Python's json keeps the last",
             raw=json.dumps(tiny_config()).encode().replace(b'"hidden_size": 16', b'"hidden_size": 16, "hidden_size": 32'))
    cfg_case("cfg-duplicate-key-nested", None, "rope_scaling.factor given twice",
             raw=json.dumps(tiny_config(rope_scaling={"rope_type": "linear", "factor": 2.0})).encode().replace(
                 b'"factor": 2.0', b'"factor": 2.0, "factor": 4.0'))
    cfg_case("cfg-eps-zero", tiny_config(rms_norm_eps=0), "rms_norm_eps 0")
    cfg_case("cfg-hidden-act", tiny_config(hidden_act="gelu"), "hidden_act gelu")
    cfg_case("cfg-head-dim-huge", tiny_config(head_dim=1 << 20), "head_dim 2^20")
    cfg_case("cfg-head-dim-odd", tiny_config(head_dim=5), "head_dim 5 (RoPE needs pairs)")
    cfg_case("cfg-rope-factor-negative", tiny_config(rope_scaling={"rope_type": "linear", "factor": -2.0}),
             "linear rope factor -2")
    cfg_case("cfg-llama3-low-above-high", tiny_config(rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0,
        "original_max_position_embeddings": 32}), "llama3 low_freq_factor > high_freq_factor")
    cfg_case("cfg-eps-huge", tiny_config(rms_norm_eps=1e300), "rms_norm_eps 1e300 (not a float)")

    # ---------------- llama2.c defects
    def l2c_case(name, data, what):
        open(os.path.join(out, name), "wb").write(data)
        add(name, "llama2c", what)

    l2c_case("l2c-zero-dim.bin", llama2c_bytes(dim=0), "dim 0")
    l2c_case("l2c-negative-layers.bin", llama2c_bytes(layers=-2), "n_layers -2")
    l2c_case("l2c-huge-dim.bin", llama2c_bytes(dim=2**30), "dim 2^30")
    l2c_case("l2c-huge-vocab.bin", llama2c_bytes(vocab=-(2**31 - 1)), "vocab_size -(2^31-1)")
    l2c_case("l2c-int-min-vocab.bin", llama2c_bytes(vocab=-(2**31)), "vocab_size INT_MIN")
    # without the .bin extension the format is recognized by the header, whose
    # check negated INT_MIN (undefined behaviour; found by fuzz_model)
    l2c_case("l2c-int-min-vocab-noext", llama2c_bytes(vocab=-(2**31)), "vocab_size INT_MIN, no extension")
    l2c_case("l2c-heads-not-dividing.bin", llama2c_bytes(heads=3, kv=1), "3 heads do not divide dim 16")
    l2c_case("l2c-kv-not-dividing.bin", llama2c_bytes(kv=3), "3 KV heads do not divide 4 heads")
    l2c_case("l2c-truncated.bin", llama2c_bytes(truncate=1000), "weights cut off after 1000 bytes")
    l2c_case("l2c-extra-bytes.bin", llama2c_bytes(extra=b"\0" * 12), "12 bytes more than the header implies")
    l2c_case("l2c-untied-missing-classifier.bin", llama2c_bytes(vocab=-32, truncate=4 * (
        32 * 16 + 2 * (16 + 256 + 2 * 128 + 256 + 16 + 3 * 512) + 16 + 16 * 4)), "vocab < 0 but no classifier")
    l2c_case("l2c-header-only.bin", struct.pack("<7i", 16, 32, 2, 4, 2, 32, 16), "the 28-byte header alone")
    l2c_case("l2c-short.bin", b"\x10\x00\x00\x00\x20", "5 bytes")
    l2c_case("l2c-huge-seq.bin", llama2c_bytes(seq=2**30), "seq_len 2^30")
    l2c_case("l2c-odd-head.bin", llama2c_bytes(dim=12, heads=4, kv=2), "head size 3 (odd)")

    with open(os.path.join(out, "hf.tsv"), "w") as m:
        for path, layer, what in rows:
            m.write("%s\t%s\t%s\n" % (path, layer, what))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
