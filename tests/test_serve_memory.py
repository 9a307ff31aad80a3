"""fitlm serve sizes its KV pool from the memory it may use (docs/serving.md):
the stories260K model (llama2.c, ids only) under --mem-limit and --kv-mem.

  - a --mem-limit below the weights plus one context: refused before serving
    ("one context of N tokens needs ...");
  - an explicit --kv-mem above what is left: refused ("does not fit");
  - a --mem-limit that holds one context but not -np of them: the pool is
    lowered with a warning, and the printed pool (blocks x block bytes) stays
    within the limit minus the weights;
  - an explicit --kv-mem that fits: exactly floor(kv-mem / block bytes) blocks.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import servekit as sk  # noqa: E402
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM = os.environ["FITLM_BIN"]
MODEL = os.path.join(os.environ["FITLM_SHARED"], "data", "stories260K", "stories260K.bin")
if not os.path.exists(MODEL):
    print("SKIP: stories260K is missing")
    sys.exit(77)
help_out = subprocess.run([FITLM, "serve", "--help"], capture_output=True, text=True)
if help_out.returncode != 0:
    print("SKIP: fitlm serve is not built (libmicrohttpd missing)")
    sys.exit(77)

# stories260K: 5 layers, 4 KV heads x 8 = 32 values per row; F16 rows of 64 bytes;
# a block of 16 tokens = 2 x 5 x 16 x 64 = 10240 bytes; a context of 512 = 32 blocks
BLOCK = 2 * 5 * 16 * 64
WEIGHTS = os.path.getsize(MODEL) - 28  # the file minus its 7-int header


def serve(*args):
    return subprocess.run([FITLM, "serve", "-m", MODEL, "--port", "0", "-t", "1"] + list(args),
                          capture_output=True, text=True, timeout=60)


p = serve("--mem-limit", "1M")
check(p.returncode == 1 and "fitlm: error: one context of 512 tokens needs" in p.stderr,
      "a limit below weights + one context is refused: %r" % p.stderr[-300:])
p = serve("--kv-mem", "100T")
check(p.returncode == 1 and "does not fit" in p.stderr and "fitlm: error:" in p.stderr,
      "a --kv-mem beyond the memory available is refused: %r" % p.stderr[-300:])

# room for two and a half contexts after the weights and serve's scratch
# allowance (cmd_serve.c: 512 rows of activations, logits rows, attention
# scratch: 2088960 bytes for this model): the default (-np 4) pool is lowered
SCRATCH = 512 * 4 * (3 * 64 + 2 * 8 * 8 + 2 * 4 * 8 + 2 * 172) + (4 + 32) * 512 * 4 + 512 * 64 * 16
limit = WEIGHTS + SCRATCH + 80 * BLOCK
srv = sk.Server(FITLM, MODEL, "-t", "1", "-np", "4", "--mem-limit", str(limit))
log = srv.log()
m = re.search(r"KV pool: (\d+) blocks of 16 tokens", log)
check("fitlm: warning:" in log and m is not None, "the pool is lowered with a warning: %r" % log[-400:])
if m:
    blocks = int(m.group(1))
    check(32 <= blocks < 4 * 32 and abs(blocks - 80) <= 2,
          "the lowered pool (%d blocks) holds one context but not four, within the limit" % blocks)
st, _, body = srv.post("/v1/completions", {"prompt": [1, 300, 301], "max_tokens": 5, "temperature": 0})
check(st == 200, "the lowered server answers: %s %r" % (st, body[:200]))
rc, _ = srv.stop()
check(rc == 0, "clean exit")

srv = sk.Server(FITLM, MODEL, "-t", "1", "--kv-mem", str(50 * BLOCK + 100))
m = re.search(r"KV pool: (\d+) blocks", srv.log())
check(m is not None and int(m.group(1)) == 50, "--kv-mem gives floor(kv-mem / block bytes) = 50 blocks: %r" %
      (m.group(0) if m else srv.log()[-300:]))
rc, _ = srv.stop()
check(rc == 0, "clean exit")
sys.exit(te.report())
