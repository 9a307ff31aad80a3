"""Structured output end to end: `fitlm run --json-schema FILE` / `--grammar
FILE` on a random-weight model with the real Llama 2 vocabulary (whose
unconstrained output is garbage): every output must parse and validate.

Oracles: JSON.parse and ajv (npm, an independent JSON-schema validator,
tests/serve/ajv_check.js) for schemas, Python's re for a grammar's language.
Random schemas (tests/pyutil/schemas.py) x seeds; schemas fitlm cannot
compile give `fitlm: error:`, exit 1 and no output.
"""
import json
import os
import random
import re
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import schemas  # noqa: E402
import servekit as sk  # noqa: E402
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM, SHARED, SRC = te.require_env("FITLM_BIN", "FITLM_SHARED", "FITLM_SRC")
TMP = te.tmp_dir()
if not shutil.which("node") or not os.path.isdir(os.path.join(SRC, "tests", "node_modules", "ajv")):
    print("SKIP: node or the npm ajv validator (bash scripts/setup.sh) is missing")
    sys.exit(77)
MODEL = sk.make_model(os.path.join(TMP, "serve-model.gguf"), SHARED)
N = 6 if te.SANITIZED else 16


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def run_constrained(flag, path, seed, n=400, prompt="Give me JSON:"):
    return te.run(FITLM, "run", "-m", MODEL, flag, path, "-p", prompt, "-n", n, "--temp", 1.0, "--top-k", 0,
                  "--top-p", 1.0, "--min-p", 0, "-s", seed, "-t", 2, timeout=600)


# ---- random schemas x seeds through `run --json-schema`, validated by ajv
rng = random.Random(1234)
pairs, meta = [], []
fixed = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}, "age": {"type": "integer"},
                                      "ok": {"type": "boolean"}}, "required": ["name", "age", "ok"],
     "additionalProperties": False},
    {"type": "array", "items": {"enum": ["a", "b", 3]}, "minItems": 1, "maxItems": 4},
]
for i in range(N):
    sch = fixed[i] if i < len(fixed) else schemas.random_schema(rng)
    path = write("schema-%d.json" % i, json.dumps(sch))
    p = run_constrained("--json-schema", path, 100 + i)
    check(p.returncode == 0, "run --json-schema %s: %s" % (json.dumps(sch), p.stderr[-500:]))
    out = p.stdout[:-1] if p.stdout.endswith("\n") else p.stdout
    check("stopped: output complete" in p.stderr or "stopped: end of generation token" in p.stderr,
          "schema %d ends because the output is complete: %s" % (i, p.stderr[-300:]))
    pairs.append((sch, out))
    meta.append(i)
for i, r in zip(meta, schemas.ajv_validate(SRC, pairs)):
    check(r["parsed"] and r["valid"], "schema %d: %s -> %r: %s" % (i, json.dumps(pairs[i][0]), pairs[i][1], r["errors"]))
print("%d schemas; e.g. %r" % (len(pairs), [o for _, o in pairs[:4]]))

# ---- a GBNF grammar file
g = write("g.gbnf", 'root ::= "say " word (", " word){0,3} "."\nword ::= [a-z]{1,6}  # lower-case words\n')
for seed in range(3):
    p = run_constrained("--grammar", g, seed, n=100)
    out = p.stdout[:-1] if p.stdout.endswith("\n") else p.stdout
    check(p.returncode == 0 and re.fullmatch(r"say [a-z]{1,6}(, [a-z]{1,6}){0,3}\.", out),
          "grammar output %r matches: %s" % (out, p.stderr[-300:]))

# ---- what cannot compile: a clear error, nothing generated
bad = [('{"type": "string", "pattern": "^a+$"}', "'pattern' is not supported"),
       ('{"type": "integer", "minimum": 0}', "'minimum' is not supported"),
       ('{"type": "object", "properties": {"a": {"type": "wat"}}}', "/properties/a: unknown type 'wat'"),
       ('{"type": ', "not valid JSON")]
for i, (text, msg) in enumerate(bad):
    p = run_constrained("--json-schema", write("bad-%d.json" % i, text), 1, n=5)
    check(p.returncode == 1 and p.stdout == "" and "fitlm: error:" in p.stderr and msg in p.stderr,
          "bad schema %s: rc %d, stdout %r, stderr %r" % (text, p.returncode, p.stdout, p.stderr))
p = run_constrained("--grammar", write("bad.gbnf", "root ::= a\na ::= a \"x\" | \"y\"\n"), 1, n=5)
check(p.returncode == 1 and p.stdout == "" and "left recursion" in p.stderr, "left-recursive grammar: %r" % p.stderr)
p = run_constrained("--grammar", os.path.join(TMP, "no-such.gbnf"), 1, n=5)
check(p.returncode == 1 and "fitlm: error:" in p.stderr, "missing grammar file: %r" % p.stderr)

# ---- fitlm serve: response_format through the OpenAI client, validated by ajv
import subprocess  # noqa: E402
have_serve = te.run(FITLM, "serve", "--help").returncode == 0
if have_serve and os.path.isdir(os.path.join(SRC, "tests", "node_modules", "openai")):
    srv = sk.Server(FITLM, MODEL, "-np", 4, "-t", 2, "--alias", "m")
    rng = random.Random(99)
    cases = []
    for i in range(N):
        sch = fixed[0] if i == 0 else schemas.random_schema(rng)
        cases.append({"schema": sch, "seed": 500 + i, "stream": i % 2 == 1, "max_tokens": 400})
    # json_object (any object: unbounded, so a random model may not close it within the context: every
    # output that stops must validate, and at least one of these seeds stops)
    for i in range(4):
        cases.append({"schema": None, "seed": 700 + i, "stream": i % 2 == 0, "max_tokens": 480})
    cases.append({"bad": {"type": "string", "pattern": "a+"}})
    cases.append({"bad": {"type": "object", "properties": {"x": {"$ref": "#/nowhere"}}}})
    cpath = write("openai-cases.json", json.dumps(cases))
    p = subprocess.run(["node", os.path.join(SRC, "tests", "serve", "openai_structured.js"), srv.base, "m", cpath],
                       capture_output=True, text=True, timeout=900)
    check(p.returncode == 0, "openai_structured.js ran: %s" % p.stderr[-2000:])
    res = json.loads(p.stdout) if p.returncode == 0 else []
    good = [(c, r) for c, r in zip(cases, res) if "bad" not in c]
    n_obj_stop = sum(1 for c, r in good if c["schema"] is None and r.get("finish") == "stop")
    check(n_obj_stop >= 1, "some json_object output completes (%d)" % n_obj_stop)
    good = [(c, r) for c, r in good if c["schema"] is not None or r.get("finish") != "length"]
    for c, r in good:
        check(r.get("finish") == "stop", "response_format %s: finish %r (%r)" % (json.dumps(c["schema"]), r.get("finish"), r))
    val = schemas.ajv_validate(SRC, [(c["schema"] if c["schema"] is not None else {"type": "object"}, r.get("content") or "")
                                     for c, r in good])
    for (c, r), v in zip(good, val):
        check(v["parsed"] and v["valid"], "served output for %s: %r: %s" % (json.dumps(c["schema"]), r.get("content"), v["errors"]))
    for c, r in zip(cases, res):
        if "bad" in c:
            check(r.get("status") == 400 and "JSON schema" in r.get("error", "") and
                  ("not supported" in r["error"] or "only local references" in r["error"]),
                  "bad schema refused with 400: %r" % r)
    print("served: %r" % [r.get("content") for _, r in good[:4]])
    # nothing is left running, no block is leaked
    m = srv.wait_idle()
    check(m.get("fitlm_kv_blocks_used") == 0, "no KV block left used")
    rc, log = srv.stop()
    check(rc == 0, "server exit %d: %s" % (rc, log[-1000:]))
else:
    print("note: fitlm serve or the openai client missing: the server part is skipped")

sys.exit(te.report())
