/* util/hash: SipHash-2-4 against the reference vector of the SipHash paper
 * (Aumasson & Bernstein 2012, appendix A: key 00..0f, message 00..0e ->
 * a129ca6149be45e5) and the first/last entries of the reference
 * implementation's 64-byte vector table; the process key differs between two
 * processes; the index set finds what it holds, refuses nothing it should not,
 * and builds 200,000 keys quickly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "util/hash.h"

static char keys[200000][12];

static const char *key_of(const void *ctx, uint32_t i, size_t *len) {
    (void)ctx;
    *len = strlen(keys[i]);
    return keys[i];
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--print")) {
        printf("%016llx\n", (unsigned long long)fitlm_hash_bytes("fitlm", 5));
        return 0;
    }
    uint8_t msg[64];
    for (int i = 0; i < 64; i++) msg[i] = (uint8_t)i;
    uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
    uint64_t h = fitlm_siphash(2, 4, k0, k1, msg, 15);
    CHECK(h == 0xa129ca6149be45e5ull, "SipHash-2-4 paper vector: %016llx", (unsigned long long)h);
    /* reference vectors.h (vectors_sip64): empty message, and 63 bytes */
    h = fitlm_siphash(2, 4, k0, k1, msg, 0);
    CHECK(h == 0x726fdb47dd0e0e31ull, "SipHash-2-4 empty: %016llx", (unsigned long long)h);
    h = fitlm_siphash(2, 4, k0, k1, msg, 63);
    CHECK(h == 0x958a324ceb064572ull, "SipHash-2-4 63 bytes: %016llx", (unsigned long long)h);

    /* the process key: another process hashes differently */
    char cmd[4096], line[64] = {0};
    snprintf(cmd, sizeof cmd, "'%s' --print", argv[0]);
    FILE *p = popen(cmd, "r");
    if (p && fgets(line, sizeof line, p)) {
        unsigned long long other = strtoull(line, NULL, 16);
        CHECK(other != fitlm_hash_bytes("fitlm", 5), "two processes share the hash key");
    } else {
        CHECK(0, "could not run %s", cmd);
    }
    if (p) pclose(p);

    fitlm_index_set s = {0};
    fitlm_error err = {{0}};
    clock_t t0 = clock();
    for (uint32_t i = 0; i < 200000; i++) {
        snprintf(keys[i], sizeof keys[i], "k%u", i % 150000); /* 50,000 duplicates */
        uint32_t ex = 0;
        int rc = fitlm_index_set_add(&s, i, key_of, NULL, &ex, &err);
        if (i < 150000) {
            if (rc != 1) CHECK(rc == 1, "add %u: %d %s", i, rc, err.msg);
        } else if (rc != 0 || ex != i - 150000) {
            CHECK(rc == 0 && ex == i - 150000, "duplicate %u: %d, existing %u", i, rc, ex);
        }
    }
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    CHECK(s.n == 150000, "n %zu", s.n);
    CHECK(fitlm_index_set_find(&s, "k149999", 7, key_of, NULL) == 149999, "find");
    CHECK(fitlm_index_set_find(&s, "k150000", 7, key_of, NULL) == -1, "find absent");
    CHECK(secs < 2.0, "200,000 adds took %.2f s", secs);
    fitlm_index_set_free(&s);
    return check_report();
}
