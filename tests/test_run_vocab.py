"""`fitlm run` with text in and text out, end to end: a random-weight llama
GGUF carrying the real Llama 2 vocabulary (tokenizer metadata copied from
$FITLM_SHARED/data/vocab/ggml-vocab-llama-spm.gguf). Oracles: python3-
sentencepiece with the Llama 2 tokenizer model (prompt ids, decoded text) and
the numpy forward pass of tests/ref/forward.py (greedy continuation).

  - -p TEXT --temp 0 --print-ids generates the numpy greedy continuation of
    [BOS] + sentencepiece(TEXT);
  - without --print-ids stdout is the prompt followed by the decoded tokens
    (sentencepiece's decode of the same ids);
  - --chat with the model's Llama 2 chat template wraps the prompt as
    "[INST] TEXT [/INST]" (and --system adds the <<SYS>> block), again checked
    through the greedy continuation;
  - --chat on a model without a chat template asks for --chat-template.
"""
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import forward as ref  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM, SHARED = te.require_env("FITLM_BIN", "FITLM_SHARED")
TMP = te.tmp_dir()
try:
    import sentencepiece as spm
except ImportError:
    print("SKIP: python3-sentencepiece is not installed")
    sys.exit(77)

VOCAB_GGUF = os.path.join(SHARED, "data", "vocab", "ggml-vocab-llama-spm.gguf")
SP = spm.SentencePieceProcessor(model_file=os.path.join(SHARED, "data", "tokenizer", "llama2-tokenizer.model"))
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
    "{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}"
    "{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}")



cfg = dict(n_layers=2, dim=64, n_heads=4, n_kv_heads=2, head_dim=16, ffn=96, vocab=32000, ctx=128, eps=1e-5,
           rope_theta=10000.0, rope_layout="adjacent")
w, tens = ref.random_model(cfg, 21, tied=False, attn_gain=8.0)  # context-sensitive continuations
tok_kv = ref.read_gguf_kv_raw(VOCAB_GGUF, "tokenizer.")
plain = os.path.join(TMP, "rt-vocab-llama.gguf")
ref.write_gguf(plain, ref.gguf_kv(cfg, "llama") + tok_kv, tens)
chat = os.path.join(TMP, "rt-vocab-llama-chat.gguf")
ref.write_gguf(chat, ref.gguf_kv(cfg, "llama") + tok_kv + [("tokenizer.chat_template", "str", LLAMA2_TEMPLATE)], tens)
N = 6


def greedy(ids, n):
    """numpy greedy continuation; stops early (returns fewer) where the top-2
    margin is too small for float32 to be sure of the order."""
    out = []
    seq = list(ids)
    for _ in range(n):
        lg = ref.forward(cfg, w, np.array(seq))[-1]
        top = np.sort(lg)[-2:]
        if top[1] - top[0] < 1e-3:
            break
        nxt = int(np.argmax(lg))
        if nxt == 2:
            break
        out.append(nxt)
        seq.append(nxt)
    return out


def run(path, *args):
    return subprocess.run([FITLM, "run", "-m", path, "-n", str(N), "--temp", "0", "--kv-type", "f32", "-t", "2"] +
                          list(args), capture_output=True, text=True)


prompt = "Hello world, once upon a time"
ids = [1] + SP.encode(prompt)
want = greedy(ids, N)
p = run(plain, "-p", prompt, "--print-ids")
check(p.returncode == 0, "run -p failed: " + p.stderr)
got = [int(x) for x in p.stdout.split()]
print("prompt ids %s\n  fitlm  %s\n  numpy  %s" % (ids, got, want))
check(got[:len(want)] == want and len(want) >= 2, "greedy continuation differs")

q = subprocess.run([FITLM, "run", "-m", plain, "-n", str(N), "--temp", "0", "--kv-type", "f32", "--print-ids"],
                   input=prompt, capture_output=True, text=True)
check(q.returncode == 0 and q.stdout == p.stdout, "prompt from stdin gives the same ids: %r" % q.stderr[-200:])
pf = os.path.join(TMP, "rt-prompt.txt")
with open(pf, "w") as f:
    f.write(prompt)
q = run(plain, "-f", pf, "--print-ids")
check(q.returncode == 0 and q.stdout == p.stdout, "prompt from -f gives the same ids: %r" % q.stderr[-200:])

p = run(plain, "-p", prompt)
check(p.returncode == 0, "run -p (text) failed: " + p.stderr)
text = SP.decode(ids[1:] + got)
check(p.stdout.rstrip("\n") == text, "text output %r, sentencepiece decodes %r" % (p.stdout, text))

for system in (None, "Answer briefly."):
    user = "Tell me a story"
    if system:
        formatted = "[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]" % (system, user)
    else:
        formatted = "[INST] %s [/INST]" % user
    cids = [1] + SP.encode(formatted)
    want = greedy(cids, N)
    args = ["-p", user, "--chat", "--print-ids"] + (["--system", system] if system else [])
    p = run(chat, *args)
    check(p.returncode == 0, "run --chat failed: " + p.stderr)
    got = [int(x) for x in p.stdout.split()]
    check(got[:len(want)] == want and len(want) >= 2,
          "chat (system=%r): fitlm %s, numpy on %r gives %s" % (system, got, formatted, want))
    check("chat template: the model's chat template (Jinja)" in p.stderr, "chat template reported: " + p.stderr[:200])

p = run(plain, "-p", "Hi", "--chat")
check(p.returncode == 1 and "--chat-template" in p.stderr, "no template -> asks for --chat-template: " + p.stderr)
p = run(plain, "-p", "Hi", "--chat", "--chat-template", "llama2", "--print-ids")
check(p.returncode == 0, "--chat-template llama2 on a model without template: " + p.stderr)

# ---- interactive chat: the second turn continues from the cached first one ----
turns = ["Hello there", "And again?"]
K = 4
p = subprocess.run([FITLM, "run", "-m", chat, "-i", "--temp", "0", "-n", str(K), "--kv-type", "f32", "--print-ids"],
                   input="\n".join(turns) + "\n", capture_output=True, text=True)
check(p.returncode == 0, "run -i failed: " + p.stderr)
replies = [seg.split() for seg in p.stdout.split("> ")[1:] if seg.strip()]
check(len(replies) == 2, "two replies: %r" % p.stdout)
seq = [1] + SP.encode("[INST] %s [/INST]" % turns[0])
want1 = greedy(seq, K)
if len(replies) == 2 and len(want1) == K:
    got1 = [int(x) for x in replies[0]]
    check(got1 == want1, "turn 1: fitlm %s numpy %s" % (got1, want1))
    # turn 2 feeds the new part of the formatted conversation, tokenized by fitlm without BOS
    delta = "<s>[INST] %s [/INST]" % turns[1]
    t = subprocess.run([FITLM, "tokenize", "-m", chat, "--no-special", "-p", delta], capture_output=True, text=True)
    check(t.returncode == 0, "tokenize delta: " + t.stderr)
    dids = [int(x) for x in t.stdout.split()]
    check(dids[:1] == [1], "the delta starts with BOS parsed from <s>: %s" % dids)
    want2 = greedy(seq + got1 + dids, K)
    got2 = [int(x) for x in replies[1]]
    print("chat turn 2: fitlm %s numpy %s" % (got2, want2))
    check(len(want2) >= 2 and got2[:len(want2)] == want2, "turn 2: fitlm %s numpy %s" % (got2, want2))

# ---- perplexity over a text file: the method of docs/runtime.md in numpy ----
story = ("Once upon a time there was a little robot who liked to count the stars. Every night it climbed the "
         "hill behind the village and counted until the sun came up. One morning a girl asked the robot how "
         "many stars there were, and the robot said it had lost count at four thousand and twelve.")
tf = os.path.join(TMP, "rt-story.txt")
with open(tf, "w") as f:
    f.write(story)
C = 16
toks = [1] + SP.encode(story)
nll = []
for c in range(len(toks) // C):
    chunk = toks[c * C:(c + 1) * C]
    chunk[0] = 1  # BOS replaces the first token of every chunk
    lg = ref.forward(cfg, w, np.array(chunk))
    for j in range(C // 2, C - 1):
        row = lg[j]
        mx = row.max()
        nll.append(mx + np.log(np.exp(row - mx).sum()) - row[chunk[j + 1]])
nll = np.array(nll)
ppl = float(np.exp(nll.mean()))
err = ppl * float(np.sqrt(nll.var(ddof=1) / len(nll)))
p = subprocess.run([FITLM, "perplexity", "-m", plain, "-f", tf, "-c", str(C), "--kv-type", "f32"], capture_output=True,
                   text=True)
check(p.returncode == 0, "perplexity -f failed: " + p.stderr)
final = [l for l in p.stdout.splitlines() if l.startswith("Final estimate")]
if final:
    f = final[0].split()
    print("perplexity over text: fitlm %s +/- %s, numpy %.4f +/- %.5f (%d tokens, %d chunks)" % (
        f[4], f[6], ppl, err, len(nll), len(toks) // C))
    check(abs(float(f[4]) - ppl) <= 1e-4 * ppl, "perplexity %s vs numpy %g" % (f[4], ppl))
    check(abs(float(f[6]) - err) <= 1e-3 * err, "standard error %s vs numpy %g" % (f[6], err))
else:
    check(False, "no final estimate: " + p.stdout)

# ---- a NUL byte in the prompt: run tokenizes the same bytes as tokenize (not a prompt cut at the NUL) ----
nul = b"Hello\x00world, once upon"
t = subprocess.run([FITLM, "tokenize", "-m", plain], input=nul, capture_output=True)
want_n = len(t.stdout.split())
q = subprocess.run([FITLM, "run", "-m", plain, "-n", "1", "--temp", "0", "--print-ids"], input=nul, capture_output=True)
m = re.search(rb"(\d+) prompt tokens", q.stderr)
check(t.returncode == 0 and q.returncode == 0 and m is not None and int(m.group(1)) == want_n and want_n > 4,
      "run with a NUL in the prompt (stdin) sees tokenize's %d tokens: %r" % (want_n, q.stderr[-200:]))
nf = os.path.join(TMP, "rt-nul.txt")
with open(nf, "wb") as f:
    f.write(nul)
q = subprocess.run([FITLM, "run", "-m", plain, "-f", nf, "-n", "1", "--temp", "0", "--print-ids"], capture_output=True)
m = re.search(rb"(\d+) prompt tokens", q.stderr)
check(q.returncode == 0 and m is not None and int(m.group(1)) == want_n, "the same from -f: %r" % q.stderr[-200:])
q = subprocess.run([FITLM, "run", "-m", chat, "-f", nf, "--chat", "-n", "1"], capture_output=True)
check(q.returncode == 1 and b"fitlm: error:" in q.stderr and b"NUL" in q.stderr,
      "--chat refuses a NUL byte in the message: %r" % q.stderr[-200:])

sys.exit(te.report())
