"""The planner against published, sourced measurements (GPU). Each row: what
was measured, where (URL), the measured figure, the planner's prediction, the
error and the tolerance stated for the row. A row's status is recorded here
("pass": within its tolerance; "miss": a known miss, outside it, with the
reason), and the test fails when a row's status changes either way, so the
table in docs/planner.md ("Validation against published measurements") stays
true. Run with --markdown to print that table."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyutil"))
import testenv as te  # noqa: E402
from testenv import check  # noqa: E402

BIN = os.environ["FITLM_BIN"]
GIB = 2**30
_cache = {}


def plan(*args):
    key = tuple(args)
    if key not in _cache:
        p = subprocess.run([BIN, "plan", *args, "--json", "--no-profile"], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise AssertionError(f"fitlm plan {' '.join(args)}: {p.stderr}")
        _cache[key] = json.loads(p.stdout)
    return _cache[key]


def gpus():
    p = subprocess.run([BIN, "plan", "--list-gpus", "--json"], capture_output=True, text=True, timeout=60)
    return {g["name"]: g for g in json.loads(p.stdout)}


G = gpus()
VLLM = "https://github.com/vllm-project/vllm/pull/10511"  # vllm serve meta-llama/Meta-Llama-3-8B on H100, TP 1 and 2
VLLM_10517 = "https://github.com/vllm-project/vllm/issues/10517"  # RTX 3090, Llama-3.1-8B-Instruct, vLLM 0.6.4 logs
VLLM_L40S = "https://github.com/vllm-project/vllm/pull/17122"  # Llama-3.1-8B-Instruct on 1x L40S, vLLM v1
LCPP_7676 = "https://github.com/ggml-org/llama.cpp/pull/7676"
LCPP_7860 = "https://github.com/ggml-org/llama.cpp/pull/7860"
LCPP_15802 = "https://github.com/ggml-org/llama.cpp/pull/15802"
LCPP_17505 = "https://github.com/ggml-org/llama.cpp/pull/17505"
LCPP_6017 = "https://github.com/ggml-org/llama.cpp/pull/6017"
MLC = "https://github.com/mlc-ai/llm-perf-bench/pull/1"
QLORA = "https://arxiv.org/abs/2305.14314"  # QLoRA (Dettmers et al. 2023): "finetune a 65B parameter model on a single 48GB GPU"
# LLaMA-65B (huggyllama/llama-65b config.json) and the paper's 65B run as scripts/finetune_guanaco_65b.sh of
# https://github.com/artidoro/qlora sets it: r 64 on all linear layers, micro-batch 4, 16 + 512 tokens,
# gradient checkpointing, bf16 adapters, paged 32-bit AdamW


def llama1_config(name, hidden, ffn, heads, layers, eps):
    """Writes a LLaMA-1 config.json (MHA, vocabulary 32000, 2048 positions) to the test's temporary directory;
    returns its path (removed at the end of the test)."""
    path = os.path.join(te.tmp_dir(), f"plan_validation_{name}_{os.getpid()}.json")
    with open(path, "w") as fh:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
                   "intermediate_size": ffn, "num_attention_heads": heads, "num_hidden_layers": layers,
                   "num_key_value_heads": heads, "vocab_size": 32000, "max_position_embeddings": 2048,
                   "rms_norm_eps": eps, "tie_word_embeddings": False, "torch_dtype": "float16"}, fh)
    return path


LLAMA65 = llama1_config("llama65b", 8192, 22016, 64, 80, 1e-05)
# ExLlama's own benchmark (turboderp/exllama README, "Results so far"; stock RTX 4090 / 12900K): 4-bit GPTQ, group
# 128, no act-order, max_seq_len 2048; test_benchmark_inference.py -p runs one forward over a 1920-token prompt
# ("Prompt"), generates 128 tokens after it ("Worst": contexts 1920-2048), then cuts the cache to 4 tokens and
# generates 128 more ("Best": contexts 4-132). LLaMA-7B and -13B have the Llama-2 presets' shapes; LLaMA-30B
# ("33B") is huggyllama/llama-30b's config.json
EXLLAMA = "https://github.com/turboderp/exllama/blob/30d80517eac7f85c849e4a6bb8160683f050a196/README.md"
LLAMA33 = llama1_config("llama33b", 6656, 17920, 52, 60, 1e-06)


def exllama(model, prompt):
    return plan(model, "-q", "gptq", "--gpu", "RTX-4090:1", "-c", "2048", "--prompt-tokens", str(prompt), "-n", "128",
                "--engine", "exllama")["time"]


# TensorRT-LLM's "Low Latency" tables (docs/source/performance.md, data from v0.5): first-token latency at batch 1,
# one output token; the engines of its methodology section (Llama2-7b, Llama2-70b; --enable_fp8 --fp8_kv_cache on
# H100 and L40S, FP16 on A100)
TRTLLM = "https://github.com/NVIDIA/TensorRT-LLM/blob/77d24b5fa178f11ed7fafdd9833b7245e075f721/docs/source/performance.md"


def trtllm_ttft_ms(model, gpu, fmt, prompt, tp=1):
    kv = ("--kv-type", "fp8") if fmt == "fp8" else ()
    return plan(model, "-q", fmt, *kv, "--gpu", gpu, "--tp", str(tp), "-c", "4096", "--prompt-tokens", str(prompt),
                "-n", "1", "--engine", "trt-llm")["time"]["ttft_s"] * 1e3


LLAMA3 = "https://arxiv.org/abs/2407.21783"  # The Llama 3 Herd of Models, Table 4 (405B scaling configurations and MFU)
L3_SETUP = ("--tp", "8", "--pp", "16", "--seq-len", "8192", "--micro-batch", "1", "--global-batch", "2048",
            "--zero", "2", "--recompute", "none", "--margin", "0", "--fragmentation", "0")

# (what, source, measured, unit, predicted (callable), tolerance, status, note)
ROWS = [
    ("H100 80GB: memory CUDA leaves a process (vLLM total_gpu_memory)", "https://github.com/vllm-project/vllm/pull/12126",
     79.22, "GiB", lambda: G["H100-SXM"]["usable_memory_bytes"] / GIB, 0.005, "pass",
     "catalog value taken from #10511's log; this is a second log"),
    ("24 GB GeForce: vLLM total_gpu_memory", "https://github.com/vllm-project/vllm/pull/14447",
     23.58, "GiB", lambda: G["RTX-3090"]["usable_memory_bytes"] / GIB, 0.005, "pass",
     "catalog value taken from vLLM issue #11550 (23.55 GiB); this is a second log"),
    ("Llama-3-8B BF16 weights, vLLM, H100 TP 1", VLLM, 14.96, "GiB",
     lambda: plan("llama-3-8b", "--gpu", "H100-SXM:1", "--engine", "vllm")["memory"]["per_device"]["weights_bytes"] / GIB, 0.01, "pass", ""),
    ("Llama-3-8B BF16 weights per GPU, vLLM, H100 TP 2", VLLM, 7.48, "GiB",
     lambda: plan("llama-3-8b", "--gpu", "H100-SXM:2", "--tp", "2", "--engine", "vllm")["memory"]["per_device"]["weights_bytes"] / GIB,
     0.01, "pass", ""),
    ("Llama-3.1-8B-Instruct weights, vLLM v1, L40S", VLLM_L40S, 14.9889, "GiB",
     lambda: plan("llama-3.1-8b", "--gpu", "L40S:1", "-c", "32768", "--engine", "vllm")["memory"]["per_device"]["weights_bytes"] / GIB,
     0.01, "pass", ""),
    ("CodeLlama-7B F16 model size, llama-bench", LCPP_6017, 12.55, "GiB",
     lambda: plan("llama-2-7b", "-q", "f16", "--gpu", "A100-80GB:1")["memory"]["weights_bytes"] / GIB, 0.01, "pass",
     "Llama-2-7B shape (vocabulary 32000 vs 32016)"),
    ("vLLM non-torch memory, Llama-3-8B, H100 TP 1", VLLM, 1.79, "GiB",
     lambda: plan("llama-3-8b", "--gpu", "H100-SXM:1", "--engine", "vllm")["memory"]["per_device"]["overhead_bytes"] / GIB,
     0.01, "pass",
     "the constant is this figure (calibration row)"),
    ("vLLM non-torch memory, Llama-3-8B, H100 TP 2", VLLM, 3.58, "GiB",
     lambda: plan("llama-3-8b", "--gpu", "H100-SXM:2", "--tp", "2", "--engine", "vllm")["memory"]["per_device"]
     ["overhead_bytes"] / GIB, 0.01,
     "pass", "the constant is this figure (calibration row)"),
    ("vLLM PyTorch activation peak, Llama-3-8B, H100 TP 1", VLLM, 1.26, "GiB",
     lambda: plan("llama-3-8b", "--gpu", "H100-SXM:1", "--engine", "vllm")["memory"]["per_device"]["activations_bytes"]
     / GIB, 0.10, "pass",
     "profile run of 8192 tokens: max(forward MLP 0.84, sampler's top-k/top-p sort 1.22)"),
    ("vLLM PyTorch activation peak, Llama-3-8B, H100 TP 2", VLLM, 1.26, "GiB",
     lambda: plan("llama-3-8b", "--gpu", "H100-SXM:2", "--tp", "2", "--engine", "vllm")["memory"]["per_device"]
     ["activations_bytes"] / GIB,
     0.10, "pass", "the sampler phase dominates and TP does not split it (the driver gathers the full vocabulary)"),
    ("vLLM available KV cache memory, Llama-3-8B, H100 TP 1", VLLM, 53.29, "GiB",
     lambda: plan("llama-3-8b", "--gpu", "H100-SXM:1", "--engine", "vllm")["serving_vllm"]["kv_cache_memory_bytes"] / GIB,
     0.03, "pass",
     ""),
    ("vLLM v1 GPU KV cache size, Llama-3.1-8B, L40S, max_model_len 32768", VLLM_L40S, 158656, "tokens",
     lambda: plan("llama-3.1-8b", "--gpu", "L40S:1", "-c", "32768", "--engine", "vllm")["serving_vllm"]["kv_tokens"], 0.05, "pass",
     "the L40S's 44.42 GiB as CUDA reports it (data/gpus.json; the catalog said nvidia-smi's 44.99 before, +5.2 %); "
     "the rest is v1's profile run, not modelled (torch.compile, its own sampler): the planner models V0's, whose "
     "peak is max(forward, sampler) (rows 9, 10, 25, 26)"),
    ("vLLM v1 maximum concurrency for 32,768-token requests, L40S", VLLM_L40S, 4.84, "x",
     lambda: plan("llama-3.1-8b", "--gpu", "L40S:1", "-c", "32768", "--engine", "vllm")["serving_vllm"]["max_concurrency"], 0.05, "pass",
     "as row 12"),
    ("llama.cpp decode (pp512 at micro-batch 1), Llama-3-8B Q4_0, RTX 3090", LCPP_15802, 156.56, "tok/s",
     lambda: plan("llama-3-8b", "-q", "q4_0", "--gpu", "RTX-3090:1", "-c", "1024", "--prompt-tokens", "256",
                  "-n", "512", "--engine", "llama.cpp")["time"]["decode_tokens_per_s"], 0.15, "pass", ""),
    ("llama.cpp decode at depth 32768 (micro-batch 1), Llama-3-8B Q4_0, RTX 4090", LCPP_17505, 102.76, "tok/s",
     lambda: plan("llama-3.1-8b", "-q", "q4_0", "--gpu", "RTX-4090:1", "-c", "33280", "--prompt-tokens", "32768",
                  "-n", "2", "--engine", "llama.cpp")["time"]["decode_tokens_per_s"], 0.15, "pass", ""),
    ("llama.cpp pp512 (micro-batch 512, int8 MMA), Llama-3-8B Q4_0, RTX 4090", LCPP_7676, 10358.75, "tok/s",
     lambda: plan("llama-3-8b", "-q", "q4_0", "--gpu", "RTX-4090:1", "-c", "1024", "--prompt-tokens", "512",
                  "-n", "16", "--engine", "llama.cpp")["time"]["prefill_tokens_per_s"], 0.25, "pass",
     "calibration row: llama.cpp's MMQ efficiency on the INT8 peak (21 %) is fitted to this row and the next"),
    ("llama.cpp pp2048 (micro-batch 512), Llama-3-8B Q6_K, RTX 3090", LCPP_7860, 3491.20, "tok/s",
     lambda: plan("llama-3-8b", "-q", "q6_k", "--gpu", "RTX-3090:1", "-c", "4096", "--prompt-tokens", "2048",
                  "-n", "16", "--engine", "llama.cpp")["time"]["prefill_tokens_per_s"], 0.25, "pass",
     "calibration row (with the previous one)"),
    ("MLC LLM decode, Llama-2-7B 4-bit, RTX 4090", MLC, 191.0, "tok/s",
     lambda: plan("llama-2-7b", "-q", "q4_0", "--gpu", "RTX-4090:1", "-c", "1024", "--prompt-tokens", "128",
                  "-n", "256")["time"]["decode_tokens_per_s"], 0.15, "pass", "q4f16 (4.5 bits/weight) as Q4_0"),
    ("MLC LLM decode, Llama-2-13B 4-bit, RTX 4090", MLC, 108.8, "tok/s",
     lambda: plan("llama-2-13b", "-q", "q4_0", "--gpu", "RTX-4090:1", "-c", "1024", "--prompt-tokens", "128",
                  "-n", "256")["time"]["decode_tokens_per_s"], 0.15, "pass", ""),
    ("ExLlama decode, Llama-2-7B GPTQ, RTX 4090", MLC, 152.56, "tok/s",
     lambda: plan("llama-2-7b", "-q", "gptq", "--gpu", "RTX-4090:1", "-c", "1024", "--prompt-tokens", "128",
                  "-n", "256", "--engine", "exllama")["time"]["decode_tokens_per_s"], 0.15, "pass",
     "with ExLlama's fixed 0.98 ms per step (fitted to row 28); ExLlama's author measured 173 tok/s for the same "
     "model and card, this third-party run is 12 % below"),
    ("ExLlama decode, Llama-2-13B GPTQ, RTX 4090", MLC, 93.88, "tok/s",
     lambda: plan("llama-2-13b", "-q", "gptq", "--gpu", "RTX-4090:1", "-c", "1024", "--prompt-tokens", "128",
                  "-n", "256", "--engine", "exllama")["time"]["decode_tokens_per_s"], 0.15, "pass",
     "with ExLlama's fixed cost per step"),
    ("QLoRA Guanaco-65B fine-tune on one 48 GB GPU (peak memory at most the card's 48 GiB)", QLORA, 48.0,
     "GiB at most", lambda: plan(LLAMA65, "--train", "--qlora", "--lora-rank", "64", "--lora-targets", "all",
                                 "--gpu", "RTX-A6000:1", "--seq-len", "528", "--micro-batch", "4", "--global-batch",
                                 "16", "--recompute", "full", "--margin", "0")["memory"]["per_device_bytes"] / GIB,
     0.0, "pass", "bf16 adapters and gradients + 32-bit Adam states (12 bytes per adapter parameter, as qlora.py "
     "runs it); with PEFT's fp32 adapters (16 bytes) the planner said 48.8 GiB: does not fit"),
    # Llama 3's setup (section 3.3.2 and Table 4): TP 8, PP 16, micro-batch 1, 16M-token batches of 8K sequences,
    # FSDP sharding the optimizer states and gradients but not the weights (ZeRO-2), no activation checkpointing
    # ("we could pre-train Llama 3 on 8K tokens sequences without activation checkpointing"), and the run fit the
    # 80 GB cards: memory is checked against the card (--margin 0, as row 22); no allowance for allocator
    # fragmentation (--fragmentation 0: "based on detailed memory allocation profiling, we proactively deallocate
    # tensors that will not be used for future computation", with TORCH_NCCL_AVOID_RECORD_STREAMS against the
    # asynchronous sends' memory); interleaving and the embedding/loss split are searched
    ("Llama 3 405B pre-training MFU, 16,384 H100, TP 8 PP 16 DP 128, 8K sequences (Table 4: 41 %)", LLAMA3,
     0.41, "MFU", lambda: plan("llama-3.1-405b", "--train", "--gpu", "H100-SXM:16384", *L3_SETUP)["time"]["mfu"],
     0.10, "pass", "interleaved x8 with the embedding and the output + loss as pipeline layers (Llama 3's split: "
     "bubble 10.5 %), no recomputation: 70.61 GiB per GPU (76.97 with the default 10 % fragmentation allowance)"),
    ("Llama 3 405B pre-training MFU, 8,192 H100, TP 8 PP 16 DP 64, 8K sequences (Table 4: 43 %)", LLAMA3,
     0.43, "MFU", lambda: plan("llama-3.1-405b", "--train", "--gpu", "H100-SXM:8192", *L3_SETUP)["time"]["mfu"],
     0.10, "pass", "32 micro-batches: interleaved x8 keeps up to 17.6 in flight on a middle stage, 77.39 GiB per "
     "GPU: it fits the 79.22 only without a fragmentation allowance (with the default 10 %, 84.4 GiB, the search "
     "falls back to plain 1F1B, bubble 31.9 %: 31.3 %, -27 %)"),
    # the same log format as #10511 one release earlier: peak_torch_memory (weights + activation peak) minus the
    # 14.9888 GiB of weights; max_num_batched_tokens = max_model_len, so the forward phase dominates (on an L40S:
    # the planner's non-torch constant, H100's 1.79 GiB against the 3090's logged 0.35, keeps 29,000 tokens off the
    # 24 GB card; the profile's peak does not depend on the card)
    ("vLLM activation peak (peak_torch_memory - weights), Llama-3.1-8B, max_model_len 20000", VLLM_10517,
     17.06 - 14.9888, "GiB", lambda: plan("llama-3.1-8b", "--gpu", "L40S:1", "-c", "20000", "--engine", "vllm")
     ["serving_vllm"]["activation_peak_bytes"] / GIB, 0.05, "pass", "forward phase: 20,000 tokens through the MLP"),
    ("vLLM activation peak (peak_torch_memory - weights), Llama-3.1-8B, max_model_len 29000", VLLM_10517,
     17.98 - 14.9888, "GiB", lambda: plan("llama-3.1-8b", "--gpu", "L40S:1", "-c", "29000", "--engine", "vllm")
     ["serving_vllm"]["activation_peak_bytes"] / GIB, 0.05, "pass", "as the row above"),
    ("Llama 3 405B 8K pre-training without activation checkpointing fits an 80 GB H100 (16,384 GPUs, 8 chunks per "
     "stage, embedding/loss split)", LLAMA3, 79.22, "GiB at most",
     lambda: plan("llama-3.1-405b", "--train", "--gpu", "H100-SXM:16384", *L3_SETUP, "--pp-interleave", "8",
                  "--pp-embedding-split", "yes")["memory"]["per_device_bytes"] / GIB, 0.0, "pass",
     "the card's memory as CUDA reports it (row 1); 8 chunks: the first chunk of the first stage holds only the "
     "embedding (section 3.3.2), so one layer per chunk"),
    ("ExLlama decode \"Best\" (128 tokens at contexts 4-132), LLaMA-7B GPTQ, RTX 4090", EXLLAMA, 173.0, "tok/s",
     lambda: exllama("llama-2-7b", 4)["decode_tokens_per_s"], 0.15, "pass",
     "Llama-2-7B shape; calibration row: ExLlama's fixed time per step (0.98 ms) is fitted to it"),
    ("ExLlama decode \"Worst\" (128 tokens at contexts 1920-2048), LLaMA-7B GPTQ, RTX 4090", EXLLAMA, 140.0,
     "tok/s", lambda: exllama("llama-2-7b", 1920)["decode_tokens_per_s"], 0.15, "pass",
     "the 1 GiB of F16 KV cache at 2048 positions read per token"),
    ("ExLlama prompt (one 1920-token forward), LLaMA-7B GPTQ, RTX 4090", EXLLAMA, 13918.0, "tok/s",
     lambda: exllama("llama-2-7b", 1920)["prefill_tokens_per_s"], 0.25, "pass",
     "the GPTQ matrices reconstructed to FP16 for cublasHgemm: FP16 accumulate, 330 TFLOP/s on a 4090 (the "
     "generic FP32-accumulate path said 7,218: -48 %)"),
    ("ExLlama decode \"Best\", LLaMA-13B GPTQ, RTX 4090", EXLLAMA, 102.0, "tok/s",
     lambda: exllama("llama-2-13b", 4)["decode_tokens_per_s"], 0.15, "pass", "Llama-2-13B shape"),
    ("ExLlama decode \"Worst\", LLaMA-13B GPTQ, RTX 4090", EXLLAMA, 86.0, "tok/s",
     lambda: exllama("llama-2-13b", 1920)["decode_tokens_per_s"], 0.15, "pass", ""),
    ("ExLlama prompt (one 1920-token forward), LLaMA-13B GPTQ, RTX 4090", EXLLAMA, 7507.0, "tok/s",
     lambda: exllama("llama-2-13b", 1920)["prefill_tokens_per_s"], 0.25, "pass", ""),
    ("ExLlama decode \"Best\", LLaMA-33B GPTQ (no act-order), RTX 4090", EXLLAMA, 47.0, "tok/s",
     lambda: exllama(LLAMA33, 4)["decode_tokens_per_s"], 0.15, "pass", "LLaMA-30B's config"),
    ("ExLlama decode \"Worst\", LLaMA-33B GPTQ (no act-order), RTX 4090", EXLLAMA, 40.0, "tok/s",
     lambda: exllama(LLAMA33, 1920)["decode_tokens_per_s"], 0.15, "pass", ""),
    ("ExLlama prompt (one 1920-token forward), LLaMA-33B GPTQ (no act-order), RTX 4090", EXLLAMA, 2959.0, "tok/s",
     lambda: exllama(LLAMA33, 1920)["prefill_tokens_per_s"], 0.25, "pass", ""),
]


# TensorRT-LLM first-token latencies: (model, GPUs, weights, TP, measured ms at 128 and at 2048 prompt tokens, status
# and note at 128, at 2048)
TRT_FP8 = ("TensorRT-LLM 0.5 on the H100: this 128-token prompt takes %s ms where the weight stream, the FP8 GEMMs "
           "at 60 %% of the dense peak and the 16-bit attention add up to %s ms (GPT-J 6B's 128-token prompt on the same "
           "page takes 7 ms as well); the A100 FP16 and L40S FP8 rows of the same page fit without a fixed cost, so "
           "none is fitted to these two")
TRT_ATT = "-26.3 % while the attention's products were counted at the FP8 rate"
TRT_SUM = "a 128-token forward: the weight stream and the GEMMs add up (the roofline's max said %s)"
for label, model, gpu, fmt, tp, ms128, ms2048, st128, note128, st2048, note2048 in (
        ("LLaMA 7B (Llama-2-7B) FP8, H100", "llama-2-7b", "H100-SXM:1", "fp8", 1, 7, 36,
         "miss", TRT_FP8 % ("7", "4.2"), "pass", TRT_ATT),
        ("LLaMA 70B (Llama-2-70B) FP8, 4 x H100 TP 4", "llama-2-70b", "H100-SXM:4", "fp8", 4, 26, 109,
         "miss", TRT_FP8 % ("26", "13.2"), "pass", ""),
        ("LLaMA 7B (Llama-2-7B) FP8, L40S", "llama-2-7b", "L40S:1", "fp8", 1, 14, 73,
         "pass", TRT_SUM % "-26 %", "pass", ""),
        ("LLaMA 7B (Llama-2-7B) FP16, A100", "llama-2-7b", "A100-80GB:1", "f16", 1, 16, 133,
         "pass", TRT_SUM % "-42 %", "pass", ""),
        ("LLaMA 70B (Llama-2-70B) FP16, 4 x A100 TP 4", "llama-2-70b", "A100-80GB:4", "f16", 4, 47, 377,
         "pass", TRT_SUM % "-42 %", "pass", "")):
    for prompt, ms, st, note in ((128, ms128, st128, note128), (2048, ms2048, st2048, note2048)):
        ROWS.append((f"TensorRT-LLM first-token latency, batch 1, {prompt}-token prompt, {label}", TRTLLM, float(ms),
                     "ms", lambda a=(model, gpu, fmt, prompt, tp): trtllm_ttft_ms(*a), 0.25, st, note))


# Qwen's own speed benchmark of vLLM (batch 1, one A100 80GB unless TP, BF16, 2048 tokens generated after a prompt
# of 1 token (6144 in one row), gpu_memory_utilization 0.9, max_model_len 32768, enforce_eager=False: CUDA graphs on);
# "Speed" is the generated tokens per second. Qwen2.5 on vLLM 0.6.3, Qwen2 (the same shapes at 0.5B, 1.5B and 7B) on
# vLLM 0.4.2 (QwenLM's Qwen2 docs, published at https://qwen.readthedocs.io/en/v2.0/benchmark/speed_benchmark.html;
# the stored copy is a fork's). The 0.5B rows, where the weights stream in 0.6 ms of a 3-4 ms step, set vLLM's fixed
# time per layer (src/planner/engine.c, VLLM_PER_LAYER_S); the others check it
QWEN25 = "https://github.com/QwenLM/Qwen2.5/blob/010c37c33b13a1ac59944b349620e13404efe97d/docs/source/benchmark/speed_benchmark.rst"
QWEN2 = "https://github.com/shadowboxx/Qwen2/blob/cb54c496fb94dcc960653c1aa0595679f956f56b/docs/source/benchmark/speed_benchmark.rst"


def qwen_vllm(model, gpus=1, prompt=1, fmt="bf16"):
    return plan(model, "-q", fmt, "--gpu", f"A100-80GB:{gpus}", "--tp", str(gpus), "-c", "32768",
                "--prompt-tokens", str(prompt), "-n", "2048", "--engine", "vllm")["time"]["decode_tokens_per_s"]


for label, src, model, gpus, prompt, measured, note in (
        ("Qwen2.5-0.5B, vLLM 0.6.3", QWEN25, "qwen2.5-0.5b", 1, 1, 311.55,
         "calibration row (with the Qwen2-0.5B row): vLLM's 117 us per layer; the engine-neutral 8 us said 1,197 "
         "tok/s (+284 %)"),
        ("Qwen2.5-1.5B, vLLM 0.6.3", QWEN25, "qwen2.5-1.5b", 1, 1, 183.33, "the engine-neutral costs said +152 %"),
        ("Qwen2.5-3B, vLLM 0.6.3", QWEN25, "qwen2.5-3b", 1, 1, 127.61, "the engine-neutral costs said +90 %"),
        ("Qwen2.5-7B, vLLM 0.6.3", QWEN25, "qwen2.5-7b", 1, 1, 84.28, ""),
        ("Qwen2.5-7B after a 6144-token prompt, vLLM 0.6.3", QWEN25, "qwen2.5-7b", 1, 6144, 80.70,
         "decode at contexts 6144-8192; counting the prompt's 0.54 s in the speed moves the prediction by 2 %"),
        ("Qwen2.5-14B, vLLM 0.6.3", QWEN25, "qwen2.5-14b", 1, 1, 46.30, "48 layers: the engine-neutral costs said +22 %"),
        ("Qwen2.5-72B, 4 x A100 TP 4, vLLM 0.6.3", QWEN25, "qwen2.5-72b", 4, 1, 31.37, "with the TP all-reduces"),
        ("Qwen2-0.5B, vLLM 0.4.2", QWEN2, "qwen2.5-0.5b", 1, 1, 270.49,
         "Qwen2.5-0.5B's shape; calibration row (with the Qwen2.5-0.5B row)"),
        ("Qwen2-1.5B, vLLM 0.4.2", QWEN2, "qwen2.5-1.5b", 1, 1, 175.55, "Qwen2.5-1.5B's shape"),
        ("Qwen2-7B, vLLM 0.4.2", QWEN2, "qwen2.5-7b", 1, 1, 80.45, "Qwen2.5-7B's shape")):
    ROWS.append((f"vLLM decode, batch 1, {label}, A100 80GB BF16", src, measured, "tok/s",
                 lambda a=(model, gpus, prompt): qwen_vllm(*a), 0.15, "pass", note))
# the same benchmark's quantized checkpoints at the smallest, a middle and the largest one-GPU size (GPTQ-Int8
# planned as weight-only INT8: per-row scales, GPTQ's per-group ones add about 1 %)
Q_SMALL = ("calibration row (with the other two 0.5B formats): vLLM's weight-only GEMMs take at least 8.5 us each "
           "(src/planner/engine.c, VLLM_WO_GEMM_MIN_S); with bytes alone the plan said +20..+23 %")
Q_CHECK = {"7b": "checks the floor: the QKV and output GEMMs are below it (+0.22 ms per token; bytes alone said "
                  "+2.3..+10.9 %)",
           "14b": "only the output GEMM is below the floor"}
for size, fmt, fmt_label, measured in (
        ("0.5b", "gptq", "GPTQ-Int4", 260.93), ("0.5b", "awq", "AWQ", 261.95), ("0.5b", "int8", "GPTQ-Int8", 257.07),
        ("7b", "gptq", "GPTQ-Int4", 154.05), ("7b", "awq", "AWQ", 148.10), ("7b", "int8", "GPTQ-Int8", 122.01),
        ("14b", "gptq", "GPTQ-Int4", 98.02), ("14b", "awq", "AWQ", 92.66), ("14b", "int8", "GPTQ-Int8", 70.40)):
    ROWS.append((f"vLLM decode, batch 1, Qwen2.5-{size.upper()} {fmt_label}, vLLM 0.6.3, A100 80GB", QWEN25, measured,
                 "tok/s", lambda a=(f"qwen2.5-{size}", 1, 1, fmt): qwen_vllm(*a), 0.15, "pass",
                 Q_SMALL if size == "0.5b" else Q_CHECK.get(size, "")))


def evaluate():
    out = []
    for what, src, meas, unit, pred_fn, tol, status, note in ROWS:
        try:
            pred = pred_fn()
            err = (pred - meas) / meas
        except Exception as e:  # a row that cannot be planned is a failure
            pred, err = None, None
            note = f"{note} ({e})"
        out.append((what, src, meas, unit, pred, err, tol, status, note))
    return out


res = evaluate()
if "--markdown" in sys.argv:
    print("| # | measurement | source | measured | predicted | error | tolerance | status |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (what, src, meas, unit, pred, err, tol, status, note) in enumerate(res, 1):
        fmt = (lambda v: f"{v:,.0f}") if unit in ("tokens",) else (lambda v: f"{v:.3g}" if v < 10 else f"{v:,.2f}")
        p = "-" if pred is None else fmt(pred)
        e = "-" if err is None else f"{err * 100:+.1f} %"
        st = "pass" if status == "pass" else f"**miss**: {note}"
        if status == "pass" and note:
            st = f"pass ({note})"
        tl = "at most the measured" if unit.endswith("at most") else f"±{tol * 100:.1f} %"
        print(f"| {i} | {what} | {src} | {fmt(meas)} {unit} | {p} | {e} | {tl} | {st} |")
    os.unlink(LLAMA65)
    os.unlink(LLAMA33)
    sys.exit(0)

check(len(ROWS) >= 20, f"at least 20 published measurements ({len(ROWS)})")
for what, src, meas, unit, pred, err, tol, status, note in res:
    check(src.startswith("https://"), f"{what}: sourced")
    if pred is None:
        check(False, f"{what}: not planned: {note}")
        continue
    within = pred <= meas if unit.endswith("at most") else abs(err) <= tol
    if status == "pass":
        check(within, f"{what}: {pred:.4g} vs measured {meas:.4g} ({err * 100:+.1f} %, tolerance {tol * 100:.1f} %)")
    else:
        check(not within, f"{what}: recorded as a known miss but now within {tol * 100:.1f} % ({err * 100:+.1f} %): "
                          "update its status and docs/planner.md")
passed = sum(1 for r in res if r[5] is not None and (r[4] <= r[2] if r[3].endswith("at most") else abs(r[5]) <= r[6]))
os.unlink(LLAMA65)
os.unlink(LLAMA33)
print(f"{passed} of {len(res)} published measurements within their tolerance")
sys.exit(te.report())
