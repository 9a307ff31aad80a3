"""fitlm convert/inspect for the architecture-specific paths, on tiny random
models written here with independent python writers:
  - Qwen2 (QKV biases, tied embeddings, rotate-half in both formats: no permutation),
  - Llama 3.1 rope scaling (rope_freqs.weight against transformers'
    _compute_llama3_parameters in numpy; q/k permuted HF -> GGUF and back),
  - a llama.cpp-style Llama 3.1 GGUF (rope_freqs only, no factor keys),
  - Mistral sliding window through GGUF and back."""
import json
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.environ["FITLM_SRC"], "tests", "pyutil"))
import modelfiles as mf  # noqa: E402
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

BIN = os.environ["FITLM_BIN"]
TMP = os.path.join(os.environ["FITLM_TMP"], "convert-archs")


def fitlm(*args, ok=True):
    return (te.run_ok if ok else te.run)(BIN, *args, timeout=120)


def hf_model(d, cfg, dtype, rng, bias=False, tied=False):
    D, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or D // H
    npdt = {"F32": np.float32, "F16": np.float16}[dtype]

    def w(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(npdt)

    t = [("model.embed_tokens.weight", dtype, w(V, D))]
    for l in range(L):
        p = "model.layers.%d." % l
        t += [(p + "input_layernorm.weight", dtype, w(D)), (p + "self_attn.q_proj.weight", dtype, w(H * hd, D)),
              (p + "self_attn.k_proj.weight", dtype, w(KV * hd, D)), (p + "self_attn.v_proj.weight", dtype, w(KV * hd, D))]
        if bias:
            t += [(p + "self_attn.q_proj.bias", dtype, w(H * hd)), (p + "self_attn.k_proj.bias", dtype, w(KV * hd)),
                  (p + "self_attn.v_proj.bias", dtype, w(KV * hd))]
        t += [(p + "self_attn.o_proj.weight", dtype, w(D, H * hd)), (p + "post_attention_layernorm.weight", dtype, w(D)),
              (p + "mlp.gate_proj.weight", dtype, w(F, D)), (p + "mlp.up_proj.weight", dtype, w(F, D)),
              (p + "mlp.down_proj.weight", dtype, w(D, F))]
    t.append(("model.norm.weight", dtype, w(D)))
    if not tied:
        t.append(("lm_head.weight", dtype, w(V, D)))
    os.makedirs(d)
    mf.write_safetensors(os.path.join(d, "model.safetensors"), t)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    return {n: a for n, _, a in t}


def to_gguf_name(hf):
    m = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
         "lm_head.weight": "output.weight"}
    if hf in m:
        return m[hf]
    parts = hf.split(".")
    l, rest = parts[2], ".".join(parts[3:])
    k = {"input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
         "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
         "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias",
         "self_attn.v_proj.bias": "attn_v.bias", "self_attn.o_proj.weight": "attn_output.weight",
         "post_attention_layernorm.weight": "ffn_norm.weight", "mlp.gate_proj.weight": "ffn_gate.weight",
         "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight"}[rest]
    return "blk.%s.%s" % (l, k)


def test_qwen2(rng):
    cfg = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 40, "max_position_embeddings": 256,
           "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True, "use_sliding_window": False,
           "sliding_window": 256, "torch_dtype": "float32"}
    d = os.path.join(TMP, "qwen2-hf")
    ref = hf_model(d, cfg, "F32", rng, bias=True, tied=True)
    gg = os.path.join(TMP, "qwen2.gguf")
    fitlm("convert", d, gg)
    g = mf.GGUF(gg)
    check(g.kv["general.architecture"] == "qwen2" and g.kv["qwen2.block_count"] == 2, "qwen2 keys")
    check(abs(g.kv["qwen2.rope.freq_base"] - 1e6) < 1 and "output.weight" not in g.tensors, "qwen2 theta/tied")
    for n, a in ref.items():
        t = g.tensors.get(to_gguf_name(n))
        check(t is not None and t["bytes"] == a.tobytes(), "qwen2 %s copied unpermuted" % n)
    j = json.loads(fitlm("inspect", gg, "--json").stdout)
    hp = j["hparams"]
    check(j["arch"] == "qwen2" and hp["rope_layout"] == "half" and hp["qkv_bias"] and hp["tied_embeddings"],
          "qwen2 GGUF hparams %s" % hp)
    check(hp["sliding_window"] == 0, "qwen2 use_sliding_window false -> no window")
    check(j["params"]["from_tensors"] == j["params"]["from_hparams"], "qwen2 params %s" % j["params"])
    back = os.path.join(TMP, "qwen2-back")
    fitlm("convert", gg, back, "--to", "hf")
    st = mf.read_safetensors(os.path.join(back, "model.safetensors"))
    check(set(st) == set(ref), "qwen2 round trip names %s" % (set(st) ^ set(ref)))
    for n, a in ref.items():
        check(n in st and np.array_equal(st[n][2], a), "qwen2 round trip %s" % n)
    c2 = json.load(open(os.path.join(back, "config.json")))
    check(c2["architectures"] == ["Qwen2ForCausalLM"] and c2["tie_word_embeddings"] is True, "qwen2 config back")


def test_llama31(rng):
    rs = {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
          "rope_type": "llama3"}
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "intermediate_size": 64, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 16, "max_position_embeddings": 131072,
           "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "rope_scaling": rs, "tie_word_embeddings": False,
           "torch_dtype": "float16"}
    d = os.path.join(TMP, "l31-hf")
    ref = hf_model(d, cfg, "F16", rng)
    gg = os.path.join(TMP, "l31.gguf")
    fitlm("convert", d, gg)
    g = mf.GGUF(gg)
    rf = g.tensors.get("rope_freqs.weight")
    check(rf is not None and rf["type"] == 0 and rf["ne"] == [64], "rope_freqs tensor")
    if rf:
        got = np.frombuffer(rf["bytes"], dtype="<f4")
        inv, inv_l = mf.llama3_inv_freq(128, 500000.0, 8.0, 1.0, 4.0, 8192)
        want = inv / inv_l
        check(np.allclose(got, want, rtol=2e-6, atol=0), "rope_freqs vs transformers: max rel err %g" %
              np.max(np.abs(got / want - 1)))
        check(got[0] == 1.0 and got[-1] == 8.0 and np.any((got > 1) & (got < 8)), "rope_freqs covers all 3 regimes")
    check(g.kv.get("llama.rope.scaling.type") == "llama3" and g.kv.get("llama.rope.scaling.factor") == 8.0 and
          g.kv.get("llama.rope.scaling.original_context_length") == 8192, "llama3 scaling keys")
    # q/k back to the adjacent order: transformers' permute of the GGUF rows gives the HF rows
    for n, a in ref.items():
        t = g.tensors[to_gguf_name(n)]
        arr = np.frombuffer(t["bytes"], dtype={0: "<f4", 1: "<f2"}[t["type"]]).reshape(a.shape)
        if a.ndim == 1:
            check(t["type"] == 0 and np.array_equal(arr, a.astype(np.float32)), "%s: 1-D stored as exact F32" % n)
        elif "q_proj" in n:
            check(t["type"] == 1 and np.array_equal(mf.hf_permute(arr, 2), a), "%s un-permuted" % n)
        elif "k_proj" in n:
            check(np.array_equal(mf.hf_permute(arr, 1), a), "%s un-permuted" % n)
        else:
            check(t["type"] == 1 and np.array_equal(arr, a), "%s copied" % n)
    j = json.loads(fitlm("inspect", gg, "--json").stdout)
    hp = j["hparams"]
    check(hp["rope_scaling"] == "llama3" and hp["rope_factor"] == 8 and hp["rope_low_freq_factor"] == 1 and
          hp["rope_high_freq_factor"] == 4 and hp["rope_orig_ctx"] == 8192, "GGUF llama3 hparams %s" % hp)
    check(j["params"]["from_tensors"] == j["params"]["from_hparams"], "rope_freqs not counted as parameters")
    back = os.path.join(TMP, "l31-back")
    fitlm("convert", gg, back, "--to", "hf")
    c2 = json.load(open(os.path.join(back, "config.json")))
    check(c2["rope_scaling"] == rs, "rope_scaling back: %s" % c2["rope_scaling"])
    st = mf.read_safetensors(os.path.join(back, "model.safetensors"))
    for n, a in ref.items():
        check(n in st and np.array_equal(st[n][2].astype(np.float32), a.astype(np.float32)), "l31 round trip %s" % n)

    # llama.cpp-style: the factors only as rope_freqs.weight
    kvs = [("general.architecture", 8, "llama"), ("llama.block_count", 4, 1), ("llama.context_length", 4, 131072),
           ("llama.embedding_length", 4, 256), ("llama.feed_forward_length", 4, 64),
           ("llama.attention.head_count", 4, 2), ("llama.attention.head_count_kv", 4, 1),
           ("llama.attention.layer_norm_rms_epsilon", 6, 1e-5), ("llama.rope.freq_base", 6, 500000.0),
           ("llama.rope.dimension_count", 4, 128), ("llama.vocab_size", 4, 16)]
    tens = [(name, g.tensors[name]["type"], g.tensors[name]["ne"], g.tensors[name]["bytes"]) for name in g.order]
    lc = os.path.join(TMP, "l31-llamacpp.gguf")
    mf.write_gguf(lc, kvs, tens)
    j = json.loads(fitlm("inspect", lc, "--json").stdout)
    check(j["hparams"]["rope_scaling"] == "llama3" and j["hparams"]["rope_factor"] == 0 and j["runnable"],
          "llama.cpp-style llama3: %s" % j["hparams"])
    r = fitlm("convert", lc, os.path.join(TMP, "l31-lc-hf"), "--to", "hf", ok=False)
    check(r.returncode == 1 and "rope" in r.stderr and r.stderr.startswith("fitlm: error: "), "unknown factors: %r" % r.stderr)
    # and a GGUF copy keeps the tensor as it is
    cp = os.path.join(TMP, "l31-copy.gguf")
    fitlm("convert", lc, cp)
    g3 = mf.GGUF(cp)
    check(g3.tensors["rope_freqs.weight"]["bytes"] == rf["bytes"], "rope_freqs copied")


def test_mistral(rng):
    cfg = {"architectures": ["MistralForCausalLM"], "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
           "num_attention_heads": 8, "num_key_value_heads": 2, "vocab_size": 24, "max_position_embeddings": 32768,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "sliding_window": 4096, "tie_word_embeddings": False}
    d = os.path.join(TMP, "mistral-hf")
    ref = hf_model(d, cfg, "F32", rng)
    gg = os.path.join(TMP, "mistral.gguf")
    fitlm("convert", d, gg, "--type", "f16")
    g = mf.GGUF(gg)
    check(g.kv["general.architecture"] == "llama" and g.kv.get("llama.attention.sliding_window") == 4096,
          "mistral GGUF keys")
    check(g.kv.get("general.file_type") == 1, "file_type F16")
    for n, a in ref.items():
        t = g.tensors[to_gguf_name(n)]
        if a.ndim == 2:
            arr = np.frombuffer(t["bytes"], dtype="<f2").reshape(a.shape)
            if "q_proj" in n:
                arr = mf.hf_permute(arr, 8)
            elif "k_proj" in n:
                arr = mf.hf_permute(arr, 2)
            check(t["type"] == 1 and np.array_equal(arr.view(np.uint16), a.astype(np.float16).view(np.uint16)),
                  "mistral %s f16" % n)
    j = json.loads(fitlm("inspect", gg, "--json").stdout)
    check(j["arch"] == "mistral" and j["hparams"]["sliding_window"] == 4096, "mistral GGUF inspect")
    back = os.path.join(TMP, "mistral-back")
    fitlm("convert", gg, back, "--to", "hf")
    c2 = json.load(open(os.path.join(back, "config.json")))
    check(c2["architectures"] == ["MistralForCausalLM"] and c2["sliding_window"] == 4096, "mistral config back")


def main():
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    rng = np.random.default_rng(20261121)
    test_qwen2(rng)
    test_llama31(rng)
    test_mistral(rng)
    return te.report()


if __name__ == "__main__":
    sys.exit(main())
