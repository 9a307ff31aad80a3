/* The choice of the cooperative-matrix prefill path: see coopmat_select.h. */
#include "backend/coopmat_select.h"

#include <stdio.h>
#include <string.h>

const char *fitlm_coopmat_type_name(int type) {
    static const char *names[] = {"f16", "f32", "f64", "s8", "s16", "s32", "s64", "u8", "u16", "u32", "u64"};
    return type >= 0 && type < (int)(sizeof names / sizeof names[0]) ? names[type] : "?";
}

int fitlm_coopmat_parse_optin(const char *value, bool *on) {
    *on = false;
    if (!value || !*value || !strcmp(value, "0")) return 0;
    if (!strcmp(value, "1")) {
        *on = true;
        return 0;
    }
    return -1;
}

static int say(char *why, size_t why_size, int ret, const char *msg) {
    if (why && why_size) snprintf(why, why_size, "%s", msg);
    return ret;
}

int fitlm_coopmat_choose(const fitlm_coopmat_caps *c, bool opt_in, char *why, size_t why_size) {
    if (!opt_in) return say(why, why_size, -1, "not asked for (FITLM_VULKAN_COOPMAT=1)");
    if (!c->has_ext) return say(why, why_size, -1, "the device has no VK_NV_cooperative_matrix");
    if (!c->feature) return say(why, why_size, -1, "the cooperativeMatrix feature is not supported");
    if (!c->compute_stage) return say(why, why_size, -1, "cooperative matrices are not supported in compute shaders");
    if (!c->float16) return say(why, why_size, -1, "no shaderFloat16 (VK_KHR_shader_float16_int8)");
    if (!c->memory_model) return say(why, why_size, -1, "no vulkanMemoryModel (VK_KHR_vulkan_memory_model)");
    if (c->subgroup_size != FITLM_COOPMAT_SUBGROUP) return say(why, why_size, -1, "the subgroup size is not 32");
    if (c->max_invocations < FITLM_COOPMAT_INVOCATIONS || c->shared_bytes < FITLM_COOPMAT_SHARED_BYTES)
        return say(why, why_size, -1, "workgroups of 128 invocations with 26 KiB of shared memory are not supported");
    for (int i = 0; i < c->n_shapes; i++) {
        const fitlm_coopmat_shape *s = &c->shapes[i];
        if (s->m == 16 && s->n == 16 && s->k == 16 && s->a_type == FITLM_CM_F16 && s->b_type == FITLM_CM_F16 &&
            s->c_type == FITLM_CM_F32 && s->d_type == FITLM_CM_F32 && s->scope == FITLM_CM_SCOPE_SUBGROUP)
            return say(why, why_size, i, "16x16x16 f16 x f16 + f32 -> f32, subgroup scope");
    }
    return say(why, why_size, -1, "no 16x16x16 f16 x f16 + f32 -> f32 shape in subgroup scope");
}
