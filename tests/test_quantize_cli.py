"""fitlm quantize, checked from outside: a random-weight GGUF model (written here
with the spec-level writer of tests/pyutil) is quantized to every type, and each
output is read back with an independent numpy GGUF reader and numpy
dequantizers (tests/pyutil/gguf_quants.py, written from the block layouts):
  - every tensor dequantizes to within the type's error bound of the source,
  - tensor names, order and shapes are kept; types follow the scheme (Q4_K_M's
    recipe, 1-D tensors in F32, fallbacks for short rows),
  - every metadata key is carried over, general.file_type is the llama.cpp
    LLAMA_FTYPE id and general.quantization_version is 2,
  - a llama2.c checkpoint gets convert's metadata and names,
  - bad inputs exit 1 with a message and leave no output (or temp) file."""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import gguf_quants as gq  # noqa: E402
import modelfiles as mf  # noqa: E402

mf.GGML_NP[6] = (None, 32, 22)  # Q5_0, which the shared reader does not list

FITLM = os.environ.get("FITLM_BIN", "build/fitlm")
SHARED = os.environ.get("FITLM_SHARED", "../shared")
TMP = os.path.join(os.environ.get("FITLM_TMP", "/tmp"), "test_quantize_cli")
SANITIZED = os.environ.get("FITLM_SANITIZED") == "1"
shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)

failures = 0


def check(cond, msg):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", msg)
    return cond


def run(*args):
    p = subprocess.run([FITLM] + [str(a) for a in args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


# ---------------------------------------------------------------- the source model

L = 8
D = 256
H, KV = 4, 2
HD = D // H
F = 512 if not SANITIZED else 256
V = 320
rng = np.random.default_rng(1234)

FTYPE = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "Q4_K": 14, "Q4_K_M": 15, "Q6_K": 18, "BF16": 32}


def make_source(path, wtype):
    """Returns (tensors dict name -> float32 array as stored, order, kvs)."""
    kvs = [("general.architecture", 8, "llama"), ("general.name", 8, "quant-test"),
           ("general.file_type", 4, 1 if wtype == 1 else 0),
           ("llama.context_length", 4, 128), ("llama.embedding_length", 4, D), ("llama.block_count", 4, L),
           ("llama.feed_forward_length", 4, F), ("llama.attention.head_count", 4, H),
           ("llama.attention.head_count_kv", 4, KV), ("llama.attention.layer_norm_rms_epsilon", 6, 1e-5),
           ("llama.rope.freq_base", 6, 10000.0), ("llama.rope.dimension_count", 4, HD),
           ("fitlm.test.custom", 8, "kept as is"), ("fitlm.test.array", 9, (5, [3, -1, 4, -1, 5])),
           ("tokenizer.ggml.model", 8, "llama"),
           ("tokenizer.ggml.tokens", 9, (8, ["<unk>", "<s>", "</s>"] + ["t%d" % i for i in range(V - 3)])),
           ("tokenizer.ggml.scores", 9, (6, [0.0] * V)),
           ("tokenizer.ggml.token_type", 9, (5, [2, 3, 3] + [1] * (V - 3))),
           ("tokenizer.ggml.bos_token_id", 4, 1), ("tokenizer.ggml.eos_token_id", 4, 2)]
    shapes = [("token_embd.weight", (V, D))]
    for l in range(L):
        shapes += [("blk.%d.attn_norm.weight" % l, (D,)), ("blk.%d.attn_q.weight" % l, (D, D)),
                   ("blk.%d.attn_k.weight" % l, (KV * HD, D)), ("blk.%d.attn_v.weight" % l, (KV * HD, D)),
                   ("blk.%d.attn_output.weight" % l, (D, D)), ("blk.%d.ffn_norm.weight" % l, (D,)),
                   ("blk.%d.ffn_gate.weight" % l, (F, D)), ("blk.%d.ffn_down.weight" % l, (D, F)),
                   ("blk.%d.ffn_up.weight" % l, (F, D))]
    shapes += [("output_norm.weight", (D,)), ("output.weight", (V, D))]
    tensors, out = {}, []
    for name, shape in shapes:
        if len(shape) == 1:
            a = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
            t, raw = 0, a.tobytes()
        else:
            a = (0.02 * rng.standard_normal(shape)).astype(np.float32)
            if name == "blk.1.attn_q.weight":
                a[3, :] = 0.0          # an all-zero row
                a[5, 7] = 0.5          # an outlier
            if wtype == 1:
                a = a.astype(np.float16)
                t, raw = 1, a.tobytes()
                a = a.astype(np.float32)
            elif wtype == 30:
                bits = mf.bf16_bits(a)
                t, raw = 30, bits.tobytes()
                a = (bits.astype(np.uint32) << 16).view(np.float32)
            else:
                t, raw = 0, a.tobytes()
        tensors[name] = a
        out.append((name, t, list(reversed(shape)), raw))
    mf.write_gguf(path, kvs, out)
    return tensors, [s[0] for s in shapes], mf.GGUF(path).kv


def more_bits(l, n):
    return l < n // 8 or l >= 7 * n // 8 or (l - n // 8) % 3 == 2


def expected_type(scheme, name, ndim, row_len, tied=False):
    if ndim == 1:
        return "F32"
    if scheme == "Q4_K_M":
        parts = name.split(".")
        if name == "output.weight" or (tied and name == "token_embd.weight"):
            want = "Q6_K"
        elif parts[0] == "blk" and parts[2] in ("attn_v", "ffn_down") and more_bits(int(parts[1]), LAYERS[0]):
            want = "Q6_K"
        else:
            want = "Q4_K"
    else:
        want = scheme
    bs = gq.TYPES[gq.BY_NAME[want]][1]
    if row_len % bs == 0:
        return want
    if row_len % 32 == 0 and want in ("Q4_K", "Q6_K"):
        return {"Q4_K": "Q5_0", "Q6_K": "Q8_0"}[want]
    return "F16"


LAYERS = [L]

# Relative RMS error bounds (RMSE / RMS of the source tensor) on N(0, 0.02)
# weights, a bit above what fitlm's quantizers measure (see docs/quantization.md).
BOUND = {"F32": 0.0, "F16": 1e-3, "BF16": 3e-3, "Q8_0": 0.006, "Q6_K": 0.019, "Q5_0": 0.045, "Q4_K": 0.078,
         "Q4_0": 0.10}


def rel_rmse(a, b):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    rms = np.sqrt(np.mean(a * a))
    return float(np.sqrt(np.mean((a - b) ** 2)) / rms) if rms > 0 else float(np.max(np.abs(a - b)))


def check_output(path, src, order, src_kv, scheme, label, tied=False, measured=None):
    g = mf.GGUF(path)
    check(g.order == order, "%s: tensor order/names changed" % label)
    for k, v in src_kv.items():
        if k == "general.file_type":
            continue
        check(k in g.kv and g.kv[k] == v, "%s: metadata %s not carried over (%r)" % (label, k, g.kv.get(k)))
    check(g.kv.get("general.file_type") == FTYPE[scheme], "%s: general.file_type %r, expected %d" %
          (label, g.kv.get("general.file_type"), FTYPE[scheme]))
    check(g.kv.get("general.quantization_version") == 2, "%s: general.quantization_version" % label)
    extra = set(g.kv) - set(src_kv) - {"general.quantization_version"}
    check(not extra, "%s: unexpected keys %s" % (label, sorted(extra)))
    worst = {}
    for name in order:
        t = g.tensors[name]
        a = src[name]
        check(t["ne"] == list(reversed(a.shape)), "%s: %s shape %s" % (label, name, t["ne"]))
        tname = gq.TYPES[t["type"]][0]
        exp = expected_type(scheme, name, a.ndim, a.shape[-1], tied)
        check(tname == exp, "%s: %s stored as %s, expected %s" % (label, name, tname, exp))
        x = gq.dequantize(t["type"], t["bytes"], a.size).reshape(a.shape)
        e = rel_rmse(a, x)
        bound = BOUND[tname]
        if tname == "F32":
            check(np.array_equal(x, a), "%s: %s F32 data changed" % (label, name))
        else:
            check(e <= bound, "%s: %s (%s) relative RMSE %.4f > %.4f" % (label, name, tname, e, bound))
        # quantization never blows up a value: max error within a few block steps
        check(np.all(np.isfinite(x)), "%s: %s has non-finite values" % (label, name))
        if a.ndim == 2 and name == "blk.1.attn_q.weight" and tname != "F32":
            check(np.all(x[3] == 0.0), "%s: an all-zero row does not stay zero" % label)
            check(abs(x[5, 7] - 0.5) < 0.06, "%s: outlier 0.5 became %f" % (label, x[5, 7]))
        if a.ndim == 2:
            worst.setdefault(tname, []).append(e)
    if measured is not None:
        for k, v in worst.items():
            measured.setdefault(k, []).extend(v)
    return g


def main():
    # Self-check of the numpy dequantizer on a block built by hand.
    x = (np.arange(64, dtype=np.float32) - 31.5) / 40.0
    y = gq.dequantize(8, gq.quantize_q8_0(x))
    check(np.max(np.abs(x - y)) < 0.5 * np.abs(x).max() / 127 + 1e-3, "numpy Q8_0 round trip")

    measured = {}
    for wtype, wname in ((0, "f32"), (1, "f16"), (30, "bf16")):
        src_path = os.path.join(TMP, "src-%s.gguf" % wname)
        src, order, kv = make_source(src_path, wtype)
        schemes = ["Q8_0", "Q4_0", "Q4_K", "Q6_K", "Q4_K_M", "F16", "BF16", "F32"] if wtype == 1 else ["Q8_0", "Q4_K_M"]
        for scheme in schemes:
            out = os.path.join(TMP, "%s-%s.gguf" % (wname, scheme))
            rc, so, se = run("quantize", src_path, out, scheme, "-t", 2)
            if not check(rc == 0, "quantize %s %s: rc %d: %s" % (wname, scheme, rc, se)):
                continue
            check("bits per weight" in se, "final summary line missing: %s" % se)
            check_output(out, src, order, kv, scheme, "%s->%s" % (wname, scheme), measured=measured)
    for k in sorted(measured):
        v = measured[k]
        print("%-5s relative RMSE: mean %.4f max %.4f over %d matrices" % (k, np.mean(v), np.max(v), len(v)))

    # Case-insensitive type names, progress lines on request.
    src_path = os.path.join(TMP, "src-f16.gguf")
    out = os.path.join(TMP, "progress.gguf")
    rc, so, se = run("quantize", src_path, out, "q4_k_m", "--progress", "-t", "1")
    check(rc == 0, "lower-case type name: %s" % se)
    lines = [l for l in se.splitlines() if l.startswith("[")]
    check(len(lines) == 1 + 9 * L + 2, "one progress line per tensor (%d)" % len(lines))
    check(any("blk.0.attn_q.weight" in l and "F16 -> Q4_K" in l for l in lines), "progress line format: %s" %
          (lines[:3],))
    # One thread and two threads give the same bytes.
    out2 = os.path.join(TMP, "progress2.gguf")
    rc, _, se = run("quantize", src_path, out2, "Q4_K_M", "-t", "2", "-q")
    check(rc == 0 and open(out, "rb").read() == open(out2, "rb").read(), "thread count changes the output")

    # Overrides for the output projection and the embedding table.
    out = os.path.join(TMP, "override.gguf")
    rc, _, se = run("quantize", src_path, out, "Q4_0", "--output-tensor-type", "q8_0", "--token-embedding-type", "F16")
    if check(rc == 0, "overrides: %s" % se):
        g = mf.GGUF(out)
        got = {n: gq.TYPES[g.tensors[n]["type"]][0] for n in ("token_embd.weight", "output.weight",
                                                             "blk.0.attn_q.weight", "blk.0.attn_norm.weight")}
        check(got == {"token_embd.weight": "F16", "output.weight": "Q8_0", "blk.0.attn_q.weight": "Q4_0",
                      "blk.0.attn_norm.weight": "F32"}, "override types %s" % got)
        check(g.kv.get("general.file_type") == FTYPE["Q4_0"], "override: file_type")
    rc, _, se = run("quantize", src_path, out + "2", "Q4_0", "--output-tensor-type", "q2_k")
    check(rc == 1 and "--output-tensor-type" in se and not os.path.exists(out + "2"), "bad override: %s" % se)

    # Values that cannot be stored: a NaN is refused by every conversion, 1e5 by F16
    # (the error names tensor and row); nothing is left behind.
    f32 = os.path.join(TMP, "src-f32.gguf")
    g = mf.GGUF(f32)
    raw = bytearray(open(f32, "rb").read())
    def patched(name, row, value, path):
        t = g.tensors[name]
        pos = t["offset"] + 4 * (row * t["ne"][0] + 7)
        b = bytearray(raw)
        b[pos:pos + 4] = struct.pack("<f", value)
        open(path, "wb").write(bytes(b))
    nan_src, big_src = os.path.join(TMP, "nan.gguf"), os.path.join(TMP, "big.gguf")
    patched("blk.0.ffn_up.weight", 5, float("nan"), nan_src)
    patched("blk.1.attn_k.weight", 2, 1e5, big_src)
    for src_file, scheme, ok, words in ((nan_src, "Q8_0", False, ("blk.0.ffn_up.weight", "row 5", "NaN")),
                                        (nan_src, "F16", False, ("blk.0.ffn_up.weight", "row 5")),
                                        (big_src, "F16", False, ("blk.1.attn_k.weight", "row 2", "F16 range")),
                                        (big_src, "BF16", True, ()), (big_src, "Q8_0", True, ())):
        out = os.path.join(TMP, "bad-values.gguf")
        rc, _, se = run("quantize", src_file, out, scheme, "-q")
        if ok:
            check(rc == 0, "%s %s: %s" % (os.path.basename(src_file), scheme, se))
            os.remove(out)
        else:
            check(rc == 1 and all(w in se for w in words), "%s %s: rc %d %s" % (src_file, scheme, rc, se))
            check(not os.path.exists(out), "%s %s left an output" % (src_file, scheme))

    # Requantizing: refused without the flag, and accepted with it.
    q8 = os.path.join(TMP, "f16-Q8_0.gguf")
    out = os.path.join(TMP, "requant.gguf")
    rc, _, se = run("quantize", q8, out, "Q4_0")
    check(rc == 1 and "fitlm: error:" in se and "--allow-requantize" in se, "requantize refused: %s" % se)
    check(not os.path.exists(out), "no output after a refused requantize")
    rc, _, se = run("quantize", q8, out, "Q4_0", "--allow-requantize")
    if check(rc == 0, "--allow-requantize: %s" % se):
        g8 = mf.GGUF(q8)
        g4 = mf.GGUF(out)
        for name in g8.order:
            t8, t4 = g8.tensors[name], g4.tensors[name]
            a = gq.dequantize(t8["type"], t8["bytes"])
            b = gq.dequantize(t4["type"], t4["bytes"])
            lim = 0.0 if t8["type"] == 0 else BOUND[gq.TYPES[t4["type"]][0]]
            check(rel_rmse(a, b) <= lim + 1e-9, "requantized %s drifts (%.4f)" % (name, rel_rmse(a, b)))

    # A type the kernels cannot dequantize (IQ2_XXS: 256 elements in 66 bytes) is
    # refused even with --allow-requantize, naming the tensor and the type.
    g = mf.GGUF(os.path.join(TMP, "src-f16.gguf"))
    kvs = []
    for k, v in g.kv.items():
        if isinstance(v, str):
            kvs.append((k, 8, v))
        elif isinstance(v, float):
            kvs.append((k, 6, v))
        elif isinstance(v, int):
            kvs.append((k, 4 if v >= 0 else 5, v))
        else:
            kvs.append((k, 9, (8 if isinstance(v[0], str) else 6 if isinstance(v[0], float) else 5, v)))
    ts = []
    for name in g.order:
        t = g.tensors[name]
        if name == "blk.0.attn_q.weight":
            ts.append((name, 16, t["ne"], bytes(t["ne"][0] * t["ne"][1] // 256 * 66)))
        else:
            ts.append((name, t["type"], t["ne"], t["bytes"]))
    iq = os.path.join(TMP, "iq2.gguf")
    mf.write_gguf(iq, kvs, ts)
    out = os.path.join(TMP, "iq2-out.gguf")
    rc, _, se = run("quantize", iq, out, "Q8_0", "--allow-requantize")
    if rc == 0:  # the kernels learned IQ2_XXS: all-zero blocks (scale 0) must come out as zeros
        t = mf.GGUF(out).tensors["blk.0.attn_q.weight"]
        check(not np.any(gq.dequantize(t["type"], t["bytes"])), "IQ2_XXS zeros did not stay zero")
    else:
        check(rc == 1 and "blk.0.attn_q.weight" in se and "IQ2_XXS" in se, "IQ2_XXS source: rc %d %s" % (rc, se))
        check(not os.path.exists(out), "IQ2_XXS source left an output")

    # A llama2.c checkpoint: convert's metadata and names; short rows fall back.
    bin_path = os.path.join(SHARED, "data", "stories260K", "stories260K.bin")
    if os.path.exists(bin_path):
        hdr, w = mf.read_llama2c(bin_path)
        LAYERS[0] = hdr["n_layers"]
        conv = os.path.join(TMP, "stories-f32.gguf")
        rc, _, se = run("convert", bin_path, conv)
        check(rc == 0, "convert stories260K: %s" % se)
        gc = mf.GGUF(conv)
        for scheme in ("Q8_0", "Q4_0", "Q4_K_M"):
            out = os.path.join(TMP, "stories-%s.gguf" % scheme)
            rc, _, se = run("quantize", bin_path, out, scheme)
            if not check(rc == 0, "quantize stories260K %s: %s" % (scheme, se)):
                continue
            check("note:" in se and "ffn_down" in se, "fallback notes expected: %s" % se)
            g = mf.GGUF(out)
            check(g.order == gc.order, "llama2.c: names/order differ from convert's")
            for k, v in gc.kv.items():
                if k != "general.file_type":
                    check(g.kv.get(k) == v, "llama2.c: key %s differs from convert's (%r vs %r)" % (k, g.kv.get(k), v))
            check(g.kv.get("general.file_type") == FTYPE[scheme], "llama2.c: file_type")
            for name in g.order:
                a = gc.array(name).astype(np.float32)
                t = g.tensors[name]
                tname = gq.TYPES[t["type"]][0]
                check(tname == expected_type(scheme, name, a.ndim, a.shape[-1], tied=True),
                      "stories %s: %s is %s" % (scheme, name, tname))
                x = gq.dequantize(t["type"], t["bytes"], a.size).reshape(a.shape)
                # trained weights are not gaussian: allow 1.5x the gaussian bound
                check(rel_rmse(a, x) <= 1.5 * BOUND[tname] + 1e-7, "stories %s: %s (%s) error %.4f" %
                      (scheme, name, tname, rel_rmse(a, x)))
            # the same model from convert's GGUF (the GGUF path, tied detection by the
            # missing output.weight) gives the same tensors and metadata
            out2 = os.path.join(TMP, "stories-gguf-%s.gguf" % scheme)
            rc, _, se = run("quantize", conv, out2, scheme, "-q")
            if check(rc == 0, "quantize converted stories %s: %s" % (scheme, se)):
                g2 = mf.GGUF(out2)
                check(g2.kv == g.kv, "GGUF and llama2.c paths: metadata differs")
                check(g2.order == g.order and all(g2.tensors[n]["type"] == g.tensors[n]["type"] and
                                                  g2.tensors[n]["bytes"] == g.tensors[n]["bytes"] for n in g.order),
                      "GGUF and llama2.c paths: tensors differ")
        # tied embeddings: --output-tensor-type applies to token_embd, the output projection
        out = os.path.join(TMP, "stories-override.gguf")
        rc, _, se = run("quantize", bin_path, out, "Q4_0", "--output-tensor-type", "Q8_0", "-q")
        if check(rc == 0, "stories override: %s" % se):
            t = mf.GGUF(out).tensors["token_embd.weight"]
            check(gq.TYPES[t["type"]][0] == "Q8_0", "tied token_embd ignores --output-tensor-type")
        LAYERS[0] = L
    else:
        print("note: %s missing, llama2.c part skipped" % bin_path)

    # A Hugging Face folder (BF16, q/k in rotate-half order): names, metadata and the
    # q/k row permutation must be those of `fitlm convert`.
    hf = os.path.join(TMP, "hf")
    os.makedirs(hf)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": D,
           "intermediate_size": F, "num_hidden_layers": 2, "num_attention_heads": H, "num_key_value_heads": KV,
           "vocab_size": V, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    open(os.path.join(hf, "config.json"), "w").write(json.dumps(cfg))
    ts = [("model.embed_tokens.weight", (V, D)), ("model.norm.weight", (D,)), ("lm_head.weight", (V, D))]
    for l in range(2):
        p = "model.layers.%d." % l
        ts += [(p + "input_layernorm.weight", (D,)), (p + "post_attention_layernorm.weight", (D,)),
               (p + "self_attn.q_proj.weight", (D, D)), (p + "self_attn.k_proj.weight", (KV * HD, D)),
               (p + "self_attn.v_proj.weight", (KV * HD, D)), (p + "self_attn.o_proj.weight", (D, D)),
               (p + "mlp.gate_proj.weight", (F, D)), (p + "mlp.up_proj.weight", (F, D)),
               (p + "mlp.down_proj.weight", (D, F))]
    mf.write_safetensors(os.path.join(hf, "model.safetensors"),
                         [(n, "BF16", mf.bf16_bits((0.02 if len(sh) == 2 else 1.0) * rng.standard_normal(sh)
                                                   + (0 if len(sh) == 2 else 1.0)))
                          for n, sh in ts])
    conv = os.path.join(TMP, "hf-f32.gguf")
    rc, _, se = run("convert", hf, conv, "--type", "f32")
    if check(rc == 0, "convert HF: %s" % se):
        gc = mf.GGUF(conv)
        for scheme in ("Q8_0", "BF16"):
            out = os.path.join(TMP, "hf-%s.gguf" % scheme)
            rc, _, se = run("quantize", hf, out, scheme)
            if not check(rc == 0, "quantize HF %s: %s" % (scheme, se)):
                continue
            g = mf.GGUF(out)
            check(g.order == gc.order, "HF: names/order differ from convert's: %s" % g.order[:4])
            for k, v in gc.kv.items():
                if k != "general.file_type":
                    check(g.kv.get(k) == v, "HF: key %s differs from convert's" % k)
            check(g.kv.get("general.file_type") == FTYPE[scheme], "HF: file_type")
            for name in g.order:
                a = gc.array(name).astype(np.float32)
                t = g.tensors[name]
                x = gq.dequantize(t["type"], t["bytes"], a.size).reshape(a.shape)
                if scheme == "BF16" or a.ndim == 1:  # the BF16 source comes back exactly
                    check(np.array_equal(a, x), "HF %s: %s differs from convert's" % (scheme, name))
                else:
                    check(rel_rmse(a, x) <= BOUND["Q8_0"], "HF %s: %s error %.4f (q/k rows out of order?)" %
                          (scheme, name, rel_rmse(a, x)))

    # A Qwen2 HF folder: q/k/v biases stay F32, tied embeddings make token_embd the
    # output projection (Q6_K in Q4_K_M), no q/k permutation.
    qw = os.path.join(TMP, "qwen2")
    os.makedirs(qw)
    cfg = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": D, "intermediate_size": F, "num_hidden_layers": 2,
           "num_attention_heads": H, "num_key_value_heads": KV, "vocab_size": V, "max_position_embeddings": 256,
           "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True, "use_sliding_window": False,
           "torch_dtype": "float32"}
    open(os.path.join(qw, "config.json"), "w").write(json.dumps(cfg))
    ts = [("model.embed_tokens.weight", (V, D)), ("model.norm.weight", (D,))]
    for l in range(2):
        p = "model.layers.%d." % l
        ts += [(p + "input_layernorm.weight", (D,)), (p + "post_attention_layernorm.weight", (D,)),
               (p + "self_attn.q_proj.weight", (D, D)), (p + "self_attn.q_proj.bias", (D,)),
               (p + "self_attn.k_proj.weight", (KV * HD, D)), (p + "self_attn.k_proj.bias", (KV * HD,)),
               (p + "self_attn.v_proj.weight", (KV * HD, D)), (p + "self_attn.v_proj.bias", (KV * HD,)),
               (p + "self_attn.o_proj.weight", (D, D)), (p + "mlp.gate_proj.weight", (F, D)),
               (p + "mlp.up_proj.weight", (F, D)), (p + "mlp.down_proj.weight", (D, F))]
    mf.write_safetensors(os.path.join(qw, "model.safetensors"),
                         [(n, "F32", ((0.02 if len(sh) == 2 else 0.1) * rng.standard_normal(sh)).astype(np.float32))
                          for n, sh in ts])
    conv = os.path.join(TMP, "qwen2-f32.gguf")
    out = os.path.join(TMP, "qwen2-Q4_K_M.gguf")
    rc1, _, se1 = run("convert", qw, conv)
    rc2, _, se2 = run("quantize", qw, out, "Q4_K_M")
    if check(rc1 == 0 and rc2 == 0, "qwen2: %s %s" % (se1, se2)):
        gc, g = mf.GGUF(conv), mf.GGUF(out)
        check(g.order == gc.order and "output.weight" not in g.tensors, "qwen2: names/order")
        check(g.kv.get("general.architecture") == "qwen2", "qwen2: architecture")
        LAYERS[0] = 2
        for name in g.order:
            a = gc.array(name).astype(np.float32)
            t = g.tensors[name]
            tname = gq.TYPES[t["type"]][0]
            check(tname == expected_type("Q4_K_M", name, a.ndim, a.shape[-1], tied=True),
                  "qwen2: %s is %s" % (name, tname))
            x = gq.dequantize(t["type"], t["bytes"], a.size).reshape(a.shape)
            check(rel_rmse(a, x) <= BOUND[tname] + 1e-9, "qwen2: %s error %.4f" % (name, rel_rmse(a, x)))
        check(gq.TYPES[g.tensors["token_embd.weight"]["type"]][0] == "Q6_K", "qwen2: tied token_embd not Q6_K")
        LAYERS[0] = L

    # Bad inputs: exit 1, a message, no output file and no temp file left.
    src_path = os.path.join(TMP, "src-f16.gguf")
    bad_dir = os.path.join(TMP, "bad")
    os.makedirs(bad_dir, exist_ok=True)
    out = os.path.join(bad_dir, "out.gguf")
    for args, what in (((src_path, out, "Q3_X"), "Q4_K_M"),
                       ((os.path.join(TMP, "missing.gguf"), out, "Q8_0"), "missing.gguf"),
                       ((src_path, os.path.join(TMP, "no", "such", "dir", "o.gguf"), "Q8_0"), "o.gguf"),
                       ((src_path, out), "expected IN OUT TYPE"),
                       ((src_path, out, "Q8_0", "-t", "0"), "threads"),
                       ((src_path, out, "Q8_0", "--bogus"), "--bogus")):
        rc, so, se = run("quantize", *args)
        check(rc == 1, "%s: exit %d" % (args, rc))
        check(se.startswith("fitlm: error:") and what in se, "%s: message %r" % (args, se))
        check(os.listdir(bad_dir) == [], "%s: left %s behind" % (args, os.listdir(bad_dir)))
    # A truncated source.
    raw = open(src_path, "rb").read()
    trunc = os.path.join(bad_dir, "trunc.gguf")
    open(trunc, "wb").write(raw[:len(raw) // 2])
    rc, _, se = run("quantize", trunc, out, "Q8_0")
    check(rc == 1 and "fitlm: error:" in se and "trunc.gguf" in se, "truncated input: %s" % se)
    check(sorted(os.listdir(bad_dir)) == ["trunc.gguf"], "truncated input left %s" % os.listdir(bad_dir))

    print("test_quantize_cli: %d failure(s)" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
