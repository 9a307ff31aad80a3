/* The per-tensor type rules of fitlm quantize (src/quantize/quantize.h):
 * scheme names and llama.cpp LLAMA_FTYPE ids, Q4_K_M's more-bits layers
 * (written out by hand for 22 and 32 layers), the recipe per tensor kind, and
 * the row-length fallbacks. */
#include <string.h>

#include "check.h"
#include "format/ggml_type.h"
#include "quantize/quantize.h"

static void test_schemes(void) {
    static const struct {
        const char *name;
        int type, ftype;
    } want[] = {{"Q8_0", FITLM_TYPE_Q8_0, 7},  {"q4_0", FITLM_TYPE_Q4_0, 2}, {"Q4_K", FITLM_TYPE_Q4_K, 14},
                {"Q4_K_M", FITLM_TYPE_Q4_K, 15}, {"q6_k", FITLM_TYPE_Q6_K, 18}, {"F16", FITLM_TYPE_F16, 1},
                {"bf16", FITLM_TYPE_BF16, 32}, {"F32", FITLM_TYPE_F32, 0}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const fitlm_quant_scheme *s = fitlm_quant_scheme_find(want[i].name);
        CHECK(s != NULL, "scheme %s not found", want[i].name);
        if (!s) continue;
        CHECK(s->type == want[i].type, "%s: type %d", want[i].name, s->type);
        CHECK(s->ftype == want[i].ftype, "%s: ftype %d, llama.cpp says %d", want[i].name, s->ftype, want[i].ftype);
        CHECK(s->mix == (strcmp(s->name, "Q4_K_M") == 0), "%s: mix flag", s->name);
    }
    CHECK(fitlm_quant_scheme_find("Q4_K_S") == NULL, "Q4_K_S is not offered");
    CHECK(fitlm_quant_scheme_find("") == NULL && fitlm_quant_scheme_find(NULL) == NULL, "empty names");
    const fitlm_quant_scheme *all;
    CHECK(fitlm_quant_schemes(&all) == 8, "8 schemes");
}

static void test_more_bits(void) {
    /* n = 22 (TinyLlama): first eighth {0,1}, last eighth {19,20,21}, every third from 2: 4,7,...,19 */
    static const int l22[] = {0, 1, 4, 7, 10, 13, 16, 19, 20, 21};
    static const int l32[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    int n = 0;
    for (int l = 0; l < 22; l++) {
        bool in = false;
        for (size_t k = 0; k < sizeof l22 / sizeof l22[0]; k++) in |= l22[k] == l;
        CHECK(fitlm_quant_more_bits_layer(l, 22) == in, "22 layers: layer %d", l);
        n += in;
    }
    CHECK(n == 10, "10 of 22");
    for (int l = 0; l < 32; l++) {
        bool in = false;
        for (size_t k = 0; k < sizeof l32 / sizeof l32[0]; k++) in |= l32[k] == l;
        CHECK(fitlm_quant_more_bits_layer(l, 32) == in, "32 layers: layer %d", l);
    }
    CHECK(!fitlm_quant_more_bits_layer(-1, 22) && !fitlm_quant_more_bits_layer(0, 0), "out of range");
}

static void test_recipe(void) {
    const fitlm_quant_scheme *m = fitlm_quant_scheme_find("Q4_K_M"), *q8 = fitlm_quant_scheme_find("Q8_0");
    CHECK(fitlm_quant_tensor_type(m, FITLM_T_OUTPUT, -1, 22, 2, false) == FITLM_TYPE_Q6_K, "output Q6_K");
    CHECK(fitlm_quant_tensor_type(m, FITLM_T_TOKEN_EMBD, -1, 22, 2, false) == FITLM_TYPE_Q4_K, "token_embd Q4_K");
    CHECK(fitlm_quant_tensor_type(m, FITLM_T_TOKEN_EMBD, -1, 22, 2, true) == FITLM_TYPE_Q6_K, "tied token_embd Q6_K");
    CHECK(fitlm_quant_tensor_type(m, FITLM_T_ATTN_V, 4, 22, 2, false) == FITLM_TYPE_Q6_K, "attn_v layer 4");
    CHECK(fitlm_quant_tensor_type(m, FITLM_T_ATTN_V, 5, 22, 2, false) == FITLM_TYPE_Q4_K, "attn_v layer 5");
    CHECK(fitlm_quant_tensor_type(m, FITLM_T_FFN_DOWN, 21, 22, 2, false) == FITLM_TYPE_Q6_K, "ffn_down layer 21");
    CHECK(fitlm_quant_tensor_type(m, FITLM_T_ATTN_Q, 0, 22, 2, false) == FITLM_TYPE_Q4_K, "attn_q layer 0");
    CHECK(fitlm_quant_tensor_type(m, FITLM_T_ATTN_NORM, 0, 22, 1, false) == FITLM_TYPE_F32, "norm F32");
    CHECK(fitlm_quant_tensor_type(m, FITLM_T_ATTN_Q_BIAS, 0, 22, 1, false) == FITLM_TYPE_F32, "bias F32");
    CHECK(fitlm_quant_tensor_type(q8, FITLM_T_OUTPUT, -1, 22, 2, false) == FITLM_TYPE_Q8_0, "pure: output Q8_0");
    CHECK(fitlm_quant_tensor_type(q8, FITLM_T_FFN_NORM, 3, 22, 1, false) == FITLM_TYPE_F32, "pure: norm F32");
}

static void test_fallback(void) {
    CHECK(fitlm_quant_fallback_type(FITLM_TYPE_Q4_K, 2048) == FITLM_TYPE_Q4_K, "2048 fits Q4_K");
    CHECK(fitlm_quant_fallback_type(FITLM_TYPE_Q4_K, 64) == FITLM_TYPE_Q5_0, "Q4_K 64 -> Q5_0");
    CHECK(fitlm_quant_fallback_type(FITLM_TYPE_Q6_K, 96) == FITLM_TYPE_Q8_0, "Q6_K 96 -> Q8_0");
    CHECK(fitlm_quant_fallback_type(FITLM_TYPE_Q4_K, 172) == FITLM_TYPE_F16, "Q4_K 172 -> F16");
    CHECK(fitlm_quant_fallback_type(FITLM_TYPE_Q8_0, 172) == FITLM_TYPE_F16, "Q8_0 172 -> F16");
    CHECK(fitlm_quant_fallback_type(FITLM_TYPE_Q4_0, 32) == FITLM_TYPE_Q4_0, "Q4_0 32 fits");
    CHECK(fitlm_quant_fallback_type(FITLM_TYPE_F16, 7) == FITLM_TYPE_F16, "F16 any length");
    CHECK(fitlm_quant_fallback_type(FITLM_TYPE_Q4_K, 5632) == FITLM_TYPE_Q4_K, "TinyLlama FFN fits");
}

int main(void) {
    test_schemes();
    test_more_bits();
    test_recipe();
    test_fallback();
    return check_report();
}
