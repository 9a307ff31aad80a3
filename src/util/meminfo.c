#include "util/meminfo.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <unistd.h>

static int size_error(fitlm_error *err, const char *s, const char *why) {
    return fitlm_fail(err, "'%.40s' is not a size%s (examples: 4096, 512MiB, 12G, 1.5GB)", s, why);
}

int fitlm_parse_size(const char *s, uint64_t *out, fitlm_error *err) {
    const char *p = s;
    uint64_t whole = 0, frac = 0, frac_scale = 1;
    int n_digits = 0;
    while (isdigit((unsigned char)*p)) {
        unsigned d = (unsigned)(*p - '0');
        if (whole > (UINT64_MAX - d) / 10) return size_error(err, s, ": too large");
        whole = whole * 10 + d;
        p++;
        n_digits++;
    }
    int has_frac = 0;
    if (*p == '.') {
        p++;
        has_frac = 1;
        int nf = 0;
        while (isdigit((unsigned char)*p)) {
            if (nf < 6) { /* micro-units are enough and keep frac * mult in 64 bits */
                frac = frac * 10 + (uint64_t)(*p - '0');
                frac_scale *= 10;
            }
            nf++;
            p++;
        }
        if (nf == 0) return size_error(err, s, "");
        n_digits += nf;
    }
    if (n_digits == 0) return size_error(err, s, "");
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1ull << 10},
        {"kib", 1ull << 10},
        {"kb", 1000ull},
        {"m", 1ull << 20},
        {"mib", 1ull << 20},
        {"mb", 1000000ull},
        {"g", 1ull << 30},
        {"gib", 1ull << 30},
        {"gb", 1000000000ull},
        {"t", 1ull << 40},
        {"tib", 1ull << 40},
        {"tb", 1000000000000ull},
    };
    uint64_t mult = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (!strcasecmp(p, units[i].unit)) mult = units[i].mult;
    if (!mult) return size_error(err, s, ": unknown unit");
    if (has_frac && mult == 1 && frac != 0) return size_error(err, s, ": a fraction of a byte");
    if (whole > UINT64_MAX / mult) return size_error(err, s, ": too large");
    uint64_t v = whole * mult;
    /* frac / frac_scale * mult without floating point: frac < 1e6, mult <= 2^40 */
    uint64_t f = frac * mult / frac_scale;
    if (f > UINT64_MAX - v) return size_error(err, s, ": too large");
    *out = v + f;
    return 0;
}

char *fitlm_format_size(uint64_t bytes, char *buf, size_t cap) {
    static const char *names[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    if (!cap) return buf;
    if (bytes < 1024) {
        snprintf(buf, cap, "%llu B", (unsigned long long)bytes);
        return buf;
    }
    double v = (double)bytes / 1024.0;
    int i = 0;
    while (v >= 1024.0 && i < 5) {
        v /= 1024.0;
        i++;
    }
    snprintf(buf, cap, "%.1f %s", v, names[i]);
    return buf;
}

/* Reads a small text file (a /proc or /sys entry) into buf; 0 or -1. Opens
 * non-blocking so that a FIFO given for tests cannot block. */
static int read_small(const char *path, char *buf, size_t cap) {
    if (!path) return -1;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = 0;
    while (n + 1 < cap) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    return n ? 0 : -1;
}

/* A cgroup figure: a decimal number of bytes ("max" or garbage: unknown). */
static uint64_t parse_cgroup_number(const char *s) {
    char *end = NULL;
    if (!isdigit((unsigned char)*s)) return FITLM_MEM_UNKNOWN;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || (*end && *end != '\n')) return FITLM_MEM_UNKNOWN;
    return v;
}

static uint64_t read_cgroup_file(const char *dir, const char *name) {
    char path[4096], buf[64];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return FITLM_MEM_UNKNOWN;
    if (read_small(path, buf, sizeof buf)) return FITLM_MEM_UNKNOWN;
    return parse_cgroup_number(buf);
}

static uint64_t headroom(uint64_t limit, uint64_t used) {
    if (limit == FITLM_MEM_UNKNOWN) return FITLM_MEM_UNKNOWN;
    /* cgroup v1 reports "no limit" as a huge page-rounded number */
    if (limit >= (1ull << 60)) return FITLM_MEM_UNKNOWN;
    if (used == FITLM_MEM_UNKNOWN) return limit;
    return used >= limit ? 0 : limit - used;
}

static uint64_t cgroup_available(const char *proc_cgroup_path, const char *root) {
    if (!root) return FITLM_MEM_UNKNOWN;
    char buf[8192];
    const char *v2_rel = NULL, *v1_rel = NULL;
    if (!read_small(proc_cgroup_path, buf, sizeof buf)) {
        /* lines "ID:CONTROLLERS:PATH"; v2 is "0::PATH", v1 memory "N:memory:PATH" */
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char *c1 = strchr(line, ':');
            if (!c1) continue;
            char *c2 = strchr(c1 + 1, ':');
            if (!c2) continue;
            *c2 = 0;
            const char *ctrl = c1 + 1;
            if (!strncmp(line, "0:", 2) && !*ctrl) v2_rel = c2 + 1;
            else {
                /* controllers are comma-separated */
                char ctrls[256];
                snprintf(ctrls, sizeof ctrls, ",%s,", ctrl);
                if (strstr(ctrls, ",memory,")) v1_rel = c2 + 1;
            }
        }
    }
    uint64_t best = FITLM_MEM_UNKNOWN;
    char dir[4096];
    /* cgroup v2 sits at the root, or under "unified" on hybrid v1/v2 systems */
    for (int hybrid = 0; v2_rel && hybrid < 2; hybrid++) {
        /* the limit of every ancestor applies: walk from the process's cgroup up to the root */
        const char *sub = hybrid ? "/unified" : "";
        if (snprintf(dir, sizeof dir, "%s%s%s", root, sub, v2_rel) < (int)sizeof dir) {
            size_t root_len = strlen(root) + strlen(sub);
            for (;;) {
                uint64_t h = headroom(read_cgroup_file(dir, "memory.max"), read_cgroup_file(dir, "memory.current"));
                if (h < best) best = h;
                char *slash = strrchr(dir, '/');
                if (!slash || (size_t)(slash - dir) < root_len) break;
                *slash = 0;
            }
        }
    }
    /* cgroup v1: the memory controller's hierarchy */
    const char *v1_try[2] = {v1_rel, "/"};
    for (int i = 0; i < 2; i++) {
        if (!v1_try[i]) continue;
        if (snprintf(dir, sizeof dir, "%s/memory%s", root, v1_try[i]) >= (int)sizeof dir) continue;
        uint64_t h = headroom(read_cgroup_file(dir, "memory.limit_in_bytes"),
                              read_cgroup_file(dir, "memory.usage_in_bytes"));
        if (h < best) best = h;
    }
    return best;
}

static uint64_t meminfo_available(const char *path) {
    char buf[16384];
    if (read_small(path, buf, sizeof buf)) return FITLM_MEM_UNKNOWN;
    const char *p = strstr(buf, "MemAvailable:");
    if (!p) return FITLM_MEM_UNKNOWN;
    p += strlen("MemAvailable:");
    while (*p == ' ' || *p == '\t') p++;
    if (!isdigit((unsigned char)*p)) return FITLM_MEM_UNKNOWN;
    char *end = NULL;
    errno = 0;
    unsigned long long kb = strtoull(p, &end, 10);
    if (errno || kb > UINT64_MAX / 1024) return FITLM_MEM_UNKNOWN;
    while (*end == ' ') end++;
    if (strncmp(end, "kB", 2) != 0) return FITLM_MEM_UNKNOWN;
    return (uint64_t)kb * 1024;
}

/* RLIMIT_AS (ulimit -v) minus the address space already in use (the first
 * field of /proc/self/statm, in pages) and what threads reserve; unknown when
 * unlimited. */
static uint64_t address_space_available(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return FITLM_MEM_UNKNOWN;
    char buf[256];
    uint64_t used = 0;
    if (!read_small("/proc/self/statm", buf, sizeof buf)) {
        unsigned long long pages = strtoull(buf, NULL, 10);
        long page = sysconf(_SC_PAGESIZE);
        used = pages * (uint64_t)(page > 0 ? page : 4096);
    }
    /* address space that is reserved, not used: a 64 MiB malloc arena and a
     * thread stack per worker thread, the main arena */
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    used += (uint64_t)((ncpu > 0 ? ncpu : 1) + 1) * (72ull << 20);
    return used >= (uint64_t)rl.rlim_cur ? 0 : (uint64_t)rl.rlim_cur - used;
}

void fitlm_mem_available_from(const char *meminfo_path, const char *proc_cgroup_path, const char *cgroup_root,
                              uint64_t user_limit, fitlm_mem_avail *out) {
    out->meminfo = meminfo_available(meminfo_path);
    out->cgroup = cgroup_available(proc_cgroup_path, cgroup_root);
    out->user = user_limit;
    out->bytes = FITLM_MEM_UNKNOWN;
    out->source = "unknown";
    if (out->meminfo != FITLM_MEM_UNKNOWN) {
        out->bytes = out->meminfo;
        out->source = "MemAvailable";
    }
    if (out->cgroup < out->bytes) {
        out->bytes = out->cgroup;
        out->source = "cgroup limit";
    }
    out->address_space = address_space_available();
    if (out->address_space < out->bytes) {
        out->bytes = out->address_space;
        out->source = "ulimit -v";
    }
    if (out->user != FITLM_MEM_UNKNOWN && out->user <= out->bytes) {
        out->bytes = out->user;
        out->source = "--mem-limit";
    }
}

void fitlm_mem_available(uint64_t user_limit, fitlm_mem_avail *out) {
    fitlm_mem_available_from("/proc/meminfo", "/proc/self/cgroup", "/sys/fs/cgroup", user_limit, out);
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

int fitlm_mem_budget_check(const fitlm_mem_need *need, const fitlm_mem_avail *avail, uint32_t *fit_ctx,
                           fitlm_error *err) {
    if (fit_ctx) *fit_ctx = 0;
    uint64_t total = sat_add(sat_add(need->weights, need->kv), need->scratch);
    uint64_t free_b = avail->bytes;
    if (free_b == FITLM_MEM_UNKNOWN || total <= free_b) {
        if (fit_ctx) *fit_ctx = need->n_ctx;
        return 0;
    }
    char s_total[32], s_w[32], s_kv[32], s_sc[32], s_free[32];
    fitlm_format_size(total, s_total, sizeof s_total);
    fitlm_format_size(need->weights, s_w, sizeof s_w);
    fitlm_format_size(need->kv, s_kv, sizeof s_kv);
    fitlm_format_size(need->scratch, s_sc, sizeof s_sc);
    fitlm_format_size(free_b, s_free, sizeof s_free);
    const char *flag = need->ctx_flag ? need->ctx_flag : "a context of";
    /* what fits: the part that does not grow with the context, then whole positions */
    uint64_t fixed = need->weights;
    if (need->per_position) {
        uint64_t grows = (uint64_t)need->n_ctx * need->per_position;
        uint64_t rest = sat_add(need->kv, need->scratch);
        fixed = sat_add(fixed, rest > grows ? rest - grows : 0);
    }
    uint64_t fits = 0;
    if (need->per_position && fixed < free_b) {
        uint64_t n = (free_b - fixed) / need->per_position;
        if (n >= need->n_ctx) n = need->n_ctx ? need->n_ctx - 1 : 0;
        fits = n >= 256 ? n / 256 * 256 : n;
    }
    if (fit_ctx) *fit_ctx = fits > UINT32_MAX ? UINT32_MAX : (uint32_t)fits;
    if (need->weights >= free_b)
        return fitlm_fail(err, "the weights alone (%s) do not fit in the %s free (%s)", s_w, s_free, avail->source);
    if (fits == 0)
        return fitlm_fail(err,
                          "%s %u needs %s (weights %s, KV cache %s, scratch %s) but %s is free (%s); "
                          "no context fits",
                          flag, need->n_ctx, s_total, s_w, s_kv, s_sc, s_free, avail->source);
    return fitlm_fail(err,
                      "%s %u needs %s (weights %s, KV cache %s, scratch %s) but %s is free (%s); "
                      "%s %llu fits in %s free",
                      flag, need->n_ctx, s_total, s_w, s_kv, s_sc, s_free, avail->source, flag,
                      (unsigned long long)fits, s_free);
}
