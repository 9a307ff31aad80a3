/* util/meminfo: size parsing, the memory available from fake /proc and cgroup
 * trees (v2 with a parent limit, v1, unlimited), and the budget check's verdict
 * and message. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "util/meminfo.h"

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

static void mkdir_p(const char *path) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0755);
            *p = '/';
        }
    mkdir(buf, 0755);
}

static void test_sizes(void) {
    static const struct {
        const char *s;
        unsigned long long v;
    } ok[] = {
        {"0", 0},
        {"4096", 4096},
        {"512MiB", 512ull << 20},
        {"12GiB", 12ull << 30},
        {"12G", 12ull << 30},
        {"12g", 12ull << 30},
        {"1.5GB", 1500000000ull},
        {"1.5G", 3ull << 29},
        {"2K", 2048},
        {"2kb", 2000},
        {"1T", 1ull << 40},
        {"100B", 100},
        {"0.5KiB", 512},
        {"18446744073709551615", 18446744073709551615ull},
        {"16777215T", 16777215ull << 40},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        uint64_t v = 1;
        fitlm_error err = {{0}};
        int rc = fitlm_parse_size(ok[i].s, &v, &err);
        CHECK(rc == 0 && v == ok[i].v, "'%s' -> rc %d, %llu (want %llu): %s", ok[i].s, rc, (unsigned long long)v,
              ok[i].v, err.msg);
    }
    static const char *bad[] = {"",     "G",      "-1",   "+5",  "1e9",  "12 G",  " 12G", "12GiBs", "1.5",
                                "1.",   ".5",     "0x10", "12X", "1..2", "18446744073709551616",
                                "16777216T", "1.5B", "nan", "inf", "12GG"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 7;
        fitlm_error err = {{0}};
        int rc = fitlm_parse_size(bad[i], &v, &err);
        CHECK(rc == -1 && v == 7 && strstr(err.msg, "is not a size"), "'%s' accepted (rc %d, %llu) or bad msg '%s'",
              bad[i], rc, (unsigned long long)v, err.msg);
    }
    char buf[32];
    CHECK(!strcmp(fitlm_format_size(900, buf, sizeof buf), "900 B"), "%s", buf);
    CHECK(!strcmp(fitlm_format_size(12ull << 30, buf, sizeof buf), "12.0 GiB"), "%s", buf);
    CHECK(!strcmp(fitlm_format_size(1536, buf, sizeof buf), "1.5 KiB"), "%s", buf);
}

static void test_sources(const char *tmp) {
    char root[900], p_meminfo[1024], p_cg[1024], dir[1024], f[1100];
    snprintf(root, sizeof root, "%s/meminfo-test", tmp);
    mkdir_p(root);
    snprintf(p_meminfo, sizeof p_meminfo, "%s/meminfo", root);
    write_file(p_meminfo, "MemTotal:       16000000 kB\nMemFree:         1000000 kB\n"
                          "MemAvailable:    8000000 kB\nBuffers:           1000 kB\n");
    fitlm_mem_avail a;
    fitlm_mem_available_from(p_meminfo, NULL, NULL, FITLM_MEM_UNKNOWN, &a);
    CHECK(a.meminfo == 8000000ull * 1024 && a.bytes == a.meminfo && !strcmp(a.source, "MemAvailable"),
          "meminfo %llu bytes %llu %s", (unsigned long long)a.meminfo, (unsigned long long)a.bytes, a.source);
    CHECK(a.cgroup == FITLM_MEM_UNKNOWN, "no cgroup root: unknown");

    /* cgroup v2: the process's cgroup has no limit, its parent 2 GiB with 0.5 GiB used */
    snprintf(p_cg, sizeof p_cg, "%s/self-cgroup", root);
    write_file(p_cg, "0::/user.slice/app.scope\n");
    snprintf(dir, sizeof dir, "%s/cg2/user.slice/app.scope", root);
    mkdir_p(dir);
    snprintf(f, sizeof f, "%s/memory.max", dir);
    write_file(f, "max\n");
    snprintf(f, sizeof f, "%s/memory.current", dir);
    write_file(f, "1000\n");
    snprintf(f, sizeof f, "%s/cg2/user.slice/memory.max", root);
    write_file(f, "2147483648\n");
    snprintf(f, sizeof f, "%s/cg2/user.slice/memory.current", root);
    write_file(f, "536870912\n");
    snprintf(dir, sizeof dir, "%s/cg2", root);
    fitlm_mem_available_from(p_meminfo, p_cg, dir, FITLM_MEM_UNKNOWN, &a);
    CHECK(a.cgroup == 1610612736ull && a.bytes == a.cgroup && !strcmp(a.source, "cgroup limit"),
          "cgroup v2 %llu %s", (unsigned long long)a.cgroup, a.source);
    /* the user's limit wins when smaller */
    fitlm_mem_available_from(p_meminfo, p_cg, dir, 1ull << 20, &a);
    CHECK(a.bytes == 1ull << 20 && !strcmp(a.source, "--mem-limit"), "user %llu %s", (unsigned long long)a.bytes,
          a.source);
    /* ... and is not an override when larger */
    fitlm_mem_available_from(p_meminfo, p_cg, dir, 1ull << 40, &a);
    CHECK(a.bytes == 1610612736ull, "larger user limit: %llu", (unsigned long long)a.bytes);

    /* cgroup v1: limit_in_bytes of the memory hierarchy; "unlimited" is a huge figure */
    write_file(p_cg, "12:cpu,cpuacct:/x\n4:memory:/docker/abc\n0::/\n");
    snprintf(dir, sizeof dir, "%s/cg1/memory/docker/abc", root);
    mkdir_p(dir);
    snprintf(f, sizeof f, "%s/memory.limit_in_bytes", dir);
    write_file(f, "1073741824\n");
    snprintf(f, sizeof f, "%s/memory.usage_in_bytes", dir);
    write_file(f, "73741824\n");
    snprintf(dir, sizeof dir, "%s/cg1", root);
    fitlm_mem_available_from(p_meminfo, p_cg, dir, FITLM_MEM_UNKNOWN, &a);
    CHECK(a.cgroup == 1000000000ull, "cgroup v1 %llu", (unsigned long long)a.cgroup);
    snprintf(f, sizeof f, "%s/cg1/memory/docker/abc/memory.limit_in_bytes", root);
    write_file(f, "9223372036854771712\n");
    fitlm_mem_available_from(p_meminfo, p_cg, dir, FITLM_MEM_UNKNOWN, &a);
    CHECK(a.cgroup == FITLM_MEM_UNKNOWN && !strcmp(a.source, "MemAvailable"), "v1 unlimited: %llu",
          (unsigned long long)a.cgroup);

    /* garbage and missing files: unknown, never a failure */
    write_file(p_meminfo, "MemAvailable: lots\n");
    fitlm_mem_available_from(p_meminfo, "/nonexistent", "/nonexistent", FITLM_MEM_UNKNOWN, &a);
    CHECK(a.bytes == FITLM_MEM_UNKNOWN && !strcmp(a.source, "unknown"), "garbage: %llu", (unsigned long long)a.bytes);

    /* this machine: MemAvailable is known on Linux */
    fitlm_mem_available(FITLM_MEM_UNKNOWN, &a);
    CHECK(a.meminfo != FITLM_MEM_UNKNOWN && a.meminfo > 0 && a.bytes <= a.meminfo, "system MemAvailable %llu",
          (unsigned long long)a.meminfo);
}

static void test_budget(void) {
    fitlm_mem_avail a = {.bytes = 12ull << 30, .source = "MemAvailable"};
    /* 64 KiB per position (KV 60, scratch 4), 1 GiB weights, 1 MiB fixed scratch */
    uint64_t per = 64ull << 10;
    fitlm_mem_need n = {.weights = 1ull << 30, .kv = 65536ull * (60ull << 10), .scratch = (1ull << 20) + 65536ull * (4ull << 10),
                        .n_ctx = 65536, .per_position = per, .ctx_flag = "-c"};
    fitlm_error err = {{0}};
    uint32_t fit = 0;
    int rc = fitlm_mem_budget_check(&n, &a, &fit, &err);
    /* (12 GiB - 1 GiB - 1 MiB) / 64 KiB = 176112, rounded down to 256: 175872 > 65536: it fits */
    CHECK(rc == 0 && fit == 65536, "fits: rc %d fit %u %s", rc, fit, err.msg);
    a.bytes = 3ull << 30; /* 2 GiB - 1 MiB for positions: 32752 -> 32512 */
    rc = fitlm_mem_budget_check(&n, &a, &fit, &err);
    CHECK(rc == -1 && fit == 32512, "too big: rc %d fit %u", rc, fit);
    CHECK(strstr(err.msg, "-c 65536 needs 5.0 GiB") && strstr(err.msg, "-c 32512 fits in 3.0 GiB free") &&
              strstr(err.msg, "(MemAvailable)") && strstr(err.msg, "KV cache 3.8 GiB"),
          "message: %s", err.msg);
    a.bytes = 1ull << 29;
    rc = fitlm_mem_budget_check(&n, &a, &fit, &err);
    CHECK(rc == -1 && fit == 0 && strstr(err.msg, "the weights alone (1.0 GiB) do not fit in the 512.0 MiB free"),
          "weights: %s", err.msg);
    /* unknown availability never refuses */
    a.bytes = FITLM_MEM_UNKNOWN;
    CHECK(fitlm_mem_budget_check(&n, &a, &fit, &err) == 0 && fit == 65536, "unknown");
    /* saturating sums: absurd figures refuse instead of wrapping */
    a.bytes = 1ull << 40;
    n.kv = UINT64_MAX - 5;
    CHECK(fitlm_mem_budget_check(&n, &a, &fit, &err) == -1, "overflow wrapped");
}

int main(void) {
    const char *tmp = getenv("FITLM_TMP");
    test_sizes();
    test_sources(tmp && *tmp ? tmp : "/tmp");
    test_budget();
    return check_report();
}
