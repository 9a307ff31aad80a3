#!/usr/bin/env python3
"""Distributed decode on paper (issue 11, docs/benchmarks.md): TinyLlama and
Llama-3-70B in Q4_0 over 2, 4 and 8 nodes like this machine, on 10, 25 and
100 GbE, tensor parallel (TP N) and pipeline parallel (PP N), one sequence.

Two columns per cell, computed independently:
  hand     from a measured decode on this machine (`fitlm bench` tg on the
           TinyLlama-shaped and the Llama-3-8B-shaped Q4_0 files: milliseconds
           per token and the weight bytes a token streams, hence this node's
           decode GB/s) and the alpha/beta model of the link written out here:
             TP N: per-token time = the node's bytes (1/N of every layer, the
                   whole output matrix) / measured GB/s
                   + 2 x layers all-reduces of dim x 4 bytes, each as a ring:
                     2 (N-1) steps of alpha/2 and 2 (N-1)/N x bytes / bw
             PP N: the whole model's bytes / measured GB/s (a token passes
                   every stage) + (N-1) one-way sends of dim x 4 bytes
                   (alpha/2 + bytes / bw)
  planner  `fitlm plan MODEL -q q4_0 --gpu cpu:N --tp N (or --pp N)
           --nodes-link LINK --json` with this machine's host profile.
The link figures are the planner's stated assumptions (host_comm.h): goodput
94 % of the line rate, all-reduce latency 30 us (10/25 GbE) and 20 us (100 GbE)
over kernel TCP. Llama-3-70B (about 37 GiB in Q4_0) does not fit one node of
this machine, so it starts at 2 nodes.

usage: bench/multinode.py [--fitlm build/fitlm] [--tiny tinyllama-Q4_0.gguf]
                          [--big llama3-8b-Q4_0.gguf] [--tiny-ms X --tiny-bytes B]
                          [--big-ms X --big-bytes B]
(the --*-ms/--*-bytes pairs skip the measurement: ms per token and bytes per token)
"""
import argparse
import json
import re
import subprocess
import sys

LINKS = {"10gbe": (30e-6, 10e9 / 8 * 0.94), "25gbe": (30e-6, 25e9 / 8 * 0.94), "100gbe": (20e-6, 100e9 / 8 * 0.94)}
# name: (planner preset, layers, dim, vocab, Q4_0 bytes of the output matrix share computed below)
MODELS = {"TinyLlama-1.1B": ("tinyllama-1.1b", 22, 2048, 32000), "Llama-3-70B": ("llama-3-70b", 80, 8192, 128256)}
Q4_0_BYTES_PER_WEIGHT = 18 / 32


def measure(fitlm, path):
    out = subprocess.run([fitlm, "bench", "-m", path, "-p", "0", "-n", "64", "-r", "3", "--no-plan-check",
                          "--membw-mib", "0"], capture_output=True, text=True, check=True).stdout
    tps = float(re.search(r"\| tg64 +\| +([0-9.]+)", out).group(1))
    mb = float(re.search(r"generation streams ([0-9.]+) MB of weights per token", out).group(1))
    return 1000.0 / tps, mb * 1e6


def ring_allreduce(bytes_, n, alpha, bw):
    return 2 * (n - 1) * alpha / 2 + 2 * (n - 1) / n * bytes_ / bw


def plan(fitlm, preset, n, layout, link):
    args = [fitlm, "plan", preset, "-q", "q4_0", "-c", "2048", "-b", "1", "--prompt-tokens", "64", "-n", "64",
            "--gpu", f"cpu:{n}", f"--{layout}", str(n), "--nodes-link", link, "--json"]
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.stderr.strip()
    d = json.loads(p.stdout)
    return d["time"], None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fitlm", default="build/fitlm")
    ap.add_argument("--tiny", default="/tmp/fitlm-bench/tinyllama-Q4_0.gguf")
    ap.add_argument("--big", default="/tmp/fitlm-bench/llama3-8b-Q4_0.gguf")
    ap.add_argument("--tiny-ms", type=float)
    ap.add_argument("--tiny-bytes", type=float)
    ap.add_argument("--big-ms", type=float)
    ap.add_argument("--big-bytes", type=float)
    a = ap.parse_args()
    tiny = (a.tiny_ms, a.tiny_bytes) if a.tiny_ms and a.tiny_bytes else measure(a.fitlm, a.tiny)
    big = (a.big_ms, a.big_bytes) if a.big_ms and a.big_bytes else measure(a.fitlm, a.big)
    print(f"measured: TinyLlama Q4_0 {tiny[0]:.2f} ms/token ({tiny[1] / 1e6:.1f} MB/token, "
          f"{tiny[1] / tiny[0] / 1e6:.1f} GB/s); Llama-3-8B Q4_0 {big[0]:.2f} ms/token "
          f"({big[1] / 1e6:.1f} MB/token, {big[1] / big[0] / 1e6:.1f} GB/s: the rate used for Llama-3-70B)\n")
    print("| model | nodes | link | TP: hand t/s | TP: plan t/s | TP comm ms/token | PP: hand t/s | PP: plan t/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (preset, layers, dim, vocab) in MODELS.items():
        out_bytes = vocab * dim * Q4_0_BYTES_PER_WEIGHT
        if name.startswith("Tiny"):
            ms, total = tiny
            rate = total / (ms / 1e3)  # bytes/s this node decodes at
        else:
            rate = big[1] / (big[0] / 1e3)
            params = {"llama-3-70b": 70553706496}[preset]
            total = params * Q4_0_BYTES_PER_WEIGHT
        layer_bytes = total - out_bytes
        for n in (2, 4, 8):
            for link, (alpha, bw) in LINKS.items():
                m = dim * 4
                tp_comm = 2 * layers * ring_allreduce(m, n, alpha, bw)
                tp_s = (layer_bytes / n + out_bytes) / rate + tp_comm
                pp_s = total / rate + (n - 1) * (alpha / 2 + m / bw)
                tp_plan, e1 = plan(a.fitlm, preset, n, "tp", link)
                pp_plan, e2 = plan(a.fitlm, preset, n, "pp", link)

                def cell(t, e):
                    return f"{t['decode_tokens_per_s']:.2f}" if t else "does not fit" if "fit" in (e or "") else "-"

                print(f"| {name} | {n} | {link} | {1 / tp_s:.2f} | {cell(tp_plan, e1)} | {tp_comm * 1e3:.2f} | "
                      f"{1 / pp_s:.2f} | {cell(pp_plan, e2)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
