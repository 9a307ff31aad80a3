/* The SPIR-V of the Vulkan backend's compute shaders, compiled from
 * src/backend/vulkan/shaders/ by glslc at build time and embedded by
 * cmake/embed_spirv.cmake (one entry per shader variant). */
#ifndef FITLM_BACKEND_VULKAN_VK_SHADERS_H
#define FITLM_BACKEND_VULKAN_VK_SHADERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct fitlm_vk_shader {
    const char *name;     /* e.g. "matmul_q4_0", "attention_f16" */
    const uint32_t *code; /* SPIR-V words */
    size_t size;          /* bytes */
} fitlm_vk_shader;

/* Terminated by an entry with name NULL. */
extern const fitlm_vk_shader fitlm_vk_shaders[];

#endif
