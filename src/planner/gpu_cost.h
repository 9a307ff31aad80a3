/* This host's GPUs measured through fitlm's own GPU backend, for the GPU
 * planner (`fitlm calibrate --device D`): the decode bandwidth and prompt
 * FLOP/s its kernels reach per weight type, and its fixed costs per layer and
 * per forward step, timed with the real runtime on synthetic models
 * (planner/synth_model.h) and kept in the host profile (cpu_cost.h,
 * fitlm_device_rates). A plan check on that device then predicts with them in
 * place of the catalog's peaks and the planner's assumed efficiencies.
 *
 *   fixed: decode of two tiny F32 models (1 and 9 layers, hidden 128) on the
 *     device: per layer = the slope, per step = the rest;
 *   per weight type T: a model of L layers of T (full: 8 layers of hidden
 *     2048, FFN 5632, 32 heads of 64 over 4 KV heads; quick: 2 of 512 / 1408)
 *     decoded after a prompt of P tokens (full 512, the runtime's micro-batch; quick 64):
 *       decode_bw_T = matrix bytes / (time per token - per step - L x per layer)
 *       prefill_flops_T = 2 x matrix weights x P /
 *                         (prompt time - per step - L x per layer - bytes / decode_bw_T) */
#ifndef FITLM_PLANNER_GPU_COST_H
#define FITLM_PLANNER_GPU_COST_H

#include <stdbool.h>
#include <stdio.h>

#include "planner/cpu_cost.h"
#include "util/error.h"

/* Measures the GPU backend `device` ("vulkan", "vulkan:N"; "cpu" is refused)
 * and stores it in p (replacing an entry of the same device name, else added;
 * with FITLM_PROFILE_MAX_DEVICES already there, the last is replaced). threads:
 * the CPU backend's (the split backend's host side). quick: small shapes, two
 * weight types (F32, Q4_0), few repetitions (for tests). log (may be NULL)
 * gets a line per measurement. 0, or -1 with err (p unchanged). */
int fitlm_calibrate_device(fitlm_host_profile *p, const char *device, int threads, bool quick, FILE *log,
                           fitlm_error *err);

/* The rates d's kernels reach on the weight types of work (its matrices and
 * output matrix): *bw = bytes / sum(bytes_T / decode_bw_T), *flops = params /
 * sum(params_T / prefill_flops_T); a type d did not time takes the rates of
 * the timed type nearest in bits per weight. */
void fitlm_device_rates_for_work(const fitlm_device_rates *d, const fitlm_cpu_work *w, double *bw, double *flops);

/* The same for the weight types of the model file at path (loaded and freed
 * here). false (nothing set) when it cannot be loaded. */
bool fitlm_device_rates_for_file(const fitlm_device_rates *d, const char *path, double *bw, double *flops);

#endif
