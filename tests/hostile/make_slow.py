#!/usr/bin/env python3
"""Writes files that used to make fitlm take seconds to hours (quadratic scans,
an unkeyed hash): each must now be processed within a second or two.

Usage: python3 tests/hostile/make_slow.py OUTDIR

(Not named gen_*.py: these files are valid, so test_hostile_cli's "refuse
every corrupt file" rule does not apply; test_hostile_time runs them.)"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_gguf as g  # noqa: E402


def vocab_only(tokens):
    """A vocab-only llama (SentencePiece) GGUF with these token texts."""
    n = len(tokens)
    kvs = [g.kv("general.architecture", g.STR, "llama"),
           g.kv("tokenizer.ggml.model", g.STR, "llama"),
           g.kv("tokenizer.ggml.tokens", g.ARR, (g.STR, tokens)),
           g.kv("tokenizer.ggml.scores", g.ARR, (g.F32, [-float(i) for i in range(n)])),
           g.kv("tokenizer.ggml.token_type", g.ARR, (g.I32, [2, 3, 3] + [1] * (n - 3))),
           g.kv("tokenizer.ggml.bos_token_id", g.U32, 1),
           g.kv("tokenizer.ggml.eos_token_id", g.U32, 2),
           g.kv("tokenizer.ggml.unknown_token_id", g.U32, 0)]
    return g.gguf(kvs, [])


def main(out):
    os.makedirs(out, exist_ok=True)
    files = {}
    # the GGUF writer's duplicate check (quantize): 10^5 extra keys, 10^5 extra tensors
    files["keys-1e5.gguf"] = g.tiny_model(extra_kvs=[g.kv("x.k%d" % i, g.U32, i) for i in range(10**5)])
    files["tensors-1e5.gguf"] = g.tiny_model(extra_tensors=[("x.t%d" % i, [8], g.T_F32, bytes(32))
                                                            for i in range(10**5)])
    # run --chat: 4 MiB chat templates of start marks without an end, and with a
    # spoiling '{' before the only end
    mark = "<|im_start|>system\n"
    files["chat-no-end.gguf"] = g.tiny_model({"tokenizer.chat_template": (g.STR, mark * (4 * 2**20 // len(mark)))})
    files["chat-spoiled.gguf"] = g.tiny_model({"tokenizer.chat_template":
                                               (g.STR, mark * (4 * 2**20 // len(mark)) + "{<|im_end|>")})
    # 200,000 token names (3.9 MB): with a keyed hash their slots cannot be chosen
    toks = ["<unk>", "<s>", "</s>"] + ["\u2581t%06d" % i for i in range(200000 - 3)]
    files["vocab-200k.gguf"] = vocab_only(toks)
    # a safetensors header of 2.2 million tiny JSON values (4.4 MB): parsed, it
    # took 14x its size in parse tree (a 68 MB one ~1 GB); refused before parsing
    st_dir = os.path.join(out, "st-nodes")
    os.makedirs(st_dir, exist_ok=True)
    hdr = b'{"__metadata__":{"x":[' + b"0," * 2200000 + b'0]}}'
    hdr += b" " * ((8 - len(hdr) % 8) % 8)
    with open(os.path.join(st_dir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(hdr)) + hdr)
    with open(os.path.join(st_dir, "config.json"), "w") as f:
        f.write('{"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "num_hidden_layers": 1, '
                '"num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100, '
                '"max_position_embeddings": 64, "rms_norm_eps": 1e-5}')
    for name, data in files.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.stderr.write("usage: make_slow.py OUTDIR\n")
        sys.exit(2)
    main(sys.argv[1])
