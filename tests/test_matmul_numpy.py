#!/usr/bin/env python3
"""fitlm_cpu_matmul (every kernel family the CPU has, 1 and 3 threads) against
numpy: weights dequantized by the independent numpy reference of
test_dequant.py (itself written from the GGUF block layouts), products summed
in float64.

fitlm quantizes activations to 8 bits (per 32 values for Q4_0/Q4_1/Q5_0/Q5_1/
Q8_0 weights, per 256 for the K types); each activation moves by at most half
a step, amax(block)/254, so each output may differ from the exact float64
result by at most sum_c |w_c| * amax(block of c) / 254, plus float32 rounding
(1e-5 * sum_c |w_c x_c|). BF16 weights round activations to bfloat16 (at most
2^-8 relative each: sum_c |w_c x_c| / 256); F16 weights use float activations:
only the rounding term."""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_dequant as ref  # noqa: E402  (the numpy dequantizers)


def main():
    np.seterr(all='ignore')
    tool = ref.tool_path()
    tmp = os.environ.get('FITLM_TMP', '/tmp')
    rng = np.random.default_rng(7)
    rows, cols, ntok = 13, 768, 3
    small = bool(os.environ.get('FITLM_SANITIZED'))
    failures = 0
    for name, (bs, bb, fn, half_offs) in ref.TYPES.items():
        if bs == 256 and cols % 256:
            continue
        nblk = rows * cols // bs
        raw = rng.integers(0, 256, (nblk, bb), dtype=np.uint8)
        for off in half_offs:  # ordinary positive/negative scales only
            h = (rng.normal(0, 0.01, nblk)).astype(np.float16).view(np.uint16).astype('<u2')
            raw[:, off:off + 2] = h.view(np.uint8).reshape(nblk, 2)
        if bs == 1:  # float weights: ordinary values
            vals = rng.normal(0, 0.05, rows * cols).astype(np.float32)
            raw = (vals.astype(np.float16).view(np.uint8) if name == 'F16' else
                   (vals.view(np.uint32) >> 16).astype('<u2').view(np.uint8)).reshape(-1, 2)
        w = fn(raw).reshape(rows, cols).astype(np.float64)
        x = rng.normal(0, 1, (ntok, cols)).astype(np.float32)
        x[:, ::97] *= 8  # outliers
        want = x.astype(np.float64) @ w.T  # (ntok, rows)
        mag = np.abs(x.astype(np.float64)) @ np.abs(w).T
        qb = 0 if bs == 1 else (32 if bs == 32 else 256)
        if qb:
            amax = np.abs(x).reshape(ntok, cols // qb, qb).max(axis=2).astype(np.float64)
            amax_c = np.repeat(amax, qb, axis=1)  # (ntok, cols)
            bound = (amax_c / 254.0) @ np.abs(w).T
        elif name == 'BF16':  # activations rounded to bfloat16: 2^-8 relative each
            bound = mag / 256.0
        else:
            bound = np.zeros_like(mag)
        tol = bound * 1.0001 + 1e-5 * mag + 1e-30
        pw, px, py = (os.path.join(tmp, 'mm_%s.%s' % (name, e)) for e in ('w', 'x', 'y'))
        raw.tofile(pw)
        x.tofile(px)
        for isa in ('scalar', 'avx2', 'avx512'):
            for threads in ((1,) if small else (1, 3)):
                r = subprocess.run([tool, 'matmul', name, pw, px, str(rows), str(cols), str(ntok), str(threads), isa, py],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    print('FAIL %s %s: tool exited %d: %s' % (name, isa, r.returncode, r.stderr.strip()))
                    failures += 1
                    continue
                got = np.fromfile(py, dtype='<f4').reshape(ntok, rows).astype(np.float64)
                err = np.abs(got - want)
                worst = float((err / tol).max())
                ran = r.stdout.strip()
                if not np.all(err <= tol):
                    print('FAIL %s (%s kernel asked %s, %d threads): %d of %d outputs beyond the bound (worst %.3g x)' %
                          (name, ran, isa, threads, int((err > tol).sum()), err.size, worst))
                    failures += 1
                else:
                    print('ok %s %s kernel, %d thread(s): worst error %.3f of the bound' % (name, ran, threads, worst))
        for p in (pw, px, py):
            if os.path.exists(p):
                os.remove(p)
    print('%d failures' % failures)
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
