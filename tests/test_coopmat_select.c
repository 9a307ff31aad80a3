/* The choice of the Vulkan backend's cooperative-matrix prefill path
 * (backend/coopmat_select.h), without a GPU: reported shapes (as an NVIDIA
 * driver lists them, and variations) plus the opt-in give the 16x16x16
 * f16 x f16 + f32 shape or nothing, with the reason. */
#include <string.h>

#include "backend/coopmat_select.h"
#include "check.h"

#define F16 FITLM_CM_F16
#define F32 FITLM_CM_F32
#define SG FITLM_CM_SCOPE_SUBGROUP

/* What an NVIDIA Ampere/Hopper driver reports for VK_NV_cooperative_matrix
 * (f16 16x8x16 and 16x8x8 with f16 and f32 accumulators, 16x16x16 likewise,
 * s8 16x8x32 / 16x16x32): the f32-accumulating 16x16x16 is at index 3. */
static const fitlm_coopmat_shape nvidia[] = {
    {16, 8, 16, F16, F16, F16, F16, SG}, {16, 8, 8, F16, F16, F16, F16, SG},
    {16, 8, 16, F16, F16, F32, F32, SG}, {16, 16, 16, F16, F16, F32, F32, SG},
    {16, 16, 16, F16, F16, F16, F16, SG}, {16, 8, 32, 3, 3, 5, 5, SG},
};

static fitlm_coopmat_caps good(void) {
    return (fitlm_coopmat_caps){.has_ext = true, .feature = true, .compute_stage = true, .float16 = true,
                                .memory_model = true, .subgroup_size = 32, .max_invocations = 1024,
                                .shared_bytes = 49152, .shapes = nvidia,
                                .n_shapes = (int)(sizeof nvidia / sizeof nvidia[0])};
}

static void expect(const fitlm_coopmat_caps *c, bool opt_in, int want, const char *why_has, const char *what) {
    char why[160] = "";
    int got = fitlm_coopmat_choose(c, opt_in, why, sizeof why);
    CHECK(got == want, "%s: chose %d, expected %d (%s)", what, got, want, why);
    CHECK(strstr(why, why_has) != NULL, "%s: reason '%s' lacks '%s'", what, why, why_has);
}

int main(void) {
    fitlm_coopmat_caps c = good();
    expect(&c, true, 3, "16x16x16 f16 x f16 + f32", "NVIDIA, opted in");
    expect(&c, false, -1, "FITLM_VULKAN_COOPMAT=1", "NVIDIA, not opted in");
    CHECK(fitlm_coopmat_choose(&c, true, NULL, 0) == 3, "no reason buffer");

    /* the chosen shape is found wherever it is in the list */
    fitlm_coopmat_shape one[] = {{16, 16, 16, F16, F16, F32, F32, SG}};
    c.shapes = one;
    c.n_shapes = 1;
    expect(&c, true, 0, "subgroup scope", "only the needed shape");

    /* a device without the extension (lavapipe, AMD, Intel): never */
    c = good();
    c.has_ext = false;
    c.shapes = NULL;
    c.n_shapes = 0;
    expect(&c, true, -1, "no VK_NV_cooperative_matrix", "no extension");
    expect(&c, false, -1, "not asked for", "no extension, not opted in");

    /* each missing piece refuses */
    c = good();
    c.feature = false;
    expect(&c, true, -1, "cooperativeMatrix feature", "feature off");
    c = good();
    c.compute_stage = false;
    expect(&c, true, -1, "compute shaders", "not in compute");
    c = good();
    c.float16 = false;
    expect(&c, true, -1, "shaderFloat16", "no fp16");
    c = good();
    c.memory_model = false;
    expect(&c, true, -1, "vulkanMemoryModel", "no memory model");
    c = good();
    c.subgroup_size = 64;
    expect(&c, true, -1, "subgroup size", "subgroups of 64");
    c = good();
    c.shared_bytes = 16384;
    expect(&c, true, -1, "shared memory", "16 KiB of shared memory");
    /* Ws and Xs: 64 x 72 F16 each; Cs: 64 x 32 F32 */
    CHECK(FITLM_COOPMAT_SHARED_BYTES == 26624, "the shader's shared memory is %u bytes", FITLM_COOPMAT_SHARED_BYTES);
    c.shared_bytes = FITLM_COOPMAT_SHARED_BYTES - 1;
    expect(&c, true, -1, "shared memory", "one byte short");
    c.shared_bytes = FITLM_COOPMAT_SHARED_BYTES;
    expect(&c, true, 3, "16x16x16", "exactly enough shared memory");
    c = good();
    c.max_invocations = 64;
    expect(&c, true, -1, "128 invocations", "64 invocations");

    /* shapes that are close but not the one the shader is built for */
    fitlm_coopmat_shape near[] = {
        {16, 16, 16, F16, F16, F16, F16, SG}, /* f16 accumulator */
        {16, 8, 16, F16, F16, F32, F32, SG},  /* 16x8 */
        {16, 16, 8, F16, F16, F32, F32, SG},  /* k = 8 */
        {16, 16, 16, F32, F32, F32, F32, SG}, /* f32 inputs */
        {16, 16, 16, F16, F16, F32, F16, SG}, /* f16 result */
        {16, 16, 16, F16, F16, F32, F32, 2},  /* workgroup scope */
    };
    c = good();
    c.shapes = near;
    c.n_shapes = (int)(sizeof near / sizeof near[0]);
    expect(&c, true, -1, "no 16x16x16", "only near shapes");

    /* the opt-in's values */
    bool on = true;
    CHECK(fitlm_coopmat_parse_optin(NULL, &on) == 0 && !on, "unset: off");
    CHECK(fitlm_coopmat_parse_optin("", &on) == 0 && !on, "empty: off");
    CHECK(fitlm_coopmat_parse_optin("0", &on) == 0 && !on, "0: off");
    CHECK(fitlm_coopmat_parse_optin("1", &on) == 0 && on, "1: on");
    CHECK(fitlm_coopmat_parse_optin("yes", &on) == -1, "yes: an error");
    CHECK(fitlm_coopmat_parse_optin("2", &on) == -1, "2: an error");
    CHECK(!strcmp(fitlm_coopmat_type_name(F16), "f16") && !strcmp(fitlm_coopmat_type_name(F32), "f32") &&
              !strcmp(fitlm_coopmat_type_name(99), "?"),
          "type names");
    return check_report();
}
