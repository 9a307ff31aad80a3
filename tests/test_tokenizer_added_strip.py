"""Added tokens' lstrip / rstrip (Hugging Face tokenizer.json `added_tokens`):
fitlm tokenize against Hugging Face's tokenizers.js (npm @huggingface/tokenizers,
tests/tools/hf_tokenizers_reference.mjs) on many strings with spaces, newlines,
tabs and Unicode white space around the tokens.

Two tokenizers, both from local files: a byte-level BPE (GPT-2 style) written
here, and the real Llama 2 vocabulary as tokenizer.json (Metaspace-style
normalizer, byte fallback; tests/tools/spm_to_hf_json.py) with added tokens
appended. Flags: lstrip, rstrip, both, none; special and not; normalized
true/false (a normalized token of the Llama 2 one sees "▁", not " ", next to
it). Strings avoid U+0085 and U+FEFF, where JavaScript's trim and Rust's
char::is_whitespace (what Hugging Face's Rust tokenizers use, and fitlm
follows) disagree; a fixed case checks fitlm's U+0085 handling by hand.
"""
import json
import os
import random
import re
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM, SHARED, SRC = te.require_env("FITLM_BIN", "FITLM_SHARED", "FITLM_SRC")
NM = os.path.join(SRC, "tests", "node_modules")
if not shutil.which("node") or not os.path.isdir(os.path.join(NM, "@huggingface", "tokenizers")):
    print("SKIP: node or the npm @huggingface/tokenizers reference (bash scripts/setup.sh) is missing")
    sys.exit(77)
TMP = os.path.join(te.tmp_dir(), "added_strip")
os.makedirs(TMP, exist_ok=True)
N = 40 if te.SANITIZED else 250


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    k = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + k)
            k += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def added(i, content, lstrip=False, rstrip=False, special=True, normalized=None):
    return {"id": i, "content": content, "single_word": False, "lstrip": lstrip, "rstrip": rstrip,
            "normalized": (not special) if normalized is None else normalized, "special": special}


def byte_level_json():
    """A GPT-2 style byte-level BPE: the 256 byte symbols, merges spelling a few words."""
    b2u = bytes_to_unicode()
    vocab = {b2u[b]: b for b in range(256)}
    merges = []
    for word in ["hello", "Ġhello", "world", "Ġworld", "Ġthe", "user", "ĠĠ", "ĊĊ", "ĠĠĠĠ"]:
        cur = word[0]
        for ch in word[1:]:
            merged = cur + ch
            if merged not in vocab:
                vocab[merged] = len(vocab)
                merges.append(cur + " " + ch)
            cur = merged
    n = len(vocab)
    toks = [added(n, "<|user|>", rstrip=True), added(n + 1, "<mask>", lstrip=True),
            added(n + 2, "<|sep|>", lstrip=True, rstrip=True), added(n + 3, "<|plain|>"),
            added(n + 4, "[X]", rstrip=True, special=False), added(n + 5, "[Y]", lstrip=True, special=False),
            added(n + 6, "<|user|>x", lstrip=True)]
    doc = {"version": "1.0", "added_tokens": toks, "normalizer": None,
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
           "post_processor": None, "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                     "merges": merges}}
    return doc, [t["content"] for t in toks]


def llama2_json():
    path = os.path.join(TMP, "llama2-tokenizer.json")
    r = te.run("/usr/bin/python3", os.path.join(SRC, "tests", "tools", "spm_to_hf_json.py"),
               os.path.join(SHARED, "data", "tokenizer", "llama2-tokenizer.model"), path)
    if r.returncode != 0:
        return None, None
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    n = len(doc["model"]["vocab"])
    toks = [added(n, "<|user|>", rstrip=True), added(n + 1, "<mask>", lstrip=True),
            added(n + 2, "<|sep|>", lstrip=True, rstrip=True), added(n + 3, "<|plain|>"),
            added(n + 4, "[U]", lstrip=True, special=False, normalized=False)]
    # (a normalized added token of this tokenizer is matched by Hugging Face as
    # its normalized form "▁[N]", which fitlm does not model: docs/tokenizers.md)
    doc["added_tokens"] += toks
    return doc, [t["content"] for t in toks]


WS = [" ", "  ", "\n", "\n\n", "\t", " \n ", "\r\n", "\u00a0", "\u3000", "\u2003", " \u2028"]
WORDS = ["hello", "world", "the", "a", "é", "日本", "user", "x", "!", "<", "|"]


def strings(specials, rng):
    fixed = ["", " ", "hello", "\n"]
    for s in specials:
        fixed += [s, " " + s, s + " ", "  " + s + "  ", "a " + s + " b", "a\n\n" + s + "\n\nb", s + s,
                  s + " " + s, " " + s + " \n" + s + "\t", "hello  " + s, s + "   world", "\u3000" + s + "\u00a0x"]
    out = list(fixed)
    pieces = specials + WS + WORDS
    for _ in range(N):
        out.append("".join(rng.choice(pieces) for _ in range(rng.randint(1, 9))))
    return out


STRIPPERS = "<mask>|<\\|sep\\|>|<\\|user\\|>|\\[X\\]|\\[Y\\]|\\[U\\]"


def fitlm_ids(tok_path, text):
    path = os.path.join(TMP, "input.txt")
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    r = te.run(FITLM, "tokenize", "-m", tok_path, "--no-special", "-f", path)
    if r.returncode != 0:
        return "error: " + r.stderr.strip()
    return [int(x) for x in r.stdout.split()]


def compare(name, doc, specials, seed):
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    tok_path = os.path.join(d, "tokenizer.json")
    cfg_path = os.path.join(d, "tokenizer_config.json")
    with open(tok_path, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    with open(cfg_path, "w") as f:
        json.dump({"add_bos_token": False, "add_eos_token": False}, f)
    texts = strings(specials, random.Random(seed))
    in_path, out_path = os.path.join(d, "inputs.json"), os.path.join(d, "ref.json")
    with open(in_path, "w", encoding="utf-8") as f:
        json.dump(texts, f)
    r = te.run("node", os.path.join(SRC, "tests", "tools", "hf_tokenizers_reference.mjs"), tok_path, cfg_path,
               in_path, out_path)
    check(r.returncode == 0, "%s: reference failed: %s" % (name, r.stderr[-400:]))
    if r.returncode != 0:
        return
    with open(out_path) as f:
        ref = json.load(f)
    bad = 0
    stripped = 0
    for text, want in zip(texts, ref):
        got = fitlm_ids(tok_path, text)
        if got != want:
            bad += 1
            if bad <= 5:
                print("  %s: %r: fitlm %s, tokenizers.js %s" % (name, text, got, want))
        # strings where a stripping token touches white space (where the flags matter)
        if re.search(r"\s(%s)|(%s)\s" % (STRIPPERS, STRIPPERS), text):
            stripped += 1
    check(bad == 0, "%s: %d of %d strings differ from tokenizers.js" % (name, bad, len(texts)))
    check(stripped > len(texts) // 3, "%s: too few strings with a stripping token (%d)" % (name, stripped))
    print("%s: %d strings compared, %d differ" % (name, len(texts), bad))
    return tok_path


os.environ["NODE_PATH"] = NM
doc, specials = byte_level_json()
tok_bl = compare("byte-level", doc, specials, 1)

# the flags do change the ids (a test that cannot fail otherwise): " <mask>" vs "<mask>"
if tok_bl:
    ids_strip = fitlm_ids(tok_bl, "hello \n<mask>")
    ids_plain = fitlm_ids(tok_bl, "hello \n<|plain|>")
    check(len(ids_strip) == 2 and len(ids_plain) == 4,
          "lstrip absorbs ' \\n': %s vs %s without the flag" % (ids_strip, ids_plain))
    ids = fitlm_ids(tok_bl, "<|user|> \n\t hello")
    check(len(ids) == 2 and ids[1] == fitlm_ids(tok_bl, "hello")[0], "rstrip absorbs ' \\n\\t ': %s" % ids)
    # U+0085 (NEL) is White_Space for Rust (Hugging Face) but not for JavaScript's trim
    check(fitlm_ids(tok_bl, "a\u0085<mask>") == fitlm_ids(tok_bl, "a<mask>"), "U+0085 is stripped as white space")
    # U+FEFF is not White_Space: it stays
    check(len(fitlm_ids(tok_bl, "a\ufeff<mask>")) == 5, "U+FEFF is not white space")
    # a malformed flag is an error, not a crash
    bad = dict(doc)
    bad["added_tokens"] = [dict(doc["added_tokens"][0], lstrip="yes")]
    p = os.path.join(TMP, "bad.json")
    with open(p, "w", encoding="utf-8") as f:
        json.dump(bad, f, ensure_ascii=False)
    r = te.run(FITLM, "tokenize", "-m", p, "-p", "a")
    check(r.returncode == 1 and r.stderr.startswith("fitlm: error:") and "lstrip" in r.stderr,
          "lstrip=\"yes\" refused: rc %d %r" % (r.returncode, r.stderr))

if os.path.exists(os.path.join(SHARED, "data", "tokenizer", "llama2-tokenizer.model")):
    doc, specials = llama2_json()
    check(doc is not None, "spm_to_hf_json.py failed")
    if doc:
        compare("llama2", doc, specials, 2)
else:
    print("note: ../shared/data/tokenizer/llama2-tokenizer.model missing; Llama 2 part skipped")

sys.exit(te.report())
