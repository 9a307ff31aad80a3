#!/usr/bin/python3
"""Reference encoder for the SentencePiece differential test.

usage: spm_reference.py MODEL INPUTS OUTPUTS
INPUTS holds records of (uint32 little-endian length, bytes). For each record
OUTPUTS gets one line: "R id id id ..." where R is 1 if SentencePiece's own
decode of those ids gives the input bytes back, else 0.
Exit status 77 if the sentencepiece module is missing.
"""
import struct
import sys

try:
    import sentencepiece
except ImportError:
    print("SKIP: python3-sentencepiece is not installed")
    sys.exit(77)


def main():
    model, inputs, outputs = sys.argv[1:4]
    sp = sentencepiece.SentencePieceProcessor(model_file=model)
    data = open(inputs, "rb").read()
    pos = 0
    lines = []
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        text = data[pos:pos + n]
        pos += n
        ids = sp.encode(text)
        back = sp.decode(ids).encode("utf-8", "surrogatepass")
        lines.append("%d %s" % (1 if back == text else 0, " ".join(map(str, ids))))
    with open(outputs, "w") as f:
        f.write("\n".join(lines) + "\n")


main()
