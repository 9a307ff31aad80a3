"""fitlm convert against independent readers: stories260K (llama2.c) -> HF folder
and -> GGUF, and the round trips HF -> GGUF, GGUF -> HF. Checks every tensor's
bytes, the HF q/k permutation against transformers' own permute() expression
(numpy), dtype conversions against numpy's float16 / a bf16 rounding, and the
config.json / GGUF keys against the documented hyperparameters."""
import json
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.environ["FITLM_SRC"], "tests", "pyutil"))
import modelfiles as mf  # noqa: E402
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

BIN = os.environ["FITLM_BIN"]
SHARED = os.environ["FITLM_SHARED"]
TMP = os.path.join(os.environ["FITLM_TMP"], "convert")
SRC = os.path.join(SHARED, "data", "stories260K", "stories260K.bin")


def fitlm(*args):
    return te.run_ok(BIN, *args, timeout=120).stdout


HF_NAMES = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
            "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
            "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def hf_name(gguf_name):
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    if gguf_name == "output.weight":
        return "lm_head.weight"
    _, l, kind, w = gguf_name.split(".")
    return "model.layers.%s.%s.%s" % (l, HF_NAMES[kind], w)


def expected_hf(h, ref, to_dtype=None):
    """What the HF folder must hold: HF names, q/k permuted as transformers does."""
    out = {}
    for name, arr in ref.items():
        a = arr
        if ".attn_q." in name:
            a = mf.hf_permute(arr, h["n_heads"])
        elif ".attn_k." in name:
            a = mf.hf_permute(arr, h["n_kv_heads"])
        out[hf_name(name)] = a
    return out


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    h, ref = mf.read_llama2c(SRC)

    # ---- llama2.c -> HF (f32)
    hf = os.path.join(TMP, "hf")
    fitlm("convert", SRC, hf, "--to", "hf")
    cfg = json.load(open(os.path.join(hf, "config.json")))
    want_cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 172,
                "num_hidden_layers": 5, "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512,
                "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000,
                "tie_word_embeddings": True, "hidden_act": "silu"}
    for k, v in want_cfg.items():
        check(cfg.get(k) == v, "config.json %s = %r, want %r" % (k, cfg.get(k), v))
    st = mf.read_safetensors(os.path.join(hf, "model.safetensors"))
    exp = expected_hf(h, ref)
    check(set(st) == set(exp), "HF tensor names differ: %s" % sorted(set(st) ^ set(exp)))
    for name, a in exp.items():
        if name not in st:
            continue
        dt, shape, arr = st[name]
        check(dt == "F32" and shape == list(a.shape), "%s: %s %s, want F32 %s" % (name, dt, shape, list(a.shape)))
        check(np.array_equal(arr, a), "%s: values differ from the permuted llama2.c tensor" % name)
    # the permutation really moves rows (not a no-op on this model)
    q = st["model.layers.0.self_attn.q_proj.weight"][2]
    check(not np.array_equal(q, ref["blk.0.attn_q.weight"]), "q_proj equals the unpermuted wq")
    check(np.array_equal(q[1], ref["blk.0.attn_q.weight"][2]), "row 1 of head 0 must be adjacent row 2")
    check(np.array_equal(q[4], ref["blk.0.attn_q.weight"][1]), "row d/2 of head 0 must be adjacent row 1")

    # ---- llama2.c -> HF f16 / bf16
    for typ in ("f16", "bf16"):
        d = os.path.join(TMP, "hf-" + typ)
        fitlm("convert", SRC, d, "--to", "hf", "--type", typ)
        st2 = mf.read_safetensors(os.path.join(d, "model.safetensors"))
        cfg2 = json.load(open(os.path.join(d, "config.json")))
        check(cfg2["torch_dtype"] == {"f16": "float16", "bf16": "bfloat16"}[typ], "torch_dtype for " + typ)
        for name, a in exp.items():
            dt, shape, arr = st2[name]
            if typ == "f16":
                ok = dt == "F16" and np.array_equal(arr.view(np.uint16), a.astype(np.float16).view(np.uint16))
            else:
                ok = dt == "BF16" and np.array_equal(arr, mf.bf16_bits(a))
            check(ok, "%s %s: conversion differs from numpy rounding" % (typ, name))

    # ---- llama2.c -> GGUF: identical bytes, documented keys
    gg = os.path.join(TMP, "s.gguf")
    fitlm("convert", SRC, gg)
    g = mf.GGUF(gg)
    want_kv = {"general.architecture": "llama", "llama.block_count": 5, "llama.embedding_length": 64,
               "llama.feed_forward_length": 172, "llama.attention.head_count": 8, "llama.attention.head_count_kv": 4,
               "llama.context_length": 512, "llama.rope.dimension_count": 8, "llama.vocab_size": 512}
    for k, v in want_kv.items():
        check(g.kv.get(k) == v, "GGUF %s = %r, want %r" % (k, g.kv.get(k), v))
    check(abs(g.kv.get("llama.attention.layer_norm_rms_epsilon", 0) - 1e-5) < 1e-9, "GGUF eps")
    check(set(g.tensors) == set(ref), "GGUF tensor names differ: %s" % sorted(set(g.tensors) ^ set(ref)))
    for name, a in ref.items():
        t = g.tensors.get(name)
        if t is None:
            continue
        check(t["type"] == 0 and t["ne"] == list(reversed(a.shape)), "%s: type/shape %s %s" % (name, t["type"], t["ne"]))
        check(t["bytes"] == a.astype("<f4").tobytes(), "%s: GGUF bytes differ from llama2.c" % name)
        check(t["offset"] % 32 == 0, "%s: data not aligned" % name)

    # ---- HF -> GGUF: q/k go back to the adjacent order: identical bytes again
    gg2 = os.path.join(TMP, "from-hf.gguf")
    fitlm("convert", hf, gg2, "--to", "gguf")
    g2 = mf.GGUF(gg2)
    for name, a in ref.items():
        t = g2.tensors.get(name)
        check(t is not None and t["bytes"] == a.astype("<f4").tobytes(), "HF->GGUF %s differs from llama2.c" % name)

    # ---- GGUF -> HF equals llama2.c -> HF
    hf2 = os.path.join(TMP, "hf-from-gguf")
    fitlm("convert", gg, hf2, "--to", "hf")
    st3 = mf.read_safetensors(os.path.join(hf2, "model.safetensors"))
    for name, (dt, shape, arr) in st.items():
        check(name in st3 and np.array_equal(st3[name][2], arr), "GGUF->HF %s differs" % name)

    # ---- converted models inspect with identical hyperparameters
    infos = [json.loads(fitlm("inspect", p, "--json")) for p in (SRC, hf, gg, gg2)]
    for i, info in enumerate(infos):
        hp = dict(info["hparams"])
        ref_hp = dict(infos[0]["hparams"])
        hp.pop("rope_layout")
        ref_layout = ref_hp.pop("rope_layout")
        check(hp == ref_hp, "hparams of output %d differ: %s vs %s" % (i, hp, ref_hp))
        check(info["params"]["from_tensors"] == 260032, "params from tensors %s" % info["params"])
        check(info["n_tensors"] == 47, "n_tensors")
        check(info["weight_bytes"] == 260032 * 4, "weight bytes")
    check(infos[1]["hparams"]["rope_layout"] == "half" and infos[2]["hparams"]["rope_layout"] == "adjacent",
          "rope layouts: HF half, GGUF adjacent")

    # ---- a quantized GGUF (from fitlm quantize) converts to GGUF with identical blocks;
    #      HF cannot hold quantized blocks and says so
    probe = te.run(BIN, "quantize", "--help")
    if "not implemented yet" not in probe.stdout + probe.stderr:
        q8 = os.path.join(TMP, "q8.gguf")
        fitlm("quantize", gg, q8, "Q8_0")
        q8c = os.path.join(TMP, "q8-copy.gguf")
        fitlm("convert", q8, q8c)
        a, b = mf.GGUF(q8), mf.GGUF(q8c)
        check(any(t["type"] == 8 for t in a.tensors.values()), "quantize wrote Q8_0 tensors")
        for name, t in a.tensors.items():
            u = b.tensors.get(name)
            check(u is not None and u["type"] == t["type"] and u["ne"] == t["ne"] and u["bytes"] == t["bytes"],
                  "quantized copy: %s differs" % name)
        r = te.run(BIN, "convert", q8, os.path.join(TMP, "q8-hf"), "--to", "hf")
        check(r.returncode == 1 and "Q8_0" in r.stderr, "quantized -> HF: %r" % r.stderr)
        check(not os.path.exists(os.path.join(TMP, "q8-hf")), "no HF folder after the failure")

    # ---- llama.cpp gguf-split layout: metadata in split 1, split.* keys in every split
    sd = os.path.join(TMP, "split")
    os.makedirs(sd)
    names = g.order
    chunks = [names[:10], names[10:30], names[30:]]
    for i, chunk in enumerate(chunks):
        kvs = (mf.gguf_kv_list(g) if i == 0 else []) + [("split.no", 2, i), ("split.count", 2, 3)]
        if i == 0:
            kvs.append(("split.tensors.count", 5, len(names)))
        tens = [(n, g.tensors[n]["type"], g.tensors[n]["ne"], g.tensors[n]["bytes"]) for n in chunk]
        mf.write_gguf(os.path.join(sd, "s-%05d-of-00003.gguf" % (i + 1)), kvs, tens)
    first = os.path.join(sd, "s-00001-of-00003.gguf")
    info = json.loads(fitlm("inspect", first, "--json"))
    check(info["n_tensors"] == 47 and len(info["files"]) == 3 and info["runnable"], "split inspect: %d tensors, %d files"
          % (info["n_tensors"], len(info["files"])))
    check(info["params"]["from_tensors"] == 260032 and info["hparams"]["n_layers"] == 5, "split params/hparams")
    joined = os.path.join(TMP, "joined.gguf")
    fitlm("convert", first, joined)
    gj = mf.GGUF(joined)
    check(all(gj.tensors[n]["bytes"] == g.tensors[n]["bytes"] for n in names), "split -> single GGUF bytes")
    probe = te.run(BIN, "logits", "--help")
    if "not implemented yet" not in probe.stdout + probe.stderr:
        ids = "1 461 461 401 401"
        a = fitlm("logits", "-m", first, "--ids", ids)
        b = fitlm("logits", "-m", gg, "--ids", ids)
        check(a == b, "split GGUF logits differ from the single file's")
    second = os.path.join(sd, "s-00002-of-00003.gguf")
    r = te.run(BIN, "inspect", second)
    check(r.returncode == 1 and "first" in r.stderr and second in r.stderr, "second split: %r" % r.stderr)
    os.rename(os.path.join(sd, "s-00003-of-00003.gguf"), os.path.join(sd, "moved.gguf"))
    r = te.run(BIN, "inspect", first)
    check(r.returncode == 1 and "s-00003-of-00003.gguf" in r.stderr and r.stderr.startswith("fitlm: error: " + first),
          "missing split: %r" % r.stderr)

    # ---- errors: refusing to overwrite an existing folder, bad --type
    r = te.run(BIN, "convert", SRC, hf, "--to", "hf")
    check(r.returncode == 1 and r.stderr.startswith("fitlm: error: ") and hf in r.stderr, "existing folder: %r" % r.stderr)
    r = te.run(BIN, "convert", SRC, os.path.join(TMP, "x.gguf"), "--type", "q4_0")
    check(r.returncode == 1 and "--type" in r.stderr, "bad --type: %r" % r.stderr)
    check(not os.path.exists(os.path.join(TMP, "x.gguf")), "no output after failure")
    # a NaN in a weight: refused as quantize refuses it, nothing written
    with open(SRC, "rb") as f:
        blob = bytearray(f.read())
    blob[28 + 4 * 1000:28 + 4 * 1001] = struct.pack("<f", float("nan"))  # inside token_embedding
    nan_src = os.path.join(TMP, "nan.bin")
    with open(nan_src, "wb") as f:
        f.write(blob)
    for to in ("gguf", "hf"):
        out = os.path.join(TMP, "nan-out" + (".gguf" if to == "gguf" else ""))
        r = te.run(BIN, "convert", nan_src, out, "--to", to)
        check(r.returncode == 1 and r.stderr.startswith("fitlm: error: ") and "NaN" in r.stderr and
              not os.path.exists(out), "convert --to %s refuses a NaN weight: %r" % (to, r.stderr))
    leftovers = [f for f in os.listdir(TMP) if ".tmp." in f]
    check(not leftovers, "temporary files left: %s" % leftovers)

    return te.report()


if __name__ == "__main__":
    sys.exit(main())
