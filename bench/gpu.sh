#!/usr/bin/env bash
# bench/gpu.sh — the Vulkan backend on a machine with a GPU (e.g. an NVIDIA
# H200): its tests and its speed, in one log.
#
#   bench/gpu.sh                   # from the repository root, build/ built with Vulkan
#   PRESET=small bench/gpu.sh      # a quick smoke run
#
# The GPU machine needs no Vulkan headers nor glslc: the build folder is built
# elsewhere (the SPIR-V is embedded in the binary) and carried; it needs the
# Vulkan loader (libvulkan.so.1) and the GPU's Vulkan driver (NVIDIA: the
# driver's ICD, /usr/share/vulkan/icd.d/nvidia_icd.json or /etc/vulkan/icd.d/).
#
# What it does, each step's output appended to $LOG:
#   1. the machine: nvidia-smi (if present), `fitlm devices`;
#   2. the Vulkan tests on the GPU: build/tests/test_vulkan_ops (every op and
#      weight type against the CPU backend) and tests/test_vulkan_model.py
#      (stories260K vs the llama2.c reference, -ngl splits, greedy identical to
#      the CPU, random models), with FITLM_REQUIRE_VULKAN=1 so that a missing
#      device fails instead of skipping;
#   3. bench/make_model.py writes a random F16 model of $PRESET's shape (default
#      tinyllama: TinyLlama 1.1B), `fitlm quantize` makes the $TYPES of it;
#   4. `fitlm bench --device $DEVICE -p $PP -n $TG -r $REPS` on each (pp/tg
#      tokens/s, weight GB/s, the device memory table); the prefill again with
#      the matrix-vector shader instead of the tiled one (FITLM_VULKAN_TILED_MIN=0,
#      the figure the tiled shader is to beat) unless MATVEC=0; and the same with
#      --device cpu for comparison unless CPU=0.
#
# Environment: FITLM (default build/fitlm), BUILD (build), BENCH_DIR
# (/tmp/fitlm-gpu-bench), LOG ($BENCH_DIR/gpu.log), PRESET, TYPES ("F16 Q8_0
# Q4_0 Q4_K_M"), DEVICE (vulkan), PP (512), TG (128), REPS (3), CPU (1), MATVEC (1),
# SHARED (../shared: the stories260K reference data).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
FITLM=${FITLM:-$BUILD/fitlm}
BENCH_DIR=${BENCH_DIR:-/tmp/fitlm-gpu-bench}
LOG=${LOG:-$BENCH_DIR/gpu.log}
PRESET=${PRESET:-tinyllama}
TYPES=${TYPES:-"F16 Q8_0 Q4_0 Q4_K_M"}
DEVICE=${DEVICE:-vulkan}
PP=${PP:-512}
TG=${TG:-128}
REPS=${REPS:-3}
CPU=${CPU:-1}
MATVEC=${MATVEC:-1}
SHARED=${SHARED:-$(cd .. && pwd)/shared}
mkdir -p "$BENCH_DIR" "$BUILD/test-tmp"
: > "$LOG"
status=0
step() { echo "== $*" | tee -a "$LOG"; }
run() { # run CMD...: appends its output to the log, remembers a failure
  "$@" >> "$LOG" 2>&1
  local rc=$?
  echo "(exit $rc: $*)" >> "$LOG"
  [ $rc -eq 0 ] || status=1
  return $rc
}

step "machine"
date -u >> "$LOG"
command -v nvidia-smi >/dev/null && run nvidia-smi
run "$FITLM" devices

step "Vulkan tests"
export FITLM_REQUIRE_VULKAN=1 FITLM_BIN="$FITLM" FITLM_SHARED="$SHARED" FITLM_SRC="$PWD" FITLM_TMP="$BUILD/test-tmp"
export FITLM_DEVICE=cpu
run "$BUILD/tests/test_vulkan_ops" && echo "test_vulkan_ops: passed" | tee -a "$LOG" || echo "test_vulkan_ops: FAILED" | tee -a "$LOG"
run /usr/bin/python3 tests/test_vulkan_model.py && echo "test_vulkan_model: passed" | tee -a "$LOG" ||
  echo "test_vulkan_model: FAILED" | tee -a "$LOG"
unset FITLM_DEVICE

step "models ($PRESET: $TYPES)"
F16="$BENCH_DIR/$PRESET-f16.gguf"
[ -f "$F16" ] || run /usr/bin/python3 bench/make_model.py "$F16" --preset "$PRESET"
for t in $TYPES; do
  m="$BENCH_DIR/$PRESET-$t.gguf"
  [ "$t" = F16 ] && m="$F16"
  [ -f "$m" ] || run "$FITLM" quantize "$F16" "$m" "$t"
  step "bench $t --device $DEVICE"
  run "$FITLM" bench -m "$m" --device "$DEVICE" -p "$PP" -n "$TG" -r "$REPS"
  if [ "$MATVEC" = 1 ]; then
    step "bench $t --device $DEVICE, prefill by the matrix-vector shader (FITLM_VULKAN_TILED_MIN=0)"
    FITLM_VULKAN_TILED_MIN=0 run "$FITLM" bench -m "$m" --device "$DEVICE" -p "$PP" -n 0 -r "$REPS" --membw-mib 0 \
      --no-plan-check
  fi
  if [ "$CPU" = 1 ]; then
    step "bench $t --device cpu"
    run "$FITLM" bench -m "$m" --device cpu -p "$PP" -n "$TG" -r "$REPS"
  fi
done
step "done (status $status); log: $LOG"
grep -E "^\| .*(pp|tg)[0-9]+ " "$LOG" | tee -a "$LOG.summary"
exit $status
