"""Hostile chat templates and inputs: deep nesting, huge loops, recursion in
macros, huge strings and outputs, deeply nested JSON. Each must end with
"fitlm: error: ..." and exit 1 within a second of CPU time (a few seconds
under the sanitizers; wall time is left loose, the machine may be shared) and
with bounded memory (peak RSS under 256 MiB), never a crash or
a hang. Also: bad --messages (malformed JSON, unknown role, wrong shapes), a
bad --kwargs, a missing template."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

FITLM = te.require_env("FITLM_BIN")
TMP = os.path.join(te.tmp_dir(), "jinja_hostile")
os.makedirs(TMP, exist_ok=True)
TIME_LIMIT = 8.0 if te.SANITIZED else 1.0
RSS_LIMIT_KB = 256 * 1024

OK_MESSAGES = [{"role": "user", "content": "hi"}]

TEMPLATES = {
    "nested ifs": "{% if true %}" * 5000 + "x" + "{% endif %}" * 5000,
    "nested parens": "{{ " + "(" * 20000 + "1" + ")" * 20000 + " }}",
    "nested lists": "{{ " + "[" * 20000 + "]" * 20000 + " }}",
    "nested fors": "{% for a in [1] %}" * 3000 + "{% endfor %}" * 3000,
    "long not chain": "{{ " + "not " * 50000 + "true }}",
    "huge loop": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "huge range": "{% for i in range(10**12) %}x{% endfor %}",
    "infinite recursion": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    "mutual recursion": "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}",
    "huge string": "{{ 'x' * 1000000000000 }}",
    "doubling string": "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s|length }}",
    "huge output": "{% for i in range(100000) %}{{ 'y' * 100000 }}{% endfor %}",
    "quadratic concat": "{% set ns = namespace(s='') %}{% for i in range(100000) %}{% set ns.s = ns.s ~ ('z' * 1000) %}{% endfor %}",
    "big list": "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] * 1000 %}{% endfor %}",
    "list repeat": "{{ ([1] * 100000) * 100000 }}",
    "membership scans": "{% set r = range(100000)|list %}{% for i in range(100000) %}{{ i in r }}{% endfor %}",
    "deep macro via caller": "{% macro w() %}{{ caller() }}{% endmacro %}" + "{% call w() %}" * 2000 + "{% endcall %}" * 2000,
    "unterminated": "{% if true %}never closed",
    "bad utf8": b"\xff\xfe{{ 1 }}",
}


def run_rss(args):
    """Runs args, returns (rc, stdout, stderr, CPU seconds, peak RSS in KiB)."""
    t0 = time.monotonic()
    out_path = os.path.join(TMP, "out.bin")
    err_path = os.path.join(TMP, "err.txt")
    with open(out_path, "wb") as fo, open(err_path, "wb") as fe:
        p = subprocess.Popen(args, stdout=fo, stderr=fe, stdin=subprocess.DEVNULL)
        deadline = t0 + 60
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                break
            time.sleep(0.005)
    p.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path, "rb") as f:
        out = f.read()
    with open(err_path, "rb") as f:
        err = f.read().decode("utf-8", "replace")
    del t0
    return p.returncode, out, err, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


mpath = os.path.join(TMP, "ok.json")
with open(mpath, "w") as f:
    json.dump(OK_MESSAGES, f)

for name, src in TEMPLATES.items():
    tpath = os.path.join(TMP, "t.jinja")
    with open(tpath, "wb") as f:
        f.write(src if isinstance(src, bytes) else src.encode())
    rc, out, err, secs, rss = run_rss([FITLM, "template", "--template", tpath, "--messages", mpath])
    check(rc == 1 and err.startswith("fitlm: error:"), "%s: rc %d, stderr %r" % (name, rc, err[:300]))
    check(secs < TIME_LIMIT, "%s: took %.2f s of CPU (limit %.1f)" % (name, secs, TIME_LIMIT))
    if not te.SANITIZED:
        check(rss < RSS_LIMIT_KB, "%s: peak RSS %d KiB" % (name, rss))
    print("%-22s rc %d  %.3f s  %6d KiB  %s" % (name, rc, secs, rss, err.strip()[:100]))

# bad inputs with a good template
good = os.path.join(TMP, "good.jinja")
with open(good, "w") as f:
    f.write("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
BAD_MESSAGES = {
    "malformed": b'[{"role": "user", "content": "x"',
    "not a list": b'{"role": "user"}',
    "unknown role": b'[{"role": "wizard", "content": "x"}]',
    "role not a string": b'[{"role": 3, "content": "x"}]',
    "content a number": b'[{"role": "user", "content": 5}]',
    "bad part": b'[{"role": "user", "content": [{"text": "no type"}]}]',
    "lone surrogate": b'[{"role": "user", "content": "\\ud800"}]',
    "deep json": b"[" * 100000 + b"]" * 100000,
    "invalid utf-8": b'[{"role": "user", "content": "\xff"}]',
    "empty": b"",
}
for name, data in BAD_MESSAGES.items():
    bpath = os.path.join(TMP, "bad.json")
    with open(bpath, "wb") as f:
        f.write(data)
    rc, out, err, secs, rss = run_rss([FITLM, "template", "--template", good, "--messages", bpath])
    check(rc == 1 and err.startswith("fitlm: error:") and out == b"", "messages %s: rc %d, %r" % (name, rc, err[:200]))
    print("messages %-16s rc %d  %s" % (name, rc, err.strip()[:100]))

for kw in ['{"a": ', '[1]', '{"messages": []}']:
    rc, out, err, _, _ = run_rss([FITLM, "template", "--template", good, "--messages", mpath, "--kwargs", kw])
    check(rc == 1 and err.startswith("fitlm: error:"), "kwargs %r: rc %d %r" % (kw, rc, err))
rc, out, err, _, _ = run_rss([FITLM, "template", "--template", os.path.join(TMP, "missing.jinja"), "--messages", mpath])
check(rc == 1 and "missing.jinja" in err, "missing template: %r" % err)
rc, out, err, _, _ = run_rss([FITLM, "template", "--messages", mpath])
check(rc == 1 and "required" in err, "no template: %r" % err)
rc, out, err, _, _ = run_rss([FITLM, "template", "--template", good, "--messages", mpath])
check(rc == 0 and out == b"user: hi\n", "good render: %r %r" % (out, err))
sys.exit(te.report())
