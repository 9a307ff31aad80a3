#!/usr/bin/env bash
# A Hugging Face config given as a file of any name plans and inspects as a
# hyperparameters-only model: Llama-3-8B's published config.json values must give
# its published parameter count, 8,030,261,248, and the model is named after the file.
set -u
d="$FITLM_TMP/config-only"; mkdir -p "$d"
cat > "$d/my-llama.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_hidden_layers": 32,
 "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
 "vocab_size": 128256, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
 "tie_word_embeddings": false}
JSON
fails=0; passes=0
out=$("$FITLM_BIN" plan "$d/my-llama.json" --json) || { echo "FAIL: plan exited $?"; fails=$((fails+1)); }
p=$(printf '%s' "$out" | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["model"]["name"], d["model"]["params"])')
if [ "$p" = "my-llama 8030261248" ]; then passes=$((passes+1)); else echo "FAIL: got '$p'"; fails=$((fails+1)); fi
if "$FITLM_BIN" inspect "$d/my-llama.json" | grep -q "8030261248"; then passes=$((passes+1)); else echo "FAIL: inspect"; fails=$((fails+1)); fi
# running it has no weights to use: a clear error, exit 1
err=$("$FITLM_BIN" run -m "$d/my-llama.json" --ids 1 -n 1 2>&1 >/dev/null); rc=$?
case "$rc:$err" in 1:"fitlm: error: "*) passes=$((passes+1)) ;; *) echo "FAIL: run: rc $rc: $err"; fails=$((fails+1)) ;; esac
echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
