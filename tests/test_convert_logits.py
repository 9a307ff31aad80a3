"""The converted models compute the same function: a numpy forward pass of
stories260K in llama2.c style (adjacent-pair RoPE) on the original checkpoint
and on fitlm's GGUF conversion, and in transformers style (rotate_half RoPE) on
fitlm's HF conversion, all checked against the reference logits of llama2.c's
run.c in shared/data/stories260K/greedy-bos.txt. This is what makes the q/k
row permutation of `fitlm convert --to hf` right: with the wrong permutation
the HF-style forward diverges from the reference."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.environ["FITLM_SRC"], "tests", "pyutil"))
import modelfiles as mf  # noqa: E402
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

BIN = os.environ["FITLM_BIN"]
SHARED = os.environ["FITLM_SHARED"]
TMP = os.path.join(os.environ["FITLM_TMP"], "convert-logits")
SRC = os.path.join(SHARED, "data", "stories260K", "stories260K.bin")
POSITIONS = 8 if os.environ.get("FITLM_SANITIZED") == "1" else 48


def reference():
    rows = []
    for line in open(os.path.join(SHARED, "data", "stories260K", "greedy-bos.txt")):
        if line.startswith("#") or not line.strip():
            continue
        f = line.split()
        d = dict(pos=int(f[1]), tok=int(f[3]), argmax=int(f[5]), sum=float(f[7]), sumsq=float(f[9]))
        d["top"] = [(int(a), float(b)) for a, b in (x.split(":") for x in f[11:16])]
        rows.append(d)
    return rows


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x) + eps) * w


def rope_adjacent(v, pos, hd, theta):
    out = v.copy()
    for i in range(0, v.size, 2):
        j = i % hd
        a = pos / theta ** (j / hd)
        c, s = np.cos(a), np.sin(a)
        out[i] = v[i] * c - v[i + 1] * s
        out[i + 1] = v[i] * s + v[i + 1] * c
    return out


def rope_half(v, pos, hd, theta):
    """transformers' apply_rotary_pos_emb: x * cos + rotate_half(x) * sin per head."""
    x = v.reshape(-1, hd)
    inv = 1.0 / theta ** (np.arange(0, hd, 2) / hd)
    ang = np.concatenate([pos * inv, pos * inv])
    rot = np.concatenate([-x[:, hd // 2:], x[:, :hd // 2]], axis=1)
    return (x * np.cos(ang) + rot * np.sin(ang)).reshape(-1)


def round_bf16(v):
    """float64 values -> float32 -> bfloat16 (round to nearest even) -> float64:
    what fitlm's BF16 matmuls do to their input activations."""
    u = np.asarray(v, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


def forward(W, hp, tokens, rope, act=None):
    """W: canonical name -> float64 [out][in] arrays. Returns logits per position.
    act, if given, is applied to every matrix product's input vector."""
    if act is None:
        def act(v):
            return v
    D, L, H, KV = hp["dim"], hp["n_layers"], hp["n_heads"], hp["n_kv_heads"]
    hd = D // H
    eps, theta = 1e-5, 10000.0
    kc = [[] for _ in range(L)]
    vc = [[] for _ in range(L)]
    out = []
    wcls = W.get("output.weight", W["token_embd.weight"])
    for pos, tok in enumerate(tokens):
        x = W["token_embd.weight"][tok].copy()
        for l in range(L):
            p = "blk.%d." % l
            xb = rmsnorm(x, W[p + "attn_norm.weight"], eps)
            xa = act(xb)
            q = rope(W[p + "attn_q.weight"] @ xa, pos, hd, theta)
            k = rope(W[p + "attn_k.weight"] @ xa, pos, hd, theta)
            kc[l].append(k)
            vc[l].append(W[p + "attn_v.weight"] @ xa)
            K = np.array(kc[l]).reshape(pos + 1, KV, hd)
            V = np.array(vc[l]).reshape(pos + 1, KV, hd)
            att_out = np.zeros(D)
            for h in range(H):
                g = h // (H // KV)
                sc = K[:, g, :] @ q[h * hd:(h + 1) * hd] / np.sqrt(hd)
                a = np.exp(sc - sc.max())
                a /= a.sum()
                att_out[h * hd:(h + 1) * hd] = a @ V[:, g, :]
            x = x + W[p + "attn_output.weight"] @ act(att_out)
            xb = act(rmsnorm(x, W[p + "ffn_norm.weight"], eps))
            g1 = W[p + "ffn_gate.weight"] @ xb
            hb = g1 / (1 + np.exp(-g1)) * (W[p + "ffn_up.weight"] @ xb)
            x = x + W[p + "ffn_down.weight"] @ act(hb)
        x = rmsnorm(x, W["output_norm.weight"], eps)
        out.append(wcls @ act(x))
    return out


HF_TO_CANON = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
               "lm_head.weight": "output.weight"}
KINDS = {"input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
         "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
         "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}


def canon(hf):
    if hf in HF_TO_CANON:
        return HF_TO_CANON[hf]
    parts = hf.split(".")
    return "blk.%s.%s.weight" % (parts[2], KINDS[".".join(parts[3:-1])])


def compare(name, logits, ref):
    worst = 0.0
    for lg, r in zip(logits, ref):
        for tok, val in r["top"]:
            worst = max(worst, abs(lg[tok] - val))
        check(abs(lg.sum() - r["sum"]) < 2e-2, "%s pos %d: sum %f vs %f" % (name, r["pos"], lg.sum(), r["sum"]))
        check(abs((lg * lg).sum() - r["sumsq"]) < 2e-1, "%s pos %d: sumsq" % (name, r["pos"]))
        top2 = sorted((v for _, v in r["top"]), reverse=True)[:2]
        if top2[0] - top2[1] > 1e-3:
            check(int(np.argmax(lg)) == r["argmax"], "%s pos %d: argmax %d vs %d" % (name, r["pos"], np.argmax(lg),
                                                                                     r["argmax"]))
    check(worst < 1e-3, "%s: top-5 logits differ from llama2.c by up to %g" % (name, worst))
    print("%s: %d positions, max top-5 logit difference %.2e" % (name, len(ref), worst))


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    ref = reference()[:POSITIONS]
    tokens = [r["tok"] for r in ref]
    h, W0 = mf.read_llama2c(SRC)
    hp = {"dim": h["dim"], "n_layers": h["n_layers"], "n_heads": h["n_heads"], "n_kv_heads": h["n_kv_heads"]}
    orig = forward({k: v.astype(np.float64) for k, v in W0.items()}, hp, tokens, rope_adjacent)
    compare("llama2.c checkpoint, adjacent RoPE", orig, ref)

    hf = os.path.join(TMP, "hf")
    subprocess.run([BIN, "convert", SRC, hf, "--to", "hf"], check=True, capture_output=True)
    st = mf.read_safetensors(os.path.join(hf, "model.safetensors"))
    W1 = {canon(n): arr.astype(np.float64) for n, (_, _, arr) in st.items()}
    cfg = json.load(open(os.path.join(hf, "config.json")))
    hp1 = {"dim": cfg["hidden_size"], "n_layers": cfg["num_hidden_layers"], "n_heads": cfg["num_attention_heads"],
           "n_kv_heads": cfg["num_key_value_heads"]}
    half = forward(W1, hp1, tokens, rope_half)
    compare("fitlm HF conversion, rotate_half RoPE", half, ref)
    diff = max(np.max(np.abs(a - b)) for a, b in zip(orig, half))
    check(diff < 1e-9, "HF-style and llama2.c-style logits differ by %g" % diff)
    # the permutation matters: the HF weights under adjacent RoPE do not match
    wrong = forward(W1, hp1, tokens[:3], rope_adjacent)
    check(max(np.max(np.abs(a - b)) for a, b in zip(orig[:3], wrong)) > 1e-3, "RoPE layout has no effect?")

    gg = os.path.join(TMP, "s.gguf")
    subprocess.run([BIN, "convert", hf, gg, "--to", "gguf"], check=True, capture_output=True)
    g = mf.GGUF(gg)
    W2 = {n: g.array(n).astype(np.float64) for n in g.tensors}
    adj = forward(W2, hp, tokens, rope_adjacent)
    diff = max(np.max(np.abs(a - b)) for a, b in zip(orig, adj))
    check(diff == 0.0, "GGUF (via HF) logits differ from the checkpoint's by %g" % diff)

    return te.report()


if __name__ == "__main__":
    sys.exit(main())
