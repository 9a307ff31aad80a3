"""Random-weight tiny models in GGUF against the independent numpy forward pass
of tests/ref/forward.py:

  - qwen2: QKV biases, rotate-half RoPE, theta 1e6, untied output;
  - qwen3: per-head RMSNorm of q and k before RoPE, head_dim 32 != dim/heads,
    F32 untied (also through fitlm convert) and Q8_0 tied;
  - mistral ("llama" + attention.sliding_window 5, smaller than the 24-token
    sequence), tied output;
  - llama with Llama 3.1 RoPE scaling and with linear scaling;
  - llama with F16, BF16 (norm vectors too, tied), Q8_0 (untied) and qwen2 with Q4_0 (tied) weight matrices;
    for Q8_0/Q4_0 the reference rounds each matmul's input to 8-bit blocks of
    32 as the CPU kernels document they do, for BF16 to bfloat16.
Logits at every position must agree within 1e-4 relative (to the position's
largest |logit|; BF16, whose matmuls round their inputs to bfloat16 and which
the reference emulates, 1e-2: see case()), for the batched prefill and for one-token decode, with an F32
KV cache; qwen2 and mistral also after `fitlm convert` to GGUF (the project's
GGUF writer) and to a Hugging Face folder. Then models that load but cannot run must be refused before
generating: an unsupported weight type (IQ2_XXS), a qwen2 without its biases, a qwen3 without attn_k_norm, a
quantized norm vector, an unknown architecture, and an oversized context.
"""
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import forward as ref  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM = te.require_env("FITLM_BIN")
TMP = te.tmp_dir()



def fitlm(*args):
    return te.run(FITLM, *args)


def logits_of(path, ids, vocab, *extra):
    p = fitlm("logits", "-m", path, "--ids", " ".join(map(str, ids)), "--top", str(vocab), "--kv-type", "f32",
              "-t", "2", *extra)
    if p.returncode != 0:
        return None, p.stderr
    out = np.zeros((len(ids), vocab))
    for t, line in enumerate(p.stdout.splitlines()):
        for item in line.split()[11:]:
            i, v = item.split(":")
            out[t, int(i)] = float(v)
    return out, ""


BASE = dict(n_layers=2, dim=64, n_heads=4, n_kv_heads=2, head_dim=16, ffn=96, vocab=97, ctx=64, eps=1e-5,
            rope_theta=10000.0)
T = 24


def compare(name, label, path, ids, want, vocab, *extra, tol=1e-4):
    got, errtext = logits_of(path, ids, vocab, *extra)
    check(got is not None, "%s %s: fitlm failed: %s" % (name, label, errtext))
    if got is None:
        return
    scale = np.abs(want).max(axis=1, keepdims=True)
    rel = (np.abs(got - want) / scale).max()
    print("%-14s %-8s max relative logit error %.2e" % (name, label, rel))
    check(rel <= tol, "%s %s: relative error %g > %g" % (name, label, rel, tol))


def case(name, arch, cfg, tied=True, bias=False, weight_type=ref.TYPE_F32, seed=1, convert=False, qk_norm=False):
    w, tens = ref.random_model(cfg, seed, tied=tied, bias=bias, weight_type=weight_type, qk_norm=qk_norm)
    path = os.path.join(TMP, "rt-%s.gguf" % name)
    ref.write_gguf(path, ref.gguf_kv(cfg, arch), tens)
    ids = list(np.random.default_rng(seed + 100).integers(0, cfg["vocab"], T))
    # Q8_0/Q4_0 matmuls see 8-bit activations (the kernels' documented scheme)
    qact = {n for n, t, _, ne in tens if t in (ref.TYPE_Q8_0, ref.TYPE_Q4_0) and len(ne) == 2}
    bact = {n for n, t, _, ne in tens if t == ref.TYPE_BF16 and len(ne) == 2}  # and bfloat16 ones
    want = ref.forward(cfg, w, np.array(ids), qact=qact, bact=bact)
    # bfloat16 activations: float32-vs-float64 differences of ~1e-7 put the odd
    # activation on the other side of a rounding boundary 2^-8 apart (about one
    # such flip per run at these sizes, a few 1e-3 of the logits each)
    tol = 1e-2 if bact else 1e-4
    for extra, label in (((), "prefill"), (("--batch", "1"), "decode"), (("--batch", "5"), "ubatch5")):
        compare(name, label, path, ids, want, cfg["vocab"], *extra, tol=tol)
    if convert:
        # through the project's own writers: fitlm convert to GGUF (C GGUF writer)
        # and to a Hugging Face folder (safetensors; q/k rows permuted for llama)
        for fmt in ("gguf", "hf"):
            out = os.path.join(TMP, "rt-%s-conv-%s" % (name, fmt)) + (".gguf" if fmt == "gguf" else "")
            if os.path.isdir(out):
                shutil.rmtree(out)
            elif os.path.exists(out):
                os.remove(out)
            p = fitlm("convert", path, out, "--to", fmt)
            check(p.returncode == 0, "%s: convert --to %s: %s" % (name, fmt, p.stderr.strip()))
            if p.returncode == 0:
                compare(name, "via-" + fmt, out, ids, want, cfg["vocab"])
    return path


qwen = dict(BASE, rope_theta=1e6, eps=1e-6, rope_layout="half")
case("qwen2", "qwen2", qwen, tied=False, bias=True, convert=True)
mistral = dict(BASE, rope_layout="adjacent", sliding_window=5)
case("mistral", "llama", mistral, tied=True, convert=True)
llama31 = dict(BASE, rope_layout="adjacent", rope_theta=500000.0,
               rope_scaling=dict(type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                 original_context=16))
case("llama31", "llama", llama31, tied=False)
linear = dict(BASE, rope_layout="adjacent", rope_scaling=dict(type="linear", factor=4.0))
case("llama-linear", "llama", linear)
case("llama-f16", "llama", dict(BASE, rope_layout="adjacent"), weight_type=ref.TYPE_F16, tied=False)
case("llama-bf16", "llama", dict(BASE, rope_layout="adjacent"), weight_type=ref.TYPE_BF16)  # BF16 norms too
case("llama-q8_0", "llama", dict(BASE, rope_layout="adjacent"), weight_type=ref.TYPE_Q8_0, tied=False)
case("qwen2-q4_0", "qwen2", qwen, weight_type=ref.TYPE_Q4_0, bias=True)  # tied Q4_0 embedding + output
# qwen3: no biases, per-head RMSNorm of q and k before RoPE; head_dim 32 != dim / n_heads, as in Qwen3 models
qwen3 = dict(qwen, head_dim=32)
case("qwen3", "qwen3", qwen3, tied=False, qk_norm=True, convert=True)
case("qwen3-q8_0", "qwen3", qwen3, weight_type=ref.TYPE_Q8_0, qk_norm=True)  # tied Q8_0 embedding + output

# ---- models that must be refused before generating ----


def refused(path, expect, *args):
    p = fitlm("run", "-m", path, "--ids", "1 2 3", "-n", "4", *args)
    ok = p.returncode == 1 and p.stderr.startswith("fitlm: error: ") and expect in p.stderr and p.stdout == ""
    check(ok, "%s: rc %d stderr %r (expected %r)" % (os.path.basename(path), p.returncode, p.stderr.strip(), expect))


big = dict(BASE, dim=256, n_heads=4, n_kv_heads=4, head_dim=64, ffn=256, vocab=32, n_layers=1, rope_layout="adjacent")
w, tens = ref.random_model(big, 5)
tens = [(n, 16, bytes(66 * 256), ne) if n == "blk.0.attn_q.weight" else (n, t, d, ne) for n, t, d, ne in tens]
path = os.path.join(TMP, "rt-iq2.gguf")
ref.write_gguf(path, ref.gguf_kv(big, "llama"), tens)
refused(path, "tensor blk.0.attn_q.weight has type IQ2_XXS, which the CPU backend cannot run")

w, tens = ref.random_model(dict(qwen), 6, bias=False)
path = os.path.join(TMP, "rt-qwen-nobias.gguf")
ref.write_gguf(path, ref.gguf_kv(qwen, "qwen2"), tens)
refused(path, "attn_q.bias")

w, tens = ref.random_model(dict(qwen3), 6, qk_norm=True)
tens = [x for x in tens if not x[0].endswith("attn_k_norm.weight")]
path = os.path.join(TMP, "rt-qwen3-noknorm.gguf")
ref.write_gguf(path, ref.gguf_kv(qwen3, "qwen3"), tens)
refused(path, "attn_k_norm")

small = dict(BASE, rope_layout="adjacent")
w, tens = ref.random_model(small, 7)
# attn_norm as Q8_0: 64 values = 2 blocks of 34 bytes
tens = [(n, 8, bytes(68), ne) if n == "blk.1.attn_norm.weight" else (n, t, d, ne) for n, t, d, ne in tens]
path = os.path.join(TMP, "rt-q8norm.gguf")
ref.write_gguf(path, ref.gguf_kv(small, "llama"), tens)
refused(path, "blk.1.attn_norm.weight")

w, tens = ref.random_model(small, 8)
path = os.path.join(TMP, "rt-gpt2.gguf")
ref.write_gguf(path, ref.gguf_kv(small, "gpt2"), tens)
p = fitlm("run", "-m", path, "--ids", "1 2 3", "-n", "4")
check(p.returncode == 1 and p.stderr.startswith("fitlm: error: "), "unknown architecture refused: %r" % p.stderr)

path = os.path.join(TMP, "rt-mistral.gguf")
refused(path, "context", "-c", "65")  # the model's context is 64
p = fitlm("logits", "-m", path, "--ids", " ".join(["3"] * 40), "-c", "32")
check(p.returncode == 1 and "context" in p.stderr, "logits beyond -c refused: %r" % p.stderr)

sys.exit(te.report())
