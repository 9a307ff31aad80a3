#include "format/json_strict.h"

#include <stdlib.h>
#include <string.h>

#include "util/hash.h"

typedef struct {
    const cJSON **items;
} key_ctx;

static const char *item_key(const void *ctx, uint32_t i, size_t *len) {
    const char *k = ((const key_ctx *)ctx)->items[i]->string;
    *len = strlen(k);
    return k;
}

/* depth is bounded by cJSON's own nesting limit (CJSON_NESTING_LIMIT) */
static int check(const cJSON *node, const char *parent, const char *what, fitlm_error *err) {
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) return 0;
    if (cJSON_IsObject(node)) {
        size_t n = 0;
        for (const cJSON *c = node->child; c; c = c->next) n++;
        if (n > 1) {
            const cJSON **items = malloc(n * sizeof *items);
            if (!items) return fitlm_fail(err, "%s: out of memory", what);
            key_ctx ctx = {items};
            fitlm_index_set set = {0};
            size_t i = 0;
            int rc = 0;
            for (const cJSON *c = node->child; c && rc == 0; c = c->next, i++) {
                items[i] = c;
                if (!c->string) continue;
                uint32_t first = 0;
                int r = fitlm_index_set_add(&set, (uint32_t)i, item_key, &ctx, &first, err);
                if (r < 0) rc = -1;
                else if (r == 0)
                    rc = fitlm_fail(err, "%s: key '%.200s' appears twice (in %s%s%s)", what, c->string,
                                    parent ? "the object '" : "the top-level object", parent ? parent : "",
                                    parent ? "'" : "");
            }
            fitlm_index_set_free(&set);
            free(items);
            if (rc) return -1;
        }
    }
    for (const cJSON *c = node->child; c; c = c->next)
        if (check(c, cJSON_IsObject(node) ? c->string : parent, what, err)) return -1;
    return 0;
}

int fitlm_json_check_unique_keys(const cJSON *root, const char *what, fitlm_error *err) {
    return check(root, NULL, what, err);
}
