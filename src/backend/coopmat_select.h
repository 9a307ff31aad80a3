/* Whether the Vulkan backend runs prefill matmuls through VK_NV_cooperative_matrix
 * (tensor cores, shaders/matmul_coopmat.comp), decided from what the device
 * reports. A pure function, without Vulkan headers, so that it is tested
 * without a GPU (tests/test_coopmat_select.c). The enum values are Vulkan's
 * (VkComponentTypeNV, VkScopeNV); vk_backend.c checks that they agree. */
#ifndef FITLM_BACKEND_COOPMAT_SELECT_H
#define FITLM_BACKEND_COOPMAT_SELECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { FITLM_CM_F16 = 0, FITLM_CM_F32 = 1 };    /* VK_COMPONENT_TYPE_FLOAT16_NV / FLOAT32_NV */
enum { FITLM_CM_SCOPE_SUBGROUP = 3 };           /* VK_SCOPE_SUBGROUP_NV */

/* One VkCooperativeMatrixPropertiesNV: D (MxN) = A (MxK) x B (KxN) + C. */
typedef struct fitlm_coopmat_shape {
    uint32_t m, n, k;
    int a_type, b_type, c_type, d_type; /* VkComponentTypeNV values */
    int scope;                          /* VkScopeNV value */
} fitlm_coopmat_shape;

/* What the device reports, as far as the shader needs it. */
typedef struct fitlm_coopmat_caps {
    bool has_ext;          /* VK_NV_cooperative_matrix */
    bool feature;          /* VkPhysicalDeviceCooperativeMatrixFeaturesNV.cooperativeMatrix */
    bool compute_stage;    /* cooperativeMatrixSupportedStages has the compute stage */
    bool float16;          /* shaderFloat16 (VK_KHR_shader_float16_int8) */
    bool memory_model;     /* vulkanMemoryModel (VK_KHR_vulkan_memory_model: glslc emits that model) */
    uint32_t subgroup_size;
    uint32_t max_invocations; /* maxComputeWorkGroupInvocations (and size[0]) */
    uint32_t shared_bytes;    /* maxComputeSharedMemorySize */
    const fitlm_coopmat_shape *shapes;
    int n_shapes;
} fitlm_coopmat_caps;

/* The shader's needs: 128 invocations = 4 subgroups of 32, this much shared memory. */
#define FITLM_COOPMAT_INVOCATIONS 128u
#define FITLM_COOPMAT_SUBGROUP 32u
#define FITLM_COOPMAT_SHARED_BYTES (2u * 64u * 72u * 2u + 64u * 32u * 4u)

/* The index in caps->shapes of the shape the shader uses (16x16x16, A and B
 * F16, C and D F32, subgroup scope), or -1 when the path is not to be used:
 * not opted in, or the device lacks something. why (why_size bytes, may be
 * NULL) gets the reason, or the chosen shape. */
int fitlm_coopmat_choose(const fitlm_coopmat_caps *caps, bool opt_in, char *why, size_t why_size);

/* "f16", "f32", ... for a VkComponentTypeNV value. */
const char *fitlm_coopmat_type_name(int type);

/* Parses $FITLM_VULKAN_COOPMAT: NULL, "" or "0": off; "1": on. -1 for
 * anything else. */
int fitlm_coopmat_parse_optin(const char *value, bool *on);

#endif
