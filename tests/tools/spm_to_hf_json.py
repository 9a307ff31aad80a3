#!/usr/bin/python3
"""Writes a Hugging Face tokenizer.json (Llama-2 style: BPE with byte fallback,
normalizer Prepend("▁") + Replace(" " -> "▁")) for a SentencePiece BPE model,
the way Hugging Face's slow->fast converter derives merges from it: every split
of a piece into two pieces of the vocabulary is a merge, ranked by the score of
the merged piece (then by the ids of its parts).

usage: spm_to_hf_json.py MODEL OUT.json     (exit 77 without sentencepiece)
"""
import json
import sys

try:
    import sentencepiece
except ImportError:
    print("SKIP: python3-sentencepiece is not installed")
    sys.exit(77)

model, out = sys.argv[1:3]
sp = sentencepiece.SentencePieceProcessor(model_file=model)
n = sp.get_piece_size()
vocab = {sp.id_to_piece(i): i for i in range(n)}
merges = []
for piece, pid in vocab.items():
    if sp.is_control(pid) or sp.is_unknown(pid) or sp.is_byte(pid):
        continue
    for k in range(1, len(piece)):
        left, right = piece[:k], piece[k:]
        if left in vocab and right in vocab:
            merges.append((-sp.get_score(pid), vocab[left], vocab[right], left, right))
merges.sort()
added = []
for i in range(n):
    if sp.is_control(i) or sp.is_unknown(i):
        added.append({"id": i, "content": sp.id_to_piece(i), "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": True})
doc = {
    "version": "1.0",
    "added_tokens": added,
    "normalizer": {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
    "pre_tokenizer": None,
    "post_processor": {"type": "TemplateProcessing",
                       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                  {"Sequence": {"id": "A", "type_id": 0}}],
                       "pair": [], "special_tokens": {}},
    "decoder": {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
    "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True,
              "vocab": vocab, "merges": [m[3] + " " + m[4] for m in merges]},
}
with open(out, "w", encoding="utf-8") as f:
    json.dump(doc, f, ensure_ascii=False)
