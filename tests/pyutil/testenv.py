"""Plumbing shared by fitlm's Python tests: the environment ctest gives them
(tests/CMakeLists.txt: FITLM_BIN, FITLM_SHARED, FITLM_SRC, FITLM_TMP,
FITLM_SANITIZED), counting checks, and running the fitlm program.

    import testenv as te
    te.check(cond, "what went wrong")   # counts; prints "FAIL: ..." when cond is false
    sys.exit(te.report())               # prints "N passed, M failed"; 1 if any failed
"""
import os
import subprocess
import sys

SANITIZED = os.environ.get("FITLM_SANITIZED") == "1"

_passed = 0
_failed = 0


def require_env(*names):
    """The values of the named environment variables (one value for one name);
    prints "SKIP: A / B not set" and exits 77 when any is unset."""
    values = [os.environ.get(n) for n in names]
    if not all(values):
        print("SKIP: %s not set" % " / ".join(names))
        sys.exit(77)
    return values[0] if len(values) == 1 else values


def tmp_dir(default="/tmp"):
    """FITLM_TMP, or `default` outside ctest."""
    return os.environ.get("FITLM_TMP", default)


def check(cond, msg):
    """Counts one check; a failed one is printed as "FAIL: msg" (to stdout)."""
    global _passed, _failed
    if cond:
        _passed += 1
    else:
        _failed += 1
        print("FAIL:", msg)


def failed():
    """How many checks have failed so far."""
    return _failed


def report():
    """Prints the totals; returns the exit status (1 if any check failed)."""
    print("%d passed, %d failed" % (_passed, _failed))
    return 1 if _failed else 0


def run(binary, *args, timeout=None, input=None):
    """Runs binary with args (str() of each), capturing text stdout/stderr."""
    return subprocess.run([binary] + [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          input=input)


def run_ok(binary, *args, timeout=None):
    """run() that raises RuntimeError("fitlm ARGS failed: stderr") unless the
    program exits 0; returns the CompletedProcess."""
    r = run(binary, *args, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError("fitlm %s failed: %s" % (" ".join(str(a) for a in args), r.stderr))
    return r
