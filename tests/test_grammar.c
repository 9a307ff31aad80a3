/* src/grammar/: the GBNF parser (accepted and refused grammars), the matcher
 * (whole texts in and out of the language, byte by byte, UTF-8), JSON schemas
 * compiled to grammars (cJSON parses every sentence, and the schema's rules
 * are checked directly), and token masks over the real Llama 2 and DeepSeek
 * vocabularies: the trie walk equals a brute-force check of every token, and
 * random walks through masked tokens always end in a complete, valid text. */
#include "check.h"

#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "grammar/token_mask.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

static bool gmatch(const char *gbnf, const char *text) {
    fitlm_error e = {{0}};
    fitlm_grammar *g = fitlm_grammar_parse(gbnf, strlen(gbnf), &e);
    if (!g) {
        fprintf(stderr, "parse failed: %s\n", e.msg);
        return false;
    }
    bool ok = fitlm_grammar_matches(g, text, strlen(text));
    fitlm_grammar_free(g);
    return ok;
}

static void test_parse_errors(void) {
    const char *bad[][2] = {
        {"", "no rule 'root'"},
        {"root ::= foo", "undefined rule 'foo'"},
        {"root ::= \"a", "unterminated literal"},
        {"root ::= [a-", "unterminated"},
        {"root ::= root \"a\" | \"b\"", "left recursion"},
        {"root ::= a\na ::= \"x\" a", "can never finish"},
        {"root ::= (\"a\"", "expected ')'"},
        {"root ::= \"a\"{5,2}", "n < m"},
        {"root ::= \"a\"{1001}", "above"},
        {"root ::= \"a\"\nroot ::= \"b\"", "defined twice"},
        {"root ::= [z-a]", "backwards"},
        {"root ::= \"\\q\"", "unknown escape"},
        {"root ::= x*\nx ::= \"\" | \"a\"", "left recursion"},
        {"root ::= \"a\" ::=", "unexpected"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fitlm_error e = {{0}};
        fitlm_grammar *g = fitlm_grammar_parse(bad[i][0], strlen(bad[i][0]), &e);
        CHECK(!g && strstr(e.msg, bad[i][1]), "grammar %zu refused with '%s': got '%s'", i, bad[i][1], e.msg);
        fitlm_grammar_free(g);
    }
    /* deep nesting and huge repetitions are bounded, not a crash */
    char deep[400];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "root ::= ");
    for (int i = 0; i < 100; i++) deep[k++] = '(';
    deep[k++] = '"';
    deep[k++] = 'a';
    deep[k++] = '"';
    for (int i = 0; i < 100; i++) deep[k++] = ')';
    deep[k] = 0;
    fitlm_error e = {{0}};
    fitlm_grammar *g = fitlm_grammar_parse(deep, k, &e);
    CHECK(!g && strstr(e.msg, "nest"), "deep groups refused: %s", e.msg);
    static char big[16384];
    k = (size_t)snprintf(big, sizeof big, "root ::= ");
    for (int i = 0; i < 1100; i++) k += (size_t)snprintf(big + k, sizeof big - k, "x{1000} ");
    snprintf(big + k, sizeof big - k, "\nx ::= \"a\"");
    e.msg[0] = 0;
    g = fitlm_grammar_parse(big, strlen(big), &e);
    CHECK(!g && strstr(e.msg, "too large"), "a grammar that expands past the limit is refused: %s", e.msg);
    fitlm_grammar_free(g);
}

static void test_match(void) {
    const char *arith = "root ::= expr\n"
                        "expr ::= term ((\"+\" | \"-\") term)*   # sums\n"
                        "term ::= num | \"(\" expr \")\"\n"
                        "num  ::= [0-9]+\n";
    CHECK(gmatch(arith, "1+(23-4)"), "arith sentence");
    CHECK(!gmatch(arith, "1+"), "arith prefix is not a sentence");
    CHECK(!gmatch(arith, "1+(2"), "unbalanced");
    CHECK(!gmatch(arith, "a"), "bad char");
    const char *rep = "root ::= \"x\"{2,4} [^a-c]? .";
    CHECK(gmatch(rep, "xxd!") && gmatch(rep, "xxxx\xc3\xa9") && !gmatch(rep, "xa!") && !gmatch(rep, "xxxxxd!") &&
              !gmatch(rep, "xxa!"),
          "repetitions, negated classes, any char");
    const char *uni = "root ::= [\\u00e0-\\u00ff]+ \"\xe2\x82\xac\" [\\U0001F600-\\U0001F64F]";
    CHECK(gmatch(uni, "\xc3\xa9\xc3\xa0\xe2\x82\xac\xf0\x9f\x98\x80"), "UTF-8 classes");
    CHECK(!gmatch(uni, "e\xe2\x82\xac\xf0\x9f\x98\x80"), "ASCII outside the class");
    CHECK(!gmatch(uni, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x99\x90"), "code point past the range");
    CHECK(!gmatch("root ::= .", "\xc0\x80") && !gmatch("root ::= .", "\xed\xa0\x80"),
          "overlong and surrogate encodings are not characters");
    /* the matcher's states: must_end after a closed value, can_end after digits */
    fitlm_error e = {{0}};
    const char *ab = "root ::= \"[\" [0-9]* \"]\" | [0-9]+";
    fitlm_grammar *g = fitlm_grammar_parse(ab, strlen(ab), &e);
    CHECK(g != NULL, "parse: %s", e.msg);
    if (g) {
        fitlm_grammar_matcher *m = fitlm_grammar_matcher_new(g);
        fitlm_grammar_state s0 = fitlm_grammar_start(m);
        fitlm_grammar_state a = fitlm_grammar_step_bytes(m, s0, "[12]", 4);
        fitlm_grammar_state b = fitlm_grammar_step_bytes(m, s0, "12", 2);
        fitlm_grammar_state c = fitlm_grammar_step_bytes(m, s0, "[12", 3);
        CHECK(fitlm_grammar_must_end(m, a) && fitlm_grammar_can_end(m, b) && !fitlm_grammar_must_end(m, b) &&
                  !fitlm_grammar_can_end(m, c),
              "can_end / must_end");
        CHECK(fitlm_grammar_step_bytes(m, s0, "[1", 2) == fitlm_grammar_step_bytes(m, s0, "[1", 2) &&
                  fitlm_grammar_step_bytes(m, s0, "[1", 2) == fitlm_grammar_step_bytes(m, s0, "[7", 2),
              "equal positions are equal states");
        CHECK(fitlm_grammar_step_bytes(m, s0, "]", 1) == FITLM_GRAMMAR_DEAD, "dead");
        fitlm_grammar_matcher_free(m);
        fitlm_grammar_free(g);
    }
}

static fitlm_grammar *schema_grammar(const char *schema) {
    fitlm_error e = {{0}};
    fitlm_grammar *g = fitlm_json_schema_grammar(schema, strlen(schema), &e);
    if (!g) fprintf(stderr, "schema %s: %s\n", schema, e.msg);
    return g;
}

static void test_schema(void) {
    struct {
        const char *schema;
        const char *yes[4];
        const char *no[4];
    } cases[] = {
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"},\"b\":{\"type\":\"string\"}},"
         "\"required\":[\"b\"]}",
         {"{\"b\":\"x\"}", "{\"a\": -12, \"b\": \"\\u00e9\"}", "{ \"b\":\"\" }", NULL},
         {"{}", "{\"a\":1}", "{\"b\":\"x\",\"a\":1}", "{\"a\":1.5,\"b\":\"x\"}"}},
        {"{\"type\":\"array\",\"items\":{\"enum\":[\"x\",1,null,true]},\"minItems\":1,\"maxItems\":3}",
         {"[\"x\"]", "[1, null, true]", NULL},
         {"[]", "[1,1,1,1]", "[2]", "[\"y\"]"}},
        {"{\"anyOf\":[{\"type\":\"number\"},{\"const\":{\"k\":[1]}}]}",
         {"1.5e-3", "{\"k\":[1]}", "-0", NULL},
         {"{\"k\":[2]}", "01", "1.", "\"1\""}},
        {"{\"type\":[\"string\",\"null\"],\"minLength\":2,\"maxLength\":3}",
         {"\"ab\"", "null", "\"a\\\"c\"", NULL},
         {"\"a\"", "\"abcd\"", "1", NULL}},
        {"{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"kids\":{\"type\":\"array\",\"items\":"
         "{\"$ref\":\"#/$defs/node\"}}}}},\"$ref\":\"#/$defs/node\"}",
         {"{}", "{\"kids\":[{},{\"kids\":[]}]}", NULL},
         {"{\"kids\":[1]}", NULL}},
        {"{\"type\":\"object\",\"additionalProperties\":{\"type\":\"boolean\"}}",
         {"{}", "{\"p\":true,\"q\":false}", NULL},
         {"{\"p\":1}", NULL}},
        {"true", {"[1,{\"a\":null}]", "\"s\"", NULL}, {"[1,]", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fitlm_grammar *g = schema_grammar(cases[i].schema);
        CHECK(g != NULL, "schema %zu compiles", i);
        if (!g) continue;
        for (int k = 0; k < 4 && cases[i].yes[k]; k++)
            CHECK(fitlm_grammar_matches(g, cases[i].yes[k], strlen(cases[i].yes[k])), "schema %zu accepts %s", i,
                  cases[i].yes[k]);
        for (int k = 0; k < 4 && cases[i].no[k]; k++)
            CHECK(!fitlm_grammar_matches(g, cases[i].no[k], strlen(cases[i].no[k])), "schema %zu refuses %s", i,
                  cases[i].no[k]);
        fitlm_grammar_free(g);
    }
    const char *bad[][2] = {
        {"{\"type\":\"string\",\"pattern\":\"a+\"}", "'pattern' is not supported"},
        {"{\"type\":\"integer\",\"minimum\":3}", "'minimum' is not supported"},
        {"{\"type\":\"foo\"}", "unknown type 'foo'"},
        {"{\"$ref\":\"http://x/y\"}", "only local references"},
        {"{\"type\":\"object\",\"properties\":{\"a\":{\"oneOf\":[]}}}", "/properties/a: 'oneOf'"},
        {"{\"type\":\"object\",\"required\":[\"z\"]}", "'z' is not in 'properties'"},
        {"{\"type\":\"array\",\"maxItems\":100000}", "above"},
        {"[1,2", "not valid JSON"},
        {"false", "allows no value"},
        {"{\"$defs\":{\"a\":{\"type\":\"object\",\"properties\":{\"x\":{\"$ref\":\"#/$defs/a\"}},\"required\":[\"x\"]}},"
         "\"$ref\":\"#/$defs/a\"}",
         "can never finish"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fitlm_error e = {{0}};
        fitlm_grammar *g = fitlm_json_schema_grammar(bad[i][0], strlen(bad[i][0]), &e);
        CHECK(!g && strstr(e.msg, bad[i][1]) && !strncmp(e.msg, "JSON schema", 11), "schema refused with '%s': '%s'",
              bad[i][1], e.msg);
        fitlm_grammar_free(g);
    }
    /* depth bound */
    char deep[16384];
    size_t k = 0;
    for (int i = 0; i < 200; i++) k += (size_t)snprintf(deep + k, sizeof deep - k, "{\"properties\":{\"a\":");
    k += (size_t)snprintf(deep + k, sizeof deep - k, "{}");
    for (int i = 0; i < 400; i++) deep[k++] = '}';
    fitlm_error e = {{0}};
    fitlm_grammar *g = fitlm_json_schema_grammar(deep, k, &e);
    CHECK(!g && strstr(e.msg, "deeper"), "deep schema refused: %s", e.msg);
}

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* Random walks: at each step, the trie mask equals brute force (first steps),
 * a random allowed token is taken; the text must complete and parse. */
static void walk(const fitlm_tokenizer *tok, const fitlm_token_trie *trie, const char *schema, int n_walks,
                 int brute_steps) {
    int32_t vocab = fitlm_tokenizer_vocab_size(tok);
    int n_complete = 0;
    for (int w = 0; w < n_walks; w++) {
        fitlm_grammar *g = schema ? schema_grammar(schema) : fitlm_grammar_parse(fitlm_json_object_gbnf(),
                                                                                strlen(fitlm_json_object_gbnf()), NULL);
        if (!g) {
            CHECK(0, "grammar");
            return;
        }
        fitlm_grammar *gref = schema ? schema_grammar(schema) : fitlm_grammar_parse(fitlm_json_object_gbnf(),
                                                                                   strlen(fitlm_json_object_gbnf()), NULL);
        fitlm_error e = {{0}};
        fitlm_token_matcher *m = fitlm_token_matcher_new(g, trie, &e);
        CHECK(m != NULL, "matcher: %s", e.msg);
        if (!m) {
            fitlm_grammar_free(gref);
            return;
        }
        /* a separate matcher for brute force, fed the same text */
        fitlm_grammar_matcher *bm = fitlm_grammar_matcher_new(gref);
        fitlm_grammar_state bs = fitlm_grammar_start(bm);
        char text[8192];
        size_t tl = 0;
        bool done = false;
        for (int step = 0; step < 400 && !done; step++) {
            const uint64_t *bits;
            uint32_t count = fitlm_token_matcher_allowed(m, &bits);
            if (step < brute_steps) {
                uint32_t bad = 0;
                for (int32_t id = 0; id < vocab; id++) {
                    size_t len = 0;
                    const char *p = fitlm_tokenizer_piece(tok, id, false, &len);
                    bool want;
                    if (fitlm_tokenizer_is_eog(tok, id)) want = fitlm_grammar_can_end(bm, bs);
                    else if (fitlm_tokenizer_token_type(tok, id) == FITLM_TOKEN_CONTROL || !len) want = false;
                    else want = fitlm_grammar_step_bytes(bm, bs, p, len) != FITLM_GRAMMAR_DEAD;
                    bool got = (bits[id >> 6] >> (id & 63)) & 1;
                    if (want != got) bad++;
                }
                CHECK(bad == 0, "walk %d step %d: trie mask == brute force (%u differ)", w, step, bad);
            }
            CHECK(count > 0, "walk %d step %d: some token allowed", w, step);
            if (!count) break;
            uint32_t pick = rnd() % count, seen = 0;
            int32_t id = -1;
            for (int32_t i = 0; i < vocab && id < 0; i++)
                if ((bits[i >> 6] >> (i & 63)) & 1 && seen++ == pick) id = i;
            /* prefer ending once possible half the time, so walks finish */
            if (fitlm_token_matcher_can_end(m) && rnd() % 2) {
                done = true;
                break;
            }
            if (fitlm_tokenizer_is_eog(tok, id)) {
                done = true;
                break;
            }
            size_t len = 0;
            const char *p = fitlm_tokenizer_piece(tok, id, false, &len);
            if (tl + len < sizeof text) {
                memcpy(text + tl, p, len);
                tl += len;
            }
            bs = fitlm_grammar_step_bytes(bm, bs, p, len);
            int r = fitlm_token_matcher_accept(m, id);
            CHECK(r >= 0, "an allowed token is accepted");
            if (r == 1) done = true;
        }
        text[tl] = 0;
        if (done) {
            n_complete++;
            cJSON *j = cJSON_ParseWithLength(text, tl);
            CHECK(j != NULL, "walk %d: the output parses as JSON: %s", w, text);
            CHECK(fitlm_grammar_can_end(bm, bs), "walk %d: the output is a sentence: %s", w, text);
            cJSON_Delete(j);
        }
        fitlm_grammar_matcher_free(bm);
        fitlm_grammar_free(gref);
        fitlm_token_matcher_free(m);
    }
    printf("%s: %d/%d walks complete\n", schema ? schema : "json_object", n_complete, n_walks);
}

static void test_vocab(const char *shared, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/data/vocab/ggml-vocab-%s.gguf", shared, name);
    fitlm_error e = {{0}};
    fitlm_tokenizer *tok = fitlm_tokenizer_load(path, &e);
    if (!tok) {
        CHECK(0, "load %s: %s", path, e.msg);
        return;
    }
    fitlm_token_trie *trie = fitlm_token_trie_new(tok, &e);
    CHECK(trie && fitlm_token_trie_vocab(trie) == fitlm_tokenizer_vocab_size(tok), "trie of %s", name);
    if (trie) {
        printf("%s: %d tokens, %u trie nodes\n", name, fitlm_token_trie_vocab(trie), fitlm_token_trie_nodes(trie));
        walk(tok, trie, "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":8},"
                        "\"age\":{\"type\":\"integer\"},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]},"
                        "\"maxItems\":3},\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"ok\"]}",
             6, 6);
        walk(tok, trie, NULL, 6, 3);
        walk(tok, trie, "{\"type\":\"string\",\"maxLength\":5}", 10, 4);
        /* logits masking */
        fitlm_grammar *g = schema_grammar("{\"enum\":[\"yes\",\"no\"]}");
        fitlm_token_matcher *m = g ? fitlm_token_matcher_new(g, trie, &e) : NULL;
        if (m) {
            uint32_t v = (uint32_t)fitlm_tokenizer_vocab_size(tok);
            float *lg = calloc(v + 8, sizeof *lg);
            uint32_t n = fitlm_token_matcher_mask(m, lg, v + 8);
            uint32_t finite = 0;
            for (uint32_t i = 0; i < v + 8; i++) finite += isfinite(lg[i]) ? 1 : 0;
            CHECK(n == finite && n > 0 && n < 50, "mask leaves exactly the allowed tokens finite (%u, %u)", n, finite);
            free(lg);
            fitlm_token_matcher_free(m);
        }
        fitlm_token_trie_free(trie);
    }
    fitlm_tokenizer_free(tok);
}

int main(void) {
    test_parse_errors();
    test_match();
    test_schema();
    const char *shared = check_env_or_skip("FITLM_SHARED");
    test_vocab(shared, "llama-spm");
    test_vocab(shared, "deepseek-llm");
    return check_report();
}
