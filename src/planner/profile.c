/* The host profile: facts of this machine from /proc and /sys, and the JSON
 * file `fitlm calibrate` writes and the planner and `--plan-check` read. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "format/ggml_type.h"
#include "format/json_strict.h"
#include "planner/cpu_cost.h"
#include "sys/cpu_features.h"
#include "sys/threadpool.h"
#include "util/file.h"

/* ---- facts ---- */

static double read_number_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char buf[64] = {0};
    double v = 0;
    if (fgets(buf, sizeof buf, f)) {
        char *end;
        v = strtod(buf, &end);
        if (*end == 'K') v *= 1024;
        else if (*end == 'M') v *= 1048576;
    }
    fclose(f);
    return v;
}

/* Cache size of a level from cpu0's cache directory (the largest unified or data cache of that level). */
static double cache_bytes(int level) {
    double best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", i);
        if ((int)read_number_file(path) != level) continue;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        double b = read_number_file(path);
        if (b > best) best = b;
    }
    return best;
}

static void append_flag(char *flags, size_t cap, const char *line, const char *flag) {
    char pat[32];
    snprintf(pat, sizeof pat, " %s", flag);
    const char *p = strstr(line, pat);
    if (!p || (p[strlen(pat)] != ' ' && p[strlen(pat)] != '\n' && p[strlen(pat)] != 0)) return;
    size_t n = strlen(flags);
    snprintf(flags + n, cap - n, "%s%s", n ? " " : "", flag);
}

void fitlm_host_facts(fitlm_host_profile *p) {
    memset(p, 0, sizeof *p);
    p->version = FITLM_PROFILE_VERSION;
    snprintf(p->cpu, sizeof p->cpu, "CPU");
    p->physical_cores = fitlm_physical_cores();
    if (p->physical_cores < 1) p->physical_cores = 1;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    p->logical_cpus = n > 0 ? (int)n : p->physical_cores;
    snprintf(p->isa, sizeof p->isa, "%s", fitlm_cpu_isa_name(fitlm_cpu_isa_detect()));
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[8192];
        bool got_model = false, got_flags = false;
        while (fgets(line, sizeof line, f)) {
            char *colon = strchr(line, ':');
            if (!colon) continue;
            char *val = colon + 1;
            while (*val == ' ' || *val == '\t') val++;
            if (!got_model && strncmp(line, "model name", 10) == 0) {
                val[strcspn(val, "\n")] = 0;
                snprintf(p->cpu, sizeof p->cpu, "%s", val);
                got_model = true;
            } else if (!got_flags && strncmp(line, "flags", 5) == 0) {
                static const char *const want[] = {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni",
                                                   "avx512_bf16", "amx_int8"};
                for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
                    append_flag(p->flags, sizeof p->flags, colon, want[i]);
                got_flags = true;
            }
        }
        fclose(f);
    }
    /* the rated maximum clock, not the momentary "cpu MHz" */
    double khz = read_number_file("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq");
    if (khz > 0) p->max_mhz = khz / 1000.0;
    else {
        const char *at = strstr(p->cpu, "@ ");
        if (at) {
            double ghz = strtod(at + 2, NULL);
            if (ghz > 0.1 && ghz < 10) p->max_mhz = ghz * 1000.0;
        }
    }
    p->l2_bytes = cache_bytes(2);
    p->l3_bytes = cache_bytes(3);
    f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (strncmp(line, "MemTotal:", 9) == 0) {
                p->memory_bytes = strtod(line + 9, NULL) * 1024.0;
                break;
            }
        fclose(f);
    }
}

/* ---- path ---- */

int fitlm_host_profile_default_path(char *buf, size_t cap) {
    const char *xdg = getenv("XDG_CACHE_HOME");
    int n;
    if (xdg && xdg[0] == '/') n = snprintf(buf, cap, "%s/fitlm/host.json", xdg);
    else {
        const char *home = getenv("HOME");
        if (!home || home[0] != '/') return -1;
        n = snprintf(buf, cap, "%s/.cache/fitlm/host.json", home);
    }
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* mkdir -p of path's parent directory. */
static int make_parents(const char *path, fitlm_error *err) {
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir) return fitlm_fail(err, "%s: path too long", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir) return 0;
    *slash = 0;
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(dir, 0755) != 0 && errno != EEXIST) return fitlm_fail(err, "%s: mkdir: %s", dir, strerror(errno));
        *p = '/';
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return fitlm_fail(err, "%s: mkdir: %s", dir, strerror(errno));
    return 0;
}

/* ---- JSON ---- */

char *fitlm_host_profile_json(const fitlm_host_profile *p) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON_AddStringToObject(o, "format", "fitlm-host-profile");
    cJSON_AddNumberToObject(o, "version", p->version);
    cJSON_AddStringToObject(o, "created", p->created);
    cJSON *h = cJSON_AddObjectToObject(o, "host");
    cJSON_AddStringToObject(h, "cpu", p->cpu);
    cJSON_AddStringToObject(h, "isa", p->isa);
    cJSON_AddStringToObject(h, "flags", p->flags);
    cJSON_AddNumberToObject(h, "physical_cores", p->physical_cores);
    cJSON_AddNumberToObject(h, "logical_cpus", p->logical_cpus);
    cJSON_AddNumberToObject(h, "l2_bytes", p->l2_bytes);
    cJSON_AddNumberToObject(h, "l3_bytes", p->l3_bytes);
    cJSON_AddNumberToObject(h, "memory_bytes", p->memory_bytes);
    cJSON_AddNumberToObject(h, "max_mhz", p->max_mhz);
    cJSON *bw = cJSON_AddArrayToObject(o, "read_bw_by_threads");
    for (int t = 1; t <= p->n_bw; t++) cJSON_AddItemToArray(bw, cJSON_CreateNumber(p->read_bw[t]));
    cJSON_AddNumberToObject(o, "kernel_threads", p->threads);
    cJSON *ks = cJSON_AddArrayToObject(o, "kernels");
    for (int i = 0; i < p->n_kern; i++) {
        cJSON *k = cJSON_CreateObject();
        cJSON_AddStringToObject(k, "type", fitlm_type_name(p->kern[i].type));
        cJSON_AddBoolToObject(k, "repacked", p->kern[i].repacked);
        cJSON_AddNumberToObject(k, "decode_bw", p->kern[i].decode_bw);
        cJSON_AddNumberToObject(k, "prefill_flops", p->kern[i].prefill_flops);
        cJSON_AddNumberToObject(k, "batch_flops", p->kern[i].batch_flops);
        /* {"rows": time of that many rows / time of one row} */
        bool all = true;
        for (int j = 0; j < FITLM_CAL_N_BATCH; j++) all = all && p->kern[i].batch_ratio[j] >= 1;
        cJSON *br = all ? cJSON_AddObjectToObject(k, "batch_ratio") : NULL;
        for (int j = 0; j < FITLM_CAL_N_BATCH && br; j++) {
            char key[16];
            snprintf(key, sizeof key, "%d", fitlm_cal_batch_rows[j]);
            cJSON_AddNumberToObject(br, key, p->kern[i].batch_ratio[j]);
        }
        cJSON_AddItemToArray(ks, k);
    }
    cJSON_AddNumberToObject(o, "dispatch_s", p->dispatch_s);
    cJSON_AddNumberToObject(o, "per_layer_s", p->per_layer_s);
    cJSON_AddNumberToObject(o, "per_token_s", p->per_token_s);
    cJSON_AddNumberToObject(o, "matmul_call_s", p->matmul_call_s);
    cJSON_AddStringToObject(o, "overhead_source", p->overhead_source);
    cJSON_AddNumberToObject(o, "process_base_bytes", p->process_base_bytes);
    cJSON_AddNumberToObject(o, "allreduce_alpha_s", p->allreduce_alpha_s);
    cJSON_AddNumberToObject(o, "allreduce_bw", p->allreduce_bw);
    cJSON_AddNumberToObject(o, "attn_decode_flops", p->attn_decode_flops);
    cJSON_AddNumberToObject(o, "attn_prefill_flops", p->attn_prefill_flops);
    cJSON_AddBoolToObject(o, "quick", p->quick);
    if (p->n_dev > 0) {
        cJSON *ds = cJSON_AddArrayToObject(o, "devices");
        for (int i = 0; i < p->n_dev && ds; i++) {
            const fitlm_device_rates *d = &p->dev[i];
            cJSON *dj = cJSON_CreateObject();
            if (!dj) break;
            cJSON_AddItemToArray(ds, dj);
            cJSON_AddStringToObject(dj, "name", d->name);
            cJSON_AddStringToObject(dj, "backend", d->backend);
            cJSON_AddNumberToObject(dj, "memory_bytes", d->memory_bytes);
            cJSON_AddNumberToObject(dj, "per_layer_s", d->per_layer_s);
            cJSON_AddNumberToObject(dj, "per_step_s", d->per_step_s);
            cJSON_AddBoolToObject(dj, "quick", d->quick);
            cJSON *ks2 = cJSON_AddArrayToObject(dj, "kernels");
            for (int k = 0; k < d->n_kern && ks2; k++) {
                cJSON *kj = cJSON_CreateObject();
                if (!kj) break;
                cJSON_AddItemToArray(ks2, kj);
                cJSON_AddStringToObject(kj, "type", fitlm_type_name(d->kern[k].type));
                cJSON_AddNumberToObject(kj, "decode_bw", d->kern[k].decode_bw);
                cJSON_AddNumberToObject(kj, "prefill_flops", d->kern[k].prefill_flops);
            }
        }
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

int fitlm_host_profile_save(const fitlm_host_profile *p, const char *path, fitlm_error *err) {
    if (make_parents(path, err)) return -1;
    char *s = fitlm_host_profile_json(p);
    if (!s) return fitlm_fail(err, "out of memory");
    fitlm_atomic_file *f = fitlm_atomic_open(path, err);
    if (!f) {
        free(s);
        return -1;
    }
    int ok = fputs(s, f->fp) >= 0 && fputc('\n', f->fp) != EOF;
    free(s);
    if (!ok) {
        fitlm_atomic_abort(f);
        return fitlm_fail(err, "%s: write failed", path);
    }
    return fitlm_atomic_commit(f, err);
}

static int get_num(const cJSON *o, const char *key, double lo, double hi, double *out, const char *path,
                    fitlm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return fitlm_fail(err, "%s: missing field '%s'", path, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < lo || v->valuedouble > hi)
        return fitlm_fail(err, "%s: field '%s' must be a number in [%g, %g]", path, key, lo, hi);
    *out = v->valuedouble;
    return 0;
}

static int get_str(const cJSON *o, const char *key, char *dst, size_t cap, const char *path, fitlm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return fitlm_fail(err, "%s: missing field '%s'", path, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return fitlm_fail(err, "%s: field '%s' must be a string of fewer than %zu bytes", path, key, cap);
    snprintf(dst, cap, "%s", v->valuestring);
    return 0;
}

static int parse_profile(fitlm_host_profile *p, const cJSON *o, const char *path, fitlm_error *err) {
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    if (!cJSON_IsString(fmt) || strcmp(fmt->valuestring, "fitlm-host-profile"))
        return fitlm_fail(err, "%s: not a fitlm host profile (no \"format\": \"fitlm-host-profile\")", path);
    double v = 0;
    if (get_num(o, "version", 1, 1000, &v, path, err)) return -1;
    if ((int)v != FITLM_PROFILE_VERSION)
        return fitlm_fail(err, "%s: profile version %d, this fitlm reads version %d: run 'fitlm calibrate' again", path,
                          (int)v, FITLM_PROFILE_VERSION);
    p->version = (int)v;
    if (get_str(o, "created", p->created, sizeof p->created, path, err)) return -1;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "host");
    if (!cJSON_IsObject(h)) return fitlm_fail(err, "%s: missing object 'host'", path);
    if (get_str(h, "cpu", p->cpu, sizeof p->cpu, path, err) || get_str(h, "isa", p->isa, sizeof p->isa, path, err) ||
        get_str(h, "flags", p->flags, sizeof p->flags, path, err))
        return -1;
    double pc = 0, lc = 0;
    if (get_num(h, "physical_cores", 1, 65536, &pc, path, err) || get_num(h, "logical_cpus", 1, 65536, &lc, path, err) ||
        get_num(h, "l2_bytes", 0, 1e12, &p->l2_bytes, path, err) ||
        get_num(h, "l3_bytes", 0, 1e12, &p->l3_bytes, path, err) ||
        get_num(h, "memory_bytes", 0, 1e16, &p->memory_bytes, path, err) ||
        get_num(h, "max_mhz", 0, 1e5, &p->max_mhz, path, err))
        return -1;
    p->physical_cores = (int)pc;
    p->logical_cpus = (int)lc;
    const cJSON *bw = cJSON_GetObjectItemCaseSensitive(o, "read_bw_by_threads");
    if (!cJSON_IsArray(bw)) return fitlm_fail(err, "%s: missing array 'read_bw_by_threads'", path);
    int nb = cJSON_GetArraySize(bw);
    if (nb > FITLM_PROFILE_MAX_THREADS)
        return fitlm_fail(err, "%s: 'read_bw_by_threads' has %d entries (at most %d)", path, nb, FITLM_PROFILE_MAX_THREADS);
    p->n_bw = nb;
    int t = 1;
    for (const cJSON *e = bw->child; e; e = e->next, t++) {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || e->valuedouble < 0 || e->valuedouble > 1e14)
            return fitlm_fail(err, "%s: read_bw_by_threads[%d] must be a number of bytes/s in [0, 1e14]", path, t - 1);
        p->read_bw[t] = e->valuedouble;
    }
    if (get_num(o, "kernel_threads", 0, FITLM_PROFILE_MAX_THREADS, &v, path, err)) return -1;
    p->threads = (int)v;
    const cJSON *ks = cJSON_GetObjectItemCaseSensitive(o, "kernels");
    if (!cJSON_IsArray(ks)) return fitlm_fail(err, "%s: missing array 'kernels'", path);
    if (cJSON_GetArraySize(ks) > FITLM_PROFILE_MAX_TYPES)
        return fitlm_fail(err, "%s: more than %d kernels", path, FITLM_PROFILE_MAX_TYPES);
    for (const cJSON *k = ks->child; k; k = k->next) {
        fitlm_kernel_rate *r = &p->kern[p->n_kern];
        char tn[16];
        if (!cJSON_IsObject(k) || get_str(k, "type", tn, sizeof tn, path, err)) return fitlm_fail(err, "%s: bad kernel entry", path);
        r->type = fitlm_type_from_name(tn);
        if (r->type < 0) return fitlm_fail(err, "%s: kernel type '%s' is unknown", path, tn);
        const cJSON *rp = cJSON_GetObjectItemCaseSensitive(k, "repacked");
        if (!cJSON_IsBool(rp)) return fitlm_fail(err, "%s: kernel %s: 'repacked' must be true or false", path, tn);
        r->repacked = cJSON_IsTrue(rp);
        if (get_num(k, "decode_bw", 0, 1e14, &r->decode_bw, path, err) ||
            get_num(k, "prefill_flops", 0, 1e17, &r->prefill_flops, path, err))
            return -1;
        /* optional: profiles written before it was measured lack it (0: batched decode stays bandwidth-bound) */
        if (cJSON_GetObjectItemCaseSensitive(k, "batch_flops") &&
            get_num(k, "batch_flops", 0, 1e17, &r->batch_flops, path, err))
            return -1;
        /* optional too (0: the 16-row rate alone); every timed row count or none */
        const cJSON *br = cJSON_GetObjectItemCaseSensitive(k, "batch_ratio");
        if (br) {
            if (!cJSON_IsObject(br)) return fitlm_fail(err, "%s: kernel %s: 'batch_ratio' must be an object", path, tn);
            for (int j = 0; j < FITLM_CAL_N_BATCH; j++) {
                char key[16];
                snprintf(key, sizeof key, "%d", fitlm_cal_batch_rows[j]);
                /* a row count costs at least one row's time and at most its rows' times 100 */
                if (get_num(br, key, 1, 100.0 * fitlm_cal_batch_rows[j], &r->batch_ratio[j], path, err)) return -1;
            }
        }
        p->n_kern++;
    }
    if (get_num(o, "dispatch_s", 0, 1, &p->dispatch_s, path, err) ||
        get_num(o, "per_layer_s", 0, 1, &p->per_layer_s, path, err) ||
        get_num(o, "per_token_s", 0, 10, &p->per_token_s, path, err) ||
        get_str(o, "overhead_source", p->overhead_source, sizeof p->overhead_source, path, err) ||
        get_num(o, "process_base_bytes", 0, 1e12, &p->process_base_bytes, path, err) ||
        get_num(o, "allreduce_alpha_s", 0, 10, &p->allreduce_alpha_s, path, err) ||
        get_num(o, "allreduce_bw", 0, 1e14, &p->allreduce_bw, path, err))
        return -1;
    /* optional: profiles written before it was measured lack it (0) */
    if (cJSON_GetObjectItemCaseSensitive(o, "matmul_call_s") &&
        get_num(o, "matmul_call_s", 0, 1, &p->matmul_call_s, path, err))
        return -1;
    if (cJSON_GetObjectItemCaseSensitive(o, "attn_decode_flops") &&
        get_num(o, "attn_decode_flops", 0, 1e16, &p->attn_decode_flops, path, err))
        return -1;
    if (cJSON_GetObjectItemCaseSensitive(o, "attn_prefill_flops") &&
        get_num(o, "attn_prefill_flops", 0, 1e16, &p->attn_prefill_flops, path, err))
        return -1;
    /* optional (false): profiles written before it */
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(o, "quick");
    if (q && !cJSON_IsBool(q)) return fitlm_fail(err, "%s: 'quick' must be true or false", path);
    p->quick = cJSON_IsTrue(q);
    /* optional: the GPUs `calibrate --device` measured */
    const cJSON *ds = cJSON_GetObjectItemCaseSensitive(o, "devices");
    if (ds) {
        if (!cJSON_IsArray(ds) || cJSON_GetArraySize(ds) > FITLM_PROFILE_MAX_DEVICES)
            return fitlm_fail(err, "%s: 'devices' must be an array of at most %d devices", path,
                              FITLM_PROFILE_MAX_DEVICES);
        for (const cJSON *dj = ds->child; dj; dj = dj->next) {
            fitlm_device_rates *d = &p->dev[p->n_dev];
            if (!cJSON_IsObject(dj)) return fitlm_fail(err, "%s: a device entry must be an object", path);
            if (get_str(dj, "name", d->name, sizeof d->name, path, err) ||
                get_str(dj, "backend", d->backend, sizeof d->backend, path, err) ||
                get_num(dj, "memory_bytes", 0, 1e15, &d->memory_bytes, path, err) ||
                get_num(dj, "per_layer_s", 0, 1, &d->per_layer_s, path, err) ||
                get_num(dj, "per_step_s", 0, 10, &d->per_step_s, path, err))
                return -1;
            const cJSON *dq = cJSON_GetObjectItemCaseSensitive(dj, "quick");
            if (!cJSON_IsBool(dq)) return fitlm_fail(err, "%s: device '%s': 'quick' must be true or false", path, d->name);
            d->quick = cJSON_IsTrue(dq);
            const cJSON *dk = cJSON_GetObjectItemCaseSensitive(dj, "kernels");
            if (!cJSON_IsArray(dk) || cJSON_GetArraySize(dk) < 1 ||
                cJSON_GetArraySize(dk) > FITLM_PROFILE_MAX_DEVICE_TYPES)
                return fitlm_fail(err, "%s: device '%s': 'kernels' must be an array of 1 to %d entries", path, d->name,
                                  FITLM_PROFILE_MAX_DEVICE_TYPES);
            for (const cJSON *kj = dk->child; kj; kj = kj->next) {
                char tn[16];
                if (!cJSON_IsObject(kj) || get_str(kj, "type", tn, sizeof tn, path, err))
                    return fitlm_fail(err, "%s: device '%s': bad kernel entry", path, d->name);
                int kt = fitlm_type_from_name(tn);
                if (kt < 0) return fitlm_fail(err, "%s: device '%s': kernel type '%s' is unknown", path, d->name, tn);
                d->kern[d->n_kern].type = kt;
                if (get_num(kj, "decode_bw", 1, 1e14, &d->kern[d->n_kern].decode_bw, path, err) ||
                    get_num(kj, "prefill_flops", 1, 1e17, &d->kern[d->n_kern].prefill_flops, path, err))
                    return -1;
                d->n_kern++;
            }
            p->n_dev++;
        }
    }
    return 0;
}

void fitlm_host_profile_put_device(fitlm_host_profile *p, const fitlm_device_rates *d) {
    int slot = p->n_dev < FITLM_PROFILE_MAX_DEVICES ? p->n_dev : FITLM_PROFILE_MAX_DEVICES - 1;
    for (int i = 0; i < p->n_dev; i++)
        if (!strcmp(p->dev[i].name, d->name)) slot = i;
    p->dev[slot] = *d;
    if (slot == p->n_dev) p->n_dev++;
}

const fitlm_device_rates *fitlm_host_profile_device(const fitlm_host_profile *p, const char *name) {
    if (!p || !name) return NULL;
    for (int i = 0; i < p->n_dev; i++)
        if (!strcmp(p->dev[i].name, name)) return &p->dev[i];
    return NULL;
}

int fitlm_host_profile_load(fitlm_host_profile *p, const char *path, fitlm_error *err) {
    memset(p, 0, sizeof *p);
    size_t len = 0;
    char *text = fitlm_file_read_all(path, 1 << 20, &len, err);
    if (!text) return -1;
    cJSON *o = cJSON_ParseWithLength(text, len);
    free(text);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return fitlm_fail(err, "%s: not valid JSON", path);
    }
    int rc = fitlm_json_check_unique_keys(o, path, err);
    if (rc == 0) rc = parse_profile(p, o, path, err);
    cJSON_Delete(o);
    if (rc) memset(p, 0, sizeof *p);
    return rc;
}
