/* The Vulkan compute backend (built with -DFITLM_VULKAN, FITLM_HAVE_VULKAN).
 *
 * Tensors live in device-local memory sub-allocated from a few large
 * allocations; a tensor's `data` is not a host address but an encoded
 * (allocation, byte offset) pair, so fitlm_btensor_rows views work unchanged.
 * Ops are recorded into one command buffer (a barrier after each) and
 * submitted by sync() or download(); host arrays of an op (positions, slots,
 * block tables, token ids) are copied into a host-visible argument buffer
 * while recording. Errors (no device, out of device memory, a lost device)
 * are reported by the creating call or by sync(), never by a crash. */
#ifndef FITLM_BACKEND_VULKAN_BACKEND_VULKAN_H
#define FITLM_BACKEND_VULKAN_BACKEND_VULKAN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "backend/backend.h"
#include "util/error.h"

/* Creates the backend on Vulkan device `index` (the order `fitlm devices`
 * lists; -1: the first discrete GPU, else the first device). The caller frees
 * it with be->free(be). NULL with err when there is no such device. */
fitlm_backend *fitlm_backend_vulkan_new(int index, fitlm_error *err);

/* Index of the first discrete GPU, or -1 if there is none (or no Vulkan). */
int fitlm_vulkan_first_discrete(void);

/* Prints the Vulkan devices (name, type, memory heaps, subgroup size, fp16 /
 * int8 / integer dot product / cooperative matrix support) to out. Returns the
 * number of devices, or -1 with err when no Vulkan instance can be created. */
int fitlm_vulkan_list_devices(FILE *out, fitlm_error *err);

/* Device memory of the backend's device: the largest device-local heap's
 * size, and the bytes this backend holds in device allocations now. */
void fitlm_backend_vulkan_memory(const fitlm_backend *be, uint64_t *heap_bytes, uint64_t *held_bytes);

/* The device memory this backend can still allocate: with VK_EXT_memory_budget
 * 95% of the heap's budget minus its usage, else 90% of the largest device-local heap
 * (the driver and other processes keep some); at most FITLM_VULKAN_MEM_LIMIT
 * minus what the backend holds. how (how_size bytes) gets where the figure
 * comes from, for --fit's message. */
uint64_t fitlm_backend_vulkan_free_memory(const fitlm_backend *be, char *how, size_t how_size);

/* The unit device allocations are rounded up to (bytes). */
uint64_t fitlm_backend_vulkan_alloc_align(void);

/* The device's name (valid while be lives). */
const char *fitlm_backend_vulkan_device_name(const fitlm_backend *be);

/* Dispatches of the tiled (prefill) matmul shader recorded so far: lets the
 * tests check which shader ran (the results are bit-identical by design). */
uint64_t fitlm_backend_vulkan_tiled_dispatches(const fitlm_backend *be);

/* Whether prefill matmuls run on the device's cooperative matrices
 * (VK_NV_cooperative_matrix, matmul_coopmat.comp): only when asked for with
 * FITLM_VULKAN_COOPMAT=1 (*asked) and the device has what the shader needs.
 * *why: the shape used, or why not (valid while be lives). */
bool fitlm_backend_vulkan_coopmat(const fitlm_backend *be, bool *asked, const char **why);

/* Dispatches of the cooperative-matrix matmul shader recorded so far. */
uint64_t fitlm_backend_vulkan_coopmat_dispatches(const fitlm_backend *be);

#endif
