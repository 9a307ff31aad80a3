/* GPU catalog: the built-in data/gpus.json (compiled into the binary by CMake),
 * user catalogs (--gpus-file, same format) and the CPU of this machine. */
#include <cjson/cJSON.h>

#include "format/json_strict.h"
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/ggml_type.h"
#include "planner/host_comm.h"
#include "planner/cpu_cost.h"
#include "planner/planner.h"
#include "sys/membw.h"
#include "sys/threadpool.h"

extern const char fitlm_data_gpus_json[];
extern const size_t fitlm_data_gpus_json_len;

/* Lower-case, '_' and ' ' become '-'. */
static void norm_name(const char *in, char *out, size_t cap) {
    size_t j = 0;
    for (size_t i = 0; in[i] && j + 1 < cap; i++) {
        char c = (char)tolower((unsigned char)in[i]);
        if (c == '_' || c == ' ') c = '-';
        out[j++] = c;
    }
    out[j] = 0;
}

static int names_equal(const char *a, const char *b) {
    char x[64], y[64];
    norm_name(a, x, sizeof x);
    norm_name(b, y, sizeof y);
    return strcmp(x, y) == 0;
}

int fitlm_catalog_find(const fitlm_catalog *cat, const char *name) {
    if (!name || !*name) return -1;
    for (size_t i = 0; i < cat->n; i++) {
        if (names_equal(cat->gpus[i].name, name)) return (int)i;
        for (int k = 0; k < cat->gpus[i].n_aliases; k++)
            if (names_equal(cat->gpus[i].aliases[k], name)) return (int)i;
    }
    return -1;
}

/* A driver's device name as upper-case words (letters and digits). */
enum { DEV_MAX_WORDS = 12, DEV_WORD = 16 };
static int device_words(const char *name, char w[DEV_MAX_WORDS][DEV_WORD]) {
    int n = 0;
    size_t len = 0;
    for (const char *p = name;; p++) {
        if (isalnum((unsigned char)*p)) {
            if (len + 1 < DEV_WORD && n < DEV_MAX_WORDS) w[n][len++] = (char)toupper((unsigned char)*p);
            continue;
        }
        if (len > 0 && n < DEV_MAX_WORDS) w[n][len] = 0, n++;
        len = 0;
        if (!*p) break;
    }
    return n;
}

static bool has_word(char w[DEV_MAX_WORDS][DEV_WORD], int n, const char *x) {
    for (int i = 0; i < n; i++)
        if (!strcmp(w[i], x)) return true;
    return false;
}

int fitlm_catalog_match_device(const fitlm_catalog *cat, const char *device_name) {
    if (!cat || !device_name) return -1;
    /* the words a name must have, the words it must not (a variant of the
     * card with other figures), the catalog entry */
    static const struct {
        const char *need[3], *not[3], *entry;
    } rules[] = {
        {{"H100", "PCIE"}, {0}, "H100-PCIe"},
        {{"H100", "NVL"}, {0}, "H100-NVL"},
        {{"H100"}, {"PCIE", "NVL"}, "H100-SXM"},
        {{"H200"}, {"NVL"}, "H200"},
        {{"B200"}, {0}, "B200"},
        {{"A100", "80GB", "PCIE"}, {0}, "A100-PCIe-80GB"},
        {{"A100", "80GB"}, {"PCIE"}, "A100-80GB"},
        {{"A100", "40GB"}, {"PCIE"}, "A100-40GB"},
        {{"L40S"}, {0}, "L40S"},
        {{"L40"}, {0}, "L40"},
        {{"L4"}, {0}, "L4"},
        {{"A10G"}, {0}, "A10G"},
        {{"T4"}, {0}, "T4"},
        {{"RTX", "A6000"}, {"ADA"}, "RTX-A6000"},
        {{"RTX", "3090"}, {"TI"}, "RTX-3090"},
        {{"RTX", "4090"}, {"D", "LAPTOP"}, "RTX-4090"},
        {{"RTX", "5090"}, {"D", "LAPTOP"}, "RTX-5090"},
        {{"MI300X"}, {0}, "MI300X"},
        {{"MI325X"}, {0}, "MI325X"},
    };
    char w[DEV_MAX_WORDS][DEV_WORD];
    int n = device_words(device_name, w);
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
        bool ok = true;
        for (int k = 0; k < 3 && ok && rules[r].need[k]; k++) ok = has_word(w, n, rules[r].need[k]);
        for (int k = 0; k < 3 && ok && rules[r].not[k]; k++) ok = !has_word(w, n, rules[r].not[k]);
        if (ok) return fitlm_catalog_find(cat, rules[r].entry);
    }
    return -1;
}

static int push(fitlm_catalog *cat, const fitlm_gpu *g) {
    if (cat->n == cat->cap) {
        size_t nc = cat->cap ? cat->cap * 2 : 32;
        fitlm_gpu *p = realloc(cat->gpus, nc * sizeof *p);
        if (!p) return -1;
        cat->gpus = p;
        cat->cap = nc;
    }
    cat->gpus[cat->n++] = *g;
    return 0;
}

void fitlm_catalog_free(fitlm_catalog *cat) {
    if (!cat) return;
    free(cat->gpus);
    free(cat->host_profile);
    memset(cat, 0, sizeof *cat);
}

/* Reads a number field within [lo, hi]; missing -> def (if def >= 0) else error. */
static int num_field(const cJSON *o, const char *key, double lo, double hi, double def, double *out,
                     const char *who, fitlm_error *err) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (def < 0) return fitlm_fail(err, "%s: missing field '%s'", who, key);
        *out = def;
        return 0;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return fitlm_fail(err, "%s: field '%s' must be a number", who, key);
    if (v->valuedouble < lo || v->valuedouble > hi)
        return fitlm_fail(err, "%s: field '%s' = %g is outside [%g, %g]", who, key, v->valuedouble, lo, hi);
    *out = v->valuedouble;
    return 0;
}

static void str_field(const cJSON *o, const char *key, char *out, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (cJSON_IsString(v) && v->valuestring) snprintf(out, cap, "%s", v->valuestring);
}

static void source_field(const cJSON *sources, const char *key, char *ref, size_t ref_cap, char *date, size_t date_cap,
                         bool *estimate) {
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(sources, key);
    if (!cJSON_IsObject(s)) return;
    str_field(s, "ref", ref, ref_cap);
    if (date) str_field(s, "date", date, date_cap);
    if (estimate) *estimate = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "estimate"));
}

static int parse_gpu(const cJSON *o, const char *origin, int idx, fitlm_gpu *g, fitlm_error *err) {
    memset(g, 0, sizeof *g);
    char who[256];
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "name");
    if (!cJSON_IsString(nm) || !nm->valuestring || !*nm->valuestring || strlen(nm->valuestring) >= sizeof g->name)
        return fitlm_fail(err, "%s: gpus[%d]: 'name' must be a non-empty string of at most %zu characters", origin,
                          idx, sizeof g->name - 1);
    snprintf(g->name, sizeof g->name, "%s", nm->valuestring);
    snprintf(who, sizeof who, "%s: GPU '%s'", origin, g->name);
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(o, "aliases");
    if (al) {
        if (!cJSON_IsArray(al)) return fitlm_fail(err, "%s: 'aliases' must be an array of strings", who);
        const cJSON *a;
        cJSON_ArrayForEach(a, al) {
            if (!cJSON_IsString(a) || strlen(a->valuestring) >= sizeof g->aliases[0])
                return fitlm_fail(err, "%s: 'aliases' must be an array of short strings", who);
            if (g->n_aliases < 8) snprintf(g->aliases[g->n_aliases++], sizeof g->aliases[0], "%s", a->valuestring);
        }
    }
    str_field(o, "vendor", g->vendor, sizeof g->vendor);
    str_field(o, "arch", g->arch, sizeof g->arch);
    str_field(o, "link", g->link, sizeof g->link);
    double usable = 0, inter = -1, f16a = 0;
    double mem = 0, bw = 0, f16 = 0, bf16 = 0, f8 = 0, i8 = 0, link = 0, lmax = 0, pcie = 4, node = 8, tdp = 0, buy = 0,
           hour = 0;
    if (num_field(o, "memory_gib", 0.25, 65536, -1, &mem, who, err) ||
        num_field(o, "usable_memory_gib", 0, 65536, 0, &usable, who, err) ||
        num_field(o, "mem_bw_gbs", 1, 1e6, -1, &bw, who, err) ||
        num_field(o, "fp16_tflops", 0.001, 1e6, -1, &f16, who, err) ||
        num_field(o, "bf16_tflops", 0, 1e6, f16, &bf16, who, err) ||
        num_field(o, "fp8_tflops", 0, 1e6, 0, &f8, who, err) ||
        num_field(o, "fp16_acc16_tflops", 0, 1e6, 0, &f16a, who, err) ||
        num_field(o, "int8_tops", 0, 1e6, 0, &i8, who, err) ||
        num_field(o, "link_gbs", 0, 1e6, 0, &link, who, err) ||
        num_field(o, "link_max_gpus", 0, 1024, 0, &lmax, who, err) ||
        num_field(o, "internode_gbs", 0, 1e5, 0, &inter, who, err) ||
        num_field(o, "pcie_gen", 3, 7, 4, &pcie, who, err) ||
        num_field(o, "max_per_node", 1, 1024, 8, &node, who, err) ||
        num_field(o, "tdp_w", 0, 1e5, 0, &tdp, who, err) ||
        num_field(o, "purchase_usd", 0, 1e8, 0, &buy, who, err) ||
        num_field(o, "cloud_usd_per_hour", 0, 1e4, 0, &hour, who, err))
        return -1;
    g->memory_bytes = mem * FITLM_GIB;
    if (usable > mem) return fitlm_fail(err, "%s: usable_memory_gib %g exceeds memory_gib %g", who, usable, mem);
    g->usable_memory_bytes = (usable > 0 ? usable : mem) * FITLM_GIB;
    g->mem_bw = bw * 1e9;
    g->fp16_flops = f16 * 1e12;
    g->bf16_flops = (bf16 > 0 ? bf16 : f16) * 1e12;
    g->fp8_flops = f8 * 1e12;
    g->fp16_acc16_flops = f16a * 1e12;
    g->int8_ops = i8 * 1e12;
    g->link_bw = link * 1e9;
    g->link_max_gpus = (int)lmax;
    /* between nodes: given, else one 400 Gb/s NIC per GPU for NVSwitch /
     * Infinity Fabric baseboards of 8 (DGX/HGX-class), else one 100 Gb/s NIC
     * shared by the node's GPUs (a server of PCIe or GeForce cards) */
    if (inter > 0) g->internode_bw = inter * 1e9;
    else if (lmax >= 8) g->internode_bw = 50e9;
    else g->internode_bw = 12.5e9 / (node > 0 ? node : 8);
    g->pcie_gen = (int)pcie;
    g->max_per_node = (int)node;
    g->tdp_w = tdp;
    g->purchase_usd = buy;
    g->cloud_usd_per_hour = hour;
    if (!g->link[0]) snprintf(g->link, sizeof g->link, "%s", link > 0 ? "peer link" : "PCIe");
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(o, "sources");
    if (cJSON_IsObject(src)) {
        source_field(src, "specs", g->spec_source, sizeof g->spec_source, g->spec_date, sizeof g->spec_date, NULL);
        source_field(src, "purchase", g->purchase_source, sizeof g->purchase_source, NULL, 0, &g->purchase_estimate);
        source_field(src, "cloud", g->cloud_source, sizeof g->cloud_source, g->price_date, sizeof g->price_date,
                     &g->cloud_estimate);
    }
    snprintf(g->origin, sizeof g->origin, "%s", origin);
    return 0;
}

int fitlm_catalog_add_json(fitlm_catalog *cat, const char *json_text, const char *origin, fitlm_error *err) {
    cJSON *root = cJSON_Parse(json_text);
    if (!root) return fitlm_fail(err, "%s: not valid JSON", origin);
    int rc = -1;
    if (fitlm_json_check_unique_keys(root, origin, err)) goto done;
    const cJSON *arr = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "gpus") : root;
    if (!cJSON_IsArray(arr)) {
        fitlm_fail(err, "%s: expected an object with a \"gpus\" array (see docs/planner.md)", origin);
        goto done;
    }
    int n = cJSON_GetArraySize(arr);
    if (n == 0) {
        fitlm_fail(err, "%s: the \"gpus\" array is empty", origin);
        goto done;
    }
    if (n > 4096) {
        fitlm_fail(err, "%s: too many entries (%d)", origin, n);
        goto done;
    }
    int idx = 0;
    const cJSON *o;
    cJSON_ArrayForEach(o, arr) {
        if (!cJSON_IsObject(o)) {
            fitlm_fail(err, "%s: gpus[%d] is not an object", origin, idx);
            goto done;
        }
        fitlm_gpu g;
        if (parse_gpu(o, origin, idx, &g, err)) goto done;
        /* a name or alias already taken (by the built-in catalog or an earlier
         * entry) would silently replace or shadow that GPU: refused */
        int clash = fitlm_catalog_find(cat, g.name);
        const char *taken = g.name;
        for (int k = 0; clash < 0 && k < g.n_aliases; k++)
            if ((clash = fitlm_catalog_find(cat, g.aliases[k])) >= 0) taken = g.aliases[k];
        if (clash >= 0) {
            fitlm_fail(err, "%s: gpus[%d]: '%s' is already the name or an alias of %s (%s); give the entry a name of "
                            "its own",
                       origin, idx, taken, cat->gpus[clash].name, cat->gpus[clash].origin);
            goto done;
        }
        if (push(cat, &g)) {
            fitlm_fail(err, "out of memory");
            goto done;
        }
        idx++;
    }
    rc = 0;
done:
    cJSON_Delete(root);
    return rc;
}

int fitlm_catalog_load_builtin(fitlm_catalog *cat, fitlm_error *err) {
    memset(cat, 0, sizeof *cat);
    (void)fitlm_data_gpus_json_len;
    return fitlm_catalog_add_json(cat, fitlm_data_gpus_json, "built-in GPU catalog (data/gpus.json)", err);
}

/* ---- the host CPU ---- */

static void append_comm_source(fitlm_gpu *g, const fitlm_host_profile *p);

void fitlm_catalog_add_host_cpu(fitlm_catalog *cat) {
    fitlm_gpu g;
    memset(&g, 0, sizeof g);
    snprintf(g.name, sizeof g.name, "CPU");
    snprintf(g.aliases[0], sizeof g.aliases[0], "host");
    snprintf(g.aliases[1], sizeof g.aliases[1], "this-machine");
    g.n_aliases = 2;
    /* facts that do not change from run to run: physical cores, caches, ISA,
     * the rated maximum clock (not the momentary "cpu MHz") */
    fitlm_host_profile facts;
    fitlm_host_facts(&facts);
    int cores = facts.physical_cores;
    double mhz = facts.max_mhz > 0 ? facts.max_mhz : 2500;
    int lanes = strstr(facts.flags, "avx512f") ? 16 : strstr(facts.flags, "avx2") ? 8 : 4;
    snprintf(g.arch, sizeof g.arch, "%s", facts.cpu);
    snprintf(g.vendor, sizeof g.vendor, "host");
    snprintf(g.link, sizeof g.link, "none");
    g.is_cpu = true;
    g.cpu_cores = cores;
    g.memory_bytes = facts.memory_bytes > 0 ? facts.memory_bytes : 4.0 * FITLM_GIB;
    g.usable_memory_bytes = g.memory_bytes;
    /* Estimated, not measured: about 8 GB/s of streaming read per core, capped
     * at a typical 8-channel DDR5 server socket (~300 GB/s). */
    double bw = FITLM_ASSUMED_BW_PER_CORE * (double)cores;
    if (bw > FITLM_ASSUMED_BW_CAP) bw = FITLM_ASSUMED_BW_CAP;
    g.mem_bw = bw;
    g.bw_measured = false;
    /* Two FMA pipes x lanes x 2 FLOP per cycle per core (fp32 SIMD). */
    g.fp16_flops = g.bf16_flops = (double)cores * mhz * 1e6 * 2.0 * lanes * 2.0;
    g.int8_ops = g.fp16_flops * 2;
    g.max_per_node = 1;
    g.pcie_gen = 4;
    snprintf(g.spec_source, sizeof g.spec_source,
             "detected: %d physical cores, %.0f MiB L3, %s, %.1f GiB from /proc and /sys; %s clock %.0f MHz; bandwidth "
             "estimated as 8 GB/s per core (capped at 300 GB/s), FLOP/s as cores x clock x 2 FMA x %d fp32 lanes x 2",
             cores, facts.l3_bytes / 1048576.0, facts.isa, g.memory_bytes / FITLM_GIB,
             facts.max_mhz > 0 ? "rated" : "assumed", mhz, lanes);
    append_comm_source(&g, NULL);
    snprintf(g.origin, sizeof g.origin, "detected");
    push(cat, &g);
}

int fitlm_catalog_use_device(fitlm_catalog *cat, int matched, const fitlm_device_rates *d, double bw,
                             double flops) {
    fitlm_gpu g;
    if (matched >= 0 && (size_t)matched < cat->n) {
        g = cat->gpus[matched];
    } else {
        memset(&g, 0, sizeof g);
        snprintf(g.name, sizeof g.name, "%.47s", d->name);
        snprintf(g.vendor, sizeof g.vendor, "measured");
        snprintf(g.arch, sizeof g.arch, "%.95s", d->name);
        snprintf(g.link, sizeof g.link, "PCIe");
        g.memory_bytes = g.usable_memory_bytes = d->memory_bytes > 0 ? d->memory_bytes : 0;
        g.pcie_gen = 4;
        g.max_per_node = 1;
    }
    g.measured = true;
    g.mem_bw = bw;
    g.fp16_flops = g.bf16_flops = flops;
    g.fp16_acc16_flops = 0;
    g.fp8_flops = 0;
    g.int8_ops = 0;
    g.measured_per_layer_s = d->per_layer_s;
    g.measured_per_step_s = d->per_step_s;
    snprintf(g.spec_source, sizeof g.spec_source, "measured by fitlm calibrate --device (%s%s)", d->backend,
             d->quick ? ", --quick" : "");
    snprintf(g.origin, sizeof g.origin, "measured");
    if (matched >= 0 && (size_t)matched < cat->n) {
        cat->gpus[matched] = g;
        return matched;
    }
    size_t before = cat->n;
    push(cat, &g);
    return cat->n > before ? (int)before : -1;
}

/* Appends the MPI all-reduce figures TP/PP plans on this host use, and
 * whether they were measured (host_comm.h). */
static void append_comm_source(fitlm_gpu *g, const fitlm_host_profile *p) {
    fitlm_host_comm hc;
    fitlm_host_comm_of(p, &hc);
    size_t n = strlen(g->spec_source);
    if (n + 1 >= sizeof g->spec_source) return;
    snprintf(g->spec_source + n, sizeof g->spec_source - n, "; MPI all-reduce %s: alpha %.1f us, %.1f GB/s",
             hc.measured ? "measured (comm_bench)" : "assumed", hc.alpha_s * 1e6, hc.bw / 1e9);
}

void fitlm_catalog_use_profile(fitlm_catalog *cat, fitlm_host_profile *p, const char *path) {
    free(cat->host_profile);
    cat->host_profile = p;
    snprintf(cat->host_profile_path, sizeof cat->host_profile_path, "%s", path ? path : "");
    if (!p) return;
    for (size_t i = 0; i < cat->n; i++) {
        fitlm_gpu *g = &cat->gpus[i];
        if (!g->is_cpu) continue;
        int t = p->threads > 0 && p->threads <= p->n_bw ? p->threads : p->n_bw;
        if (t >= 1 && p->read_bw[t] > 0) {
            g->mem_bw = p->read_bw[t];
            g->bw_measured = true;
        }
        double best = 0;
        for (int k = 0; k < p->n_kern; k++)
            if (p->kern[k].prefill_flops > best) best = p->kern[k].prefill_flops;
        if (best > 0) g->int8_ops = best;
        for (int k = 0; k < p->n_kern; k++)
            if ((p->kern[k].type == FITLM_TYPE_F16 || p->kern[k].type == FITLM_TYPE_BF16) &&
                p->kern[k].prefill_flops > 0) {
                if (p->kern[k].type == FITLM_TYPE_F16) g->fp16_flops = p->kern[k].prefill_flops;
                else g->bf16_flops = p->kern[k].prefill_flops;
            }
        snprintf(g->spec_source, sizeof g->spec_source,
                 "host profile %.120s (%s): %d cores, read bandwidth %.1f GB/s with %d threads, kernel rates for %d "
                 "weight types measured",
                 cat->host_profile_path, p->created, p->physical_cores, g->mem_bw / 1e9, t, p->n_kern);
        append_comm_source(g, p);
    }
}

void fitlm_catalog_measure_host(fitlm_catalog *cat, int n_threads) {
    for (size_t i = 0; i < cat->n; i++) {
        fitlm_gpu *g = &cat->gpus[i];
        if (!g->is_cpu) continue;
        fitlm_threadpool *pool = fitlm_threadpool_new(n_threads);
        double gbs = fitlm_measure_read_bandwidth(pool, (size_t)256 << 20);
        fitlm_threadpool_free(pool);
        if (gbs <= 0) return; /* keep the estimate */
        g->mem_bw = gbs * 1e9;
        g->bw_measured = true;
        char *est = strstr(g->spec_source, "bandwidth estimated");
        if (est) {
            char rest[sizeof g->spec_source];
            const char *after = strstr(est, "), ");
            snprintf(rest, sizeof rest, "%s", after ? after + 3 : "");
            snprintf(est, sizeof g->spec_source - (size_t)(est - g->spec_source),
                     "bandwidth measured (%.1f GB/s, 256 MiB read with all cores), %s", gbs, rest);
        }
        return;
    }
}

double fitlm_pcie_bw(int gen) {
    /* x16 per direction: 3.0 15.75 GB/s, 4.0 31.5, 5.0 63, 6.0 121 (PCI-SIG) */
    switch (gen) {
    case 3: return 15.75e9;
    case 4: return 31.5e9;
    case 5: return 63e9;
    case 6: return 121e9;
    default: return gen > 6 ? 242e9 : 15.75e9;
    }
}
