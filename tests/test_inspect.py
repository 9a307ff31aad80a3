"""fitlm inspect (text and --json) against independent readers: the stories260K
layout from its README, the shared vocab-only GGUF files read by a python GGUF
parser, a sharded bf16 HF folder and a GPTQ-style folder written here with a
python safetensors writer."""
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
TMP = os.path.join(os.environ["FITLM_TMP"], "inspect")
SRC = os.path.join(SHARED, "data", "stories260K", "stories260K.bin")


def run(*args):
    return te.run(BIN, *args, timeout=60)


def inspect_json(path):
    r = run("inspect", path, "--json")
    if r.returncode != 0:
        check(False, "inspect --json %s failed: %s" % (path, r.stderr))
        return None
    t = run("inspect", path)
    check(t.returncode == 0 and "format:" in t.stdout, "text inspect of %s" % path)
    return json.loads(r.stdout)


def test_stories():
    h, ref = mf.read_llama2c(SRC)
    j = inspect_json(SRC)
    if not j:
        return
    check(j["schema"] == "fitlm.inspect/1" and j["format"] == "llama2c" and j["arch"] == "llama", "identity")
    want = {"n_layers": 5, "dim": 64, "n_heads": 8, "n_kv_heads": 4, "head_dim": 8, "ffn_dim": 172,
            "vocab_size": 512, "ctx_len": 512, "rope_theta": 10000, "rope_layout": "adjacent",
            "rope_scaling": "none", "sliding_window": 0, "qkv_bias": False, "tied_embeddings": True}
    for k, v in want.items():
        check(j["hparams"].get(k) == v, "stories hparams %s = %r, want %r" % (k, j["hparams"].get(k), v))
    check(abs(j["hparams"]["norm_eps"] - 1e-5) < 1e-10, "eps")
    n = sum(a.size for a in ref.values())
    check(j["params"] == {"from_tensors": n, "from_hparams": n}, "params %s, want %d" % (j["params"], n))
    check(j["n_tensors"] == len(ref) == 47, "n_tensors")
    check(j["weight_bytes"] == 4 * n, "weight_bytes")
    check(j["types"] == [{"type": "F32", "tensors": 47, "elements": n, "bytes": 4 * n}], "types %s" % j["types"])
    check(j["runnable"] is True and j["packed_quant"] is False, "runnable")
    # tensor offsets: recompute from the documented order
    raw = open(SRC, "rb").read()
    for t in j["tensors"]:
        a = ref[t["name"]]
        check(t["ne"] == list(reversed(a.shape)), "%s ne %s" % (t["name"], t["ne"]))
        check(raw[t["offset"]:t["offset"] + t["bytes"]] == a.tobytes(), "%s offset %d" % (t["name"], t["offset"]))


def test_vocab():
    d = os.path.join(SHARED, "data", "vocab")
    for f in sorted(os.listdir(d)):
        if not f.endswith(".gguf"):
            continue
        p = os.path.join(d, f)
        g = mf.GGUF(p)
        j = inspect_json(p)
        if not j:
            continue
        check(j["format"] == "gguf" and j["n_tensors"] == 0 and j["weight_bytes"] == 0, "%s basics" % f)
        check(j["architecture"] == g.kv["general.architecture"], "%s architecture" % f)
        check(j["name"] == g.kv["general.name"], "%s name" % f)
        check(j["gguf"]["version"] == g.version and j["gguf"]["n_kv"] == len(g.kv), "%s version/n_kv" % f)
        check(set(j["gguf"]["metadata"]) == set(g.kv), "%s metadata keys" % f)
        for k, v in g.kv.items():
            got = j["gguf"]["metadata"].get(k)
            t = g.kv_types[k][0]
            if t == 6:  # float32: the shortest decimal that reads back as the same float32
                check(np.float32(got) == np.float32(v) and len(repr(got)) <= 16, "%s %s = %r vs %r" % (f, k, got, v))
            elif t == 9:
                check(got == {"array": {0: "uint8", 4: "uint32", 5: "int32", 6: "float32", 8: "string"}.get(
                    g.kv_types[k][1], got.get("array")), "n": len(v)}, "%s %s = %r" % (f, k, got))
            else:
                check(got == v, "%s %s = %r vs %r" % (f, k, got, v))
        tok = j["tokenizer"]
        check(tok["model"] == g.kv["tokenizer.ggml.model"] and tok["pre"] == g.kv["tokenizer.ggml.pre"],
              "%s tokenizer model/pre" % f)
        check(tok["vocab_size"] == len(g.kv["tokenizer.ggml.tokens"]), "%s vocab size" % f)
        check(tok["bos_id"] == g.kv["tokenizer.ggml.bos_token_id"] and tok["eos_id"] == g.kv["tokenizer.ggml.eos_token_id"],
              "%s bos/eos" % f)
        check(tok.get("loaded") is True and tok.get("n_tokens") == len(g.kv["tokenizer.ggml.tokens"]),
              "%s: fitlm's tokenizer loads it: %s" % (f, tok.get("error")))
        check(tok.get("algorithm") == {"llama": "spm", "gpt2": "bpe"}[g.kv["tokenizer.ggml.model"]], "%s algorithm" % f)
        check(tok.get("add_bos") == g.kv.get("tokenizer.ggml.add_bos_token", tok.get("add_bos")), "%s add_bos" % f)
        if "tokenizer.ggml.merges" in g.kv:
            check(tok["merges"] == len(g.kv["tokenizer.ggml.merges"]), "%s merges" % f)
        arch = g.kv["general.architecture"]
        hp = j["hparams"]
        check(hp.get("n_layers") == g.kv.get(arch + ".block_count"), "%s block_count" % f)
        check(hp.get("dim") == g.kv.get(arch + ".embedding_length"), "%s embedding_length" % f)
        if arch == "llama":
            check(j["hparams_valid"] and j["params"]["from_hparams"] > 0, "%s llama hparams valid" % f)
            check(hp["vocab_size"] == g.kv["llama.vocab_size"], "%s vocab_size" % f)
        else:
            check(not j["hparams_valid"] and j["params"]["from_hparams"] is None, "%s: %s is not runnable" % (f, arch))
        check(j["runnable"] is False, "%s: no weights, not runnable" % f)
        # run mode refuses a vocabulary-only file (convert uses it)
        r = run("convert", p, os.path.join(TMP, "x.gguf"))
        check(r.returncode == 1 and r.stderr.startswith("fitlm: error: " + p), "%s convert: %r" % (f, r.stderr))


def test_hf_sharded_bf16():
    h, ref = mf.read_llama2c(SRC)
    d = os.path.join(TMP, "sharded")
    os.makedirs(d)
    names = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
    kinds = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    tensors = []
    for k, a in ref.items():
        if k in names:
            n = names[k]
        else:
            _, l, kind, _ = k.split(".")
            n = "model.layers.%s.%s.weight" % (l, kinds[kind])
            if kind in ("attn_q", "attn_k"):  # HF stores q/k in rotate-half order
                a = mf.hf_permute(a, h["n_heads"] if kind == "attn_q" else h["n_kv_heads"])
        tensors.append((n, "BF16", mf.bf16_bits(a)))
    tensors.append(("model.layers.0.self_attn.rotary_emb.inv_freq", "F32", np.ones(4, dtype=np.float32)))
    shards = [tensors[:20], tensors[20:35], tensors[35:]]
    wm = {}
    for i, s in enumerate(shards):
        fn = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        mf.write_safetensors(os.path.join(d, fn), s)
        wm.update({n: fn for n, _, _ in s})
    json.dump({"metadata": {}, "weight_map": wm}, open(os.path.join(d, "model.safetensors.index.json"), "w"))
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 5,
           "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 512,
           "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "torch_dtype": "bfloat16"}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    json.dump({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2}, "merges": ["a b"]},
               "added_tokens": [{"id": 3, "content": "<s>"}]}, open(os.path.join(d, "tokenizer.json"), "w"))
    j = inspect_json(d)
    if not j:
        return
    n = sum(a.size for a in ref.values())
    check(j["format"] == "safetensors" and j["arch"] == "llama", "sharded identity")
    check(len(j["files"]) == 3 and j["n_tensors"] == 48, "files %d tensors %d" % (len(j["files"]), j["n_tensors"]))
    check(j["weight_bytes"] == 2 * n + 16, "weight bytes %d" % j["weight_bytes"])
    check(j["params"] == {"from_tensors": n, "from_hparams": n}, "params %s" % j["params"])
    types = {t["type"]: t for t in j["types"]}
    check(types["BF16"]["bytes"] == 2 * n and types["F32"]["bytes"] == 16, "types %s" % j["types"])
    check(j["hparams"]["rope_layout"] == "half" and j["runnable"], "HF layout/runnable")
    tok = j["tokenizer"]
    raw = {k: tok.get(k) for k in ("source", "model", "vocab_size", "added_tokens", "merges")}
    check(raw == {"source": "tokenizer.json", "model": "BPE", "vocab_size": 3, "added_tokens": 1, "merges": 1},
          "tokenizer %s" % tok)
    check(isinstance(tok.get("loaded"), bool) and (tok["loaded"] or tok.get("error")), "tokenizer loaded/error")
    # the config.json path itself opens the folder
    j2 = inspect_json(os.path.join(d, "config.json"))
    check(j2 and j2["n_tensors"] == 48, "config.json path")
    # convert the bf16 shards to GGUF f32: exact widening of the bf16 values
    out = os.path.join(TMP, "sharded.gguf")
    r = run("convert", d, out, "--type", "f32")
    check(r.returncode == 0, "convert sharded: %s" % r.stderr)
    if r.returncode == 0:
        g = mf.GGUF(out)
        for k, a in ref.items():
            widened = (mf.bf16_bits(a).astype(np.uint32) << 16).view(np.float32)
            # q/k: written in HF order here, back in adjacent (llama2.c) order in the GGUF
            got = np.frombuffer(g.tensors[k]["bytes"], dtype="<f4").reshape(a.shape)
            check(np.array_equal(got, widened), "sharded->gguf %s" % k)


def test_gptq():
    d = os.path.join(TMP, "gptq")
    os.makedirs(d)
    D, F, V, G = 64, 128, 32, 32
    rng = np.random.default_rng(1)
    t = [("model.embed_tokens.weight", "F16", rng.standard_normal((V, D)).astype(np.float16)),
         ("model.norm.weight", "F16", np.ones(D, dtype=np.float16)),
         ("lm_head.weight", "F16", rng.standard_normal((V, D)).astype(np.float16))]
    for p, i, o in [("self_attn.q_proj", D, D), ("self_attn.k_proj", D, D // 2), ("self_attn.v_proj", D, D // 2),
                    ("self_attn.o_proj", D, D), ("mlp.gate_proj", D, F), ("mlp.up_proj", D, F), ("mlp.down_proj", F, D)]:
        b = "model.layers.0." + p
        t += [(b + ".qweight", "I32", rng.integers(0, 2**31, (i // 8, o), dtype=np.int32)),
              (b + ".qzeros", "I32", rng.integers(0, 2**31, (i // G, o // 8), dtype=np.int32)),
              (b + ".scales", "F16", rng.standard_normal((i // G, o)).astype(np.float16)),
              (b + ".g_idx", "I32", (np.arange(i) // G).astype(np.int32))]
    t += [("model.layers.0.input_layernorm.weight", "F16", np.ones(D, dtype=np.float16)),
          ("model.layers.0.post_attention_layernorm.weight", "F16", np.ones(D, dtype=np.float16))]
    mf.write_safetensors(os.path.join(d, "model.safetensors"), t)
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": D, "intermediate_size": F, "num_hidden_layers": 1,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": V, "max_position_embeddings": 128,
           "rms_norm_eps": 1e-6, "torch_dtype": "float16",
           "quantization_config": {"bits": 4, "group_size": G, "quant_method": "gptq"}}
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    j = inspect_json(d)
    if not j:
        return
    total = sum(a.nbytes for _, _, a in t)
    check(j["packed_quant"] is True and j["runnable"] is False, "gptq flags")
    check("GPTQ" in j.get("not_runnable_reason", ""), "gptq reason %r" % j.get("not_runnable_reason"))
    check(j["weight_bytes"] == total and j["n_tensors"] == len(t), "gptq bytes %d want %d" % (j["weight_bytes"], total))
    i32 = sum(a.nbytes for _, dt, a in t if dt == "I32")
    types = {x["type"]: x["bytes"] for x in j["types"]}
    check(types.get("I32") == i32, "gptq I32 bytes %s" % types)
    r = run("convert", d, os.path.join(TMP, "gptq.gguf"))
    check(r.returncode == 1 and "GPTQ" in r.stderr and r.stderr.startswith("fitlm: error: " + d), "gptq convert %r" % r.stderr)


def test_non_utf8():
    # GGUF strings need not be UTF-8; --json must still be valid JSON (U+FFFD)
    p = os.path.join(TMP, "latin1.gguf")
    mf.write_gguf(p, [("general.architecture", 8, "gpt2"), ("general.name", 8, "caf\u00e9")], [])
    raw = open(p, "rb").read().replace("caf\u00e9".encode(), b"caf\xe9\xc3")  # latin-1 e-acute + a lone lead byte
    open(p, "wb").write(raw)
    r = subprocess.run([BIN, "inspect", p, "--json"], capture_output=True, timeout=60)
    check(r.returncode == 0, "non-UTF-8 name: %r" % r.stderr)
    try:
        j = json.loads(r.stdout.decode("utf-8"))
        check(j["name"] == "caf\ufffd\ufffd", "name %r" % j["name"])
    except (UnicodeDecodeError, ValueError) as e:
        check(False, "--json output is not UTF-8 JSON: %s" % e)


def test_errors():
    r = run("inspect", os.path.join(TMP, "does-not-exist.gguf"))
    check(r.returncode == 1 and r.stderr.startswith("fitlm: error: " + os.path.join(TMP, "does-not-exist.gguf")),
          "missing file: %r" % r.stderr)
    r = run("inspect", SRC, "--bogus")
    check(r.returncode == 1 and r.stderr.startswith("fitlm: error: "), "bad option: %r" % r.stderr)
    r = run("inspect")
    check(r.returncode == 1, "no path")
    notes = os.path.join(TMP, "notes.txt")
    open(notes, "w").write("just some text, not a model at all\n")
    r = run("inspect", notes)
    check(r.returncode == 1 and "unrecognized model file" in r.stderr and notes in r.stderr, "text file: %r" % r.stderr)


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    test_stories()
    test_vocab()
    test_hf_sharded_bf16()
    test_gptq()
    test_non_utf8()
    test_errors()
    return te.report()


if __name__ == "__main__":
    sys.exit(main())
