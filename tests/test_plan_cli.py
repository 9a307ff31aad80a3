"""`fitlm plan` end to end: the JSON schema, the checks the planner must pass
(published numbers, ZeRO per-GPU model states, TP constraints, fits / does not
fit), every malformed-input path, the SVG, config.json input and search speed."""
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

BIN = os.environ["FITLM_BIN"]
TMP = os.environ.get("FITLM_TMP", "/tmp")
failures = 0
passed = 0


def check(cond, msg):
    global failures, passed
    if cond:
        passed += 1
    else:
        failures += 1
        print("FAIL:", msg, file=sys.stderr)


def run(*args):
    p = subprocess.run([BIN, "plan", *args], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def plan_json(*args):
    rc, out, err = run(*args, "--json")
    if rc != 0:
        raise AssertionError(f"fitlm plan {' '.join(args)} failed: {err}")
    return json.loads(out)


def get(d, path):
    for k in path.split("."):
        d = d[k]
    return d


# ---- stable JSON names ----
d = plan_json("llama-3-8b")
names = ["model.name", "model.params", "memory.weights_bytes", "memory.kv_cache_bytes", "memory.kv_bytes_per_token",
         "memory.activations_bytes", "memory.gradients_bytes", "memory.optimizer_bytes", "memory.overhead_bytes",
         "memory.per_device_bytes", "memory.total_bytes", "compute.flops_per_token", "plan.gpu", "plan.count",
         "plan.tp", "plan.pp", "plan.dp", "time.prefill_tokens_per_s", "time.decode_tokens_per_s",
         "cost.usd_per_hour", "cost.usd_per_million_tokens"]
for n in names:
    try:
        get(d, n)
        check(True, n)
    except (KeyError, TypeError):
        check(False, f"JSON lacks {n}")
check(isinstance(d["alternatives"], list) and len(d["alternatives"]) > 0, "alternatives array")
for alt in d["alternatives"]:
    for n in names[2:]:
        try:
            get(alt, n)
        except (KeyError, TypeError):
            check(False, f"alternative lacks {n}")
check(d["model"]["params"] == 8030261248, "llama-3-8b params")
check(d["memory"]["kv_bytes_per_token"] == 131072, "llama-3-8b kv/token")
# default workload: context 8192, batch 1; KV = 8192 tokens at 131072 B
check(d["memory"]["kv_cache_bytes"] == 8192 * 131072, "kv cache at ctx 8192")
check(d["time"]["decode_tokens_per_s"] > 0 and d["time"]["prefill_tokens_per_s"] > d["time"]["decode_tokens_per_s"],
      "prefill faster than decode")
check(len(d["other_formats"]) >= 4, "quantized alternatives shown")
# single device: per-device bytes = sum of the components and total = per device
pd = d["memory"]["per_device"]
check(abs(sum(pd[k] for k in ["weights_bytes", "kv_cache_bytes", "activations_bytes", "gradients_bytes",
                               "optimizer_bytes", "lora_bytes", "overhead_bytes"]) - d["memory"]["per_device_bytes"]) < 1,
      "per-device components add up")

for m, p, kv in [("llama-2-7b", 6738415616, 524288), ("llama-3-70b", 70553706496, 327680)]:
    x = plan_json(m, "--gpu", "H200")
    check(x["model"]["params"] == p, f"{m} params")
    check(x["memory"]["kv_bytes_per_token"] == kv, f"{m} kv/token")

# ---- Llama-3-70B: F16 does not fit one 80 GB GPU; 4-bit fits 48 GB and 80 GB ----
rc, out, err = run("llama-3-70b", "--gpu", "H100:1")
check(rc == 1 and err.startswith("fitlm: error:"), "70B F16 on one H100 must fail")
check(">= 2 x H100-SXM" in err and "4-bit" in err, f"hint names 2 x H100 and 4-bit: {err}")
x = plan_json("llama-3-70b", "--gpu", "H100:2")
check(x["plan"]["count"] == 2 and x["plan"]["tp"] * x["plan"]["pp"] == 2, "70B on 2 x H100")
check(140e9 < x["memory"]["weights_bytes"] < 142e9, "70B BF16 weights ~141 GB")
check(abs(x["memory"]["total_bytes"] - 2 * x["memory"]["per_device_bytes"]) / x["memory"]["total_bytes"] < 0.05,
      "total over two devices")
for gpu in ["RTX-A6000:1", "A100-80GB:1", "L40S:1"]:
    for q in ["awq", "gptq", "q4_k_m"]:
        x = plan_json("llama-3-70b", "-q", q, "--gpu", gpu)
        w = x["memory"]["weights_bytes"]
        check(35e9 <= w <= 43e9, f"70B {q} weights {w/1e9:.1f} GB")
        check(x["plan"]["count"] == 1, f"70B {q} on one {gpu}")
x = plan_json("llama-3-70b", "-q", "awq", "--gpu", "A100-80GB:1")
check(35e9 <= x["memory"]["weights_bytes"] <= 40e9, "AWQ 4-bit 35-40 GB, not 17.5")

# ---- training: ZeRO model states per GPU (Rajbhandari et al.) ----
P = 13015864320
for zero, n, expect in [(1, 8, 4 * P + 12 * P / 8), (2, 8, 2 * P + 14 * P / 8), (3, 8, 16 * P / 8),
                        (3, 32, 16 * P / 32)]:
    x = plan_json("llama-2-13b", "--train", "--zero", str(zero), "--gpu", f"H200:{n}", "--tp", "1", "--pp", "1",
                  "--recompute", "full")
    pdv = x["memory"]["per_device"]
    states = pdv["weights_bytes"] + pdv["gradients_bytes"] + pdv["optimizer_bytes"]
    check(abs(states - expect) / expect < 1e-9, f"ZeRO-{zero} N={n}: {states:.6g} vs {expect:.6g}")
    check(x["plan"]["zero"] == zero and x["plan"]["dp"] == n, "layout as requested")
# ZeRO-0: 16 x 13B = 208 GB of model states does not fit a 141 GB H200, whatever the DP size
rc, out, err = run("llama-2-13b", "--train", "--zero", "0", "--gpu", "H200:8", "--tp", "1", "--pp", "1")
check(rc == 1 and err.startswith("fitlm: error:"), "ZeRO-0 13B on H200 does not fit")
# replica components: 2 + 2 + 12 bytes per parameter
x = plan_json("llama-3.2-1b", "--train", "--gpu", "H100:1", "--zero", "0")
m = x["memory"]
check((m["weights_bytes"] + m["gradients_bytes"] + m["optimizer_bytes"]) == 16 * x["model"]["params"],
      "mixed-precision AdamW = 16 B/param")
x = plan_json("llama-3.2-1b", "--train", "--gpu", "H100:1", "--zero", "0", "--fp32-grads")
m = x["memory"]
check((m["weights_bytes"] + m["gradients_bytes"] + m["optimizer_bytes"]) == 18 * x["model"]["params"],
      "AdamW with fp32 gradients = 18 B/param")
# LoRA: base frozen, adapters small; QLoRA smaller still
full = plan_json("llama-3-8b", "--train", "--gpu", "A100-80GB:1", "--zero", "0", "--recompute", "full",
                 "--lora-rank", "16")
q = plan_json("llama-3-8b", "--train", "--gpu", "A100-80GB:1", "--zero", "0", "--recompute", "full", "--qlora")
check(full["memory"]["gradients_bytes"] == 0 and full["memory"]["lora_bytes"] > 0, "LoRA: no base gradients")
check(q["memory"]["weights_bytes"] < 0.4 * full["memory"]["weights_bytes"], "QLoRA base in 4 bit")
# rank 16 on q,k,v,o of Llama-3-8B: 16*(4096+4096 + 2*(4096+1024) + 4096+4096)*32 params, 16 bytes each
lp = 16 * ((4096 + 4096) * 2 + 2 * (4096 + 1024)) * 32
check(full["memory"]["lora_bytes"] == lp * 16, f"LoRA adapter bytes {full['memory']['lora_bytes']} vs {lp * 16}")
# offload to CPU moves optimizer states to the host
x = plan_json("llama-2-13b", "--train", "--gpu", "A100-80GB:4", "--zero", "2", "--offload-optimizer", "cpu")
check(x["memory"]["per_device"]["optimizer_bytes"] == 0 and x["memory"]["host_bytes"] > 12 * P / 4,
      "optimizer offload to host")

# ---- TP never divides heads wrongly ----
for model in ["qwen2.5-7b", "qwen2.5-0.5b", "llama-3.2-3b", "qwen2.5-1.5b"]:
    x = plan_json(model, "--quant", "any", "--top", "1000")
    heads, kv = x["model"]["heads"], x["model"]["kv_heads"]
    for r in [x] + x["alternatives"]:
        tp = r["plan"]["tp"]
        check(heads % tp == 0 and (kv % tp == 0 or tp % kv == 0), f"{model}: TP {tp} with {heads}/{kv} heads")
rc, out, err = run("qwen2.5-7b", "--tp", "8")
check(rc == 1 and "does not divide the 28 attention heads" in err, f"TP 8 on 28 heads: {err}")
# KV heads replicated when TP exceeds them: Qwen2.5-1.5B has 2 KV heads, TP 4 -> 1 head per device
x = plan_json("qwen2.5-1.5b", "--gpu", "L4:4", "--tp", "4")
kv_dev = x["memory"]["per_device"]["kv_cache_bytes"]
check(abs(kv_dev - x["memory"]["kv_cache_bytes"] / 2) < 1, "KV replicated beyond the KV heads")
# sliding window: Mistral 7B v0.1 keeps 4096 tokens per sequence
x = plan_json("mistral-7b", "-c", "32768", "--gpu", "H100:1")
check(x["memory"]["kv_cache_bytes"] == 4096 * x["memory"]["kv_bytes_per_token"], "sliding window KV")
# KV type: q8_0 = 34/32 bytes per value
x = plan_json("llama-3-8b", "--kv-type", "q8_0", "--gpu", "H100:1")
check(x["memory"]["kv_bytes_per_token"] == 131072 / 2 * 34 / 32, "q8_0 KV bytes")
# objectives and constraints
lat = plan_json("llama-3-8b", "--objective", "latency")
cost = plan_json("llama-3-8b", "--objective", "cost")
check(lat["time"]["decode_tokens_per_s"] >= cost["time"]["decode_tokens_per_s"], "latency objective is faster")
check(cost["cost"]["usd_per_million_tokens"] <= lat["cost"]["usd_per_million_tokens"], "cost objective is cheaper")
x = plan_json("llama-3-8b", "--min-tokens-per-s", "1000", "--gpu", "H100")
check(x["time"]["decode_tokens_per_s"] >= 1000, "min tokens/s met with replicas")
x = plan_json("llama-3-8b", "--max-cost", "1")
check(x["cost"]["usd_per_hour"] <= 1, "max cost")
# pipeline parallel layout of a model that needs it
x = plan_json("llama-3.1-405b", "-q", "fp8", "--gpu", "H100")
check(x["plan"]["count"] >= 6, "405B FP8 needs several H100")

# ---- malformed inputs: fitlm: error: ... and exit 1 ----
bad_cfg = os.path.join(TMP, "plan_bad_config.json")
with open(bad_cfg, "w") as f:
    f.write('{"model_type": "llama", "hidden_size": 4096,')
missing_cfg = os.path.join(TMP, "plan_missing_config.json")
with open(missing_cfg, "w") as f:
    json.dump({"model_type": "llama", "hidden_size": 4096}, f)
neg_cfg = os.path.join(TMP, "plan_neg_config.json")
with open(neg_cfg, "w") as f:
    json.dump({"model_type": "llama", "hidden_size": -5, "num_hidden_layers": 2, "num_attention_heads": 2,
               "intermediate_size": 8, "vocab_size": 10}, f)
bad_gpus = os.path.join(TMP, "plan_bad_gpus.json")
with open(bad_gpus, "w") as f:
    json.dump({"gpus": [{"name": "X", "memory_gib": 1e9, "mem_bw_gbs": 1, "fp16_tflops": 1}]}, f)
cases = [
    ["no-such-model"], ["llama-3-8b", "--gpu", "no-such-gpu"], ["llama-3-8b", "-c", "-5"],
    ["llama-3-8b", "-c", "1e12"], ["llama-3-8b", "-c", "abc"], ["llama-3-8b", "--batch", "0"],
    ["llama-3-8b", "-c", "100000"], ["llama-3-8b", "--max-cost", "0.01"], ["llama-3-8b", "--quant", "q9_z"],
    ["llama-3-8b", "--kv-type", "bogus"], ["llama-3-8b", "--objective", "fun"], ["llama-3-8b", "--zero", "4"],
    ["llama-3-8b", "--tp", "3"], ["llama-3-8b", "--pp", "100"], ["llama-3-8b", "--margin", "2"],
    ["llama-3-8b", "--gpu", "H100:0"], ["llama-3-8b", "--gpu", "H100:-2"], ["llama-3-8b", "--bogus-flag"],
    ["llama-3-8b", "--min-tokens-per-s", "1e11"], ["llama-3-8b", "--max-ttft", "0.000001"],
    ["llama-3-8b", "--prompt-tokens", "9000"], ["llama-3-8b", "--train", "--seq-len", "999999"],
    ["llama-3-8b", "--train", "--offload-params", "cpu", "--zero", "2"], [bad_cfg], [missing_cfg], [neg_cfg],
    ["/nonexistent/config.json"], ["llama-3-8b", "--gpus-file", bad_gpus], ["llama-3-8b", "--gpus-file", "/nope"],
    ["llama-3.1-405b", "--gpu", "RTX-4090:1"], ["llama-3-8b", "--gpu", "H100:3", "--tp", "2"], [],
    ["llama-3-8b", "llama-3-70b"], ["llama-3-8b", "--svg", "/nonexistent-dir/x.svg"],
]
for c in cases:
    rc, out, err = run(*c)
    check(rc == 1 and err.startswith("fitlm: error: ") and "Traceback" not in err and len(err.splitlines()) == 1,
          f"{c}: rc={rc} err={err!r}")

# ---- config.json and HF folder input ----
cfg_dir = os.path.join(TMP, "plan-Llama-3-8B-config")
os.makedirs(cfg_dir, exist_ok=True)
cfg = {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_attention_heads": 32,
       "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 8192,
       "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
with open(os.path.join(cfg_dir, "config.json"), "w") as f:
    json.dump(cfg, f)
for src in [os.path.join(cfg_dir, "config.json"), cfg_dir]:
    x = plan_json(src, "--gpu", "H100:1")
    check(x["model"]["params"] == 8030261248 and x["memory"]["kv_bytes_per_token"] == 131072, f"config input {src}")

# ---- SVG ----
svg = os.path.join(TMP, "plan.svg")
rc, out, err = run("llama-3-70b", "--gpu", "H100:4", "--pp", "2", "--svg", svg)
check(rc == 0 and os.path.exists(svg), f"svg written: {err}")
root = ET.parse(svg).getroot()
ns = "{http://www.w3.org/2000/svg}"
check(root.tag == ns + "svg", "svg root")
rects = root.findall(f".//{ns}rect")
texts = "".join(t.text or "" for t in root.iter(f"{ns}text"))
check(len(rects) >= 4 * 3, f"stacked bars for 4 devices ({len(rects)} rects)")
check("capacity 80.0 GiB" in texts and "GPU 3" in texts and "weights" in texts, "labels in svg")
rc, out, err = run("llama-3-8b", "--train", "--gpu", "H100:8", "--svg", svg)
ET.parse(svg)
check(rc == 0, "training svg")

# ---- custom hardware (--gpus-file) and this machine's CPU ----
custom = os.path.join(TMP, "plan_custom_gpus.json")
with open(custom, "w") as f:
    json.dump({"gpus": [{"name": "Big-Card", "memory_gib": 1000, "mem_bw_gbs": 10000, "fp16_tflops": 5000,
                         "cloud_usd_per_hour": 1.0, "purchase_usd": 1000}]}, f)
x = plan_json("llama-3-70b", "--gpus-file", custom, "--gpu", "big-card")
check(x["plan"]["gpu"] == "Big-Card" and x["plan"]["count"] == 1 and x["cost"]["usd_per_hour"] == 1.0,
      "custom GPU used")
# decode is bandwidth-bound: 0.8 * 10 TB/s / (141 GB + KV at the mean context 1024 + 256/2) per token
check(abs(x["time"]["decode_tokens_per_s"] - 0.8 * 10000e9 / (x["memory"]["weights_bytes"] +
                                                               1152 * x["memory"]["kv_bytes_per_token"])) < 0.05,
      f"bandwidth-bound decode {x['time']['decode_tokens_per_s']}")
x = plan_json("llama-3.2-1b", "--gpu", "cpu", "-q", "q4_k_m")
check(x["plan"]["gpu"] == "CPU" and x["cost"]["usd_per_hour"] == 0, "plan on this machine's CPU")
x = plan_json("llama-3-8b", "--pretrain", "--gpu", "H100:8")
check(x["mode"] == "training" and x["workload"]["method"] == "pretrain", "pretrain label")

# ---- lists ----
rc, out, err = run("--list-models")
for n in ["Llama-2-7B", "Llama-3.1-405B", "Qwen2.5-72B", "Mistral-7B-v0.1", "DeepSeek-R1-Distill-Qwen-32B"]:
    check(n in out, f"--list-models shows {n}")
rc, out, err = run("--list-gpus")
for n in ["RTX-3090", "RTX-5090", "A10G", "L4", "L40S", "RTX-A6000", "A100-40GB", "H100-PCIe", "B200", "MI300X",
          "CPU"]:
    check(n in out, f"--list-gpus shows {n}")

# ---- text output and search speed ----
rc, out, err = run("llama-3-8b")
check(rc == 0 and "PLAN:" in out and "Memory" in out and "Alternatives" in out, "default text plan")
x = plan_json("llama-3-70b", "--quant", "any", "--kv-type", "any", "--offload", "cpu", "--top", "5")
check(x["search"]["cpu_seconds"] < 0.5, f"full inference search took {x['search']['cpu_seconds']:.3f} s CPU")
x = plan_json("llama-3.1-405b", "--train")
check(x["search"]["cpu_seconds"] < 0.5, f"full training search took {x['search']['cpu_seconds']:.3f} s CPU")

print(f"{passed} passed, {failures} failed")
sys.exit(1 if failures else 0)
