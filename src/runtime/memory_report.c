/* Memory report: runtime components and process peak RSS. */
#include "runtime/memory_report.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "format/ggml_type.h"

uint64_t fitlm_peak_rss_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f)) {
            if (!strncmp(line, "VmHWM:", 6)) {
                unsigned long long kb = strtoull(line + 6, NULL, 10);
                fclose(f);
                return (uint64_t)kb * 1024u;
            }
        }
        fclose(f);
    }
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0) return (uint64_t)ru.ru_maxrss * 1024u; /* Linux: kilobytes */
    return 0;
}

static void row(FILE *out, const char *what, uint64_t bytes, const char *note) {
    fprintf(out, "| %-18s | %15llu | %10.2f | %-50s |\n", what, (unsigned long long)bytes,
            (double)bytes / (1024.0 * 1024.0), note);
}

void fitlm_memory_report_print(FILE *out, const fitlm_runtime_memory *mem, const fitlm_hparams *hp) {
    char note[128];
    fprintf(out, "\nmemory report\n");
    fprintf(out, "| %-18s | %15s | %10s | %-50s |\n", "component", "bytes", "MiB", "notes");
    fprintf(out, "|%s|%s|%s|%s|\n", "--------------------", "-----------------", "------------",
            "----------------------------------------------------");
    if (mem->repacked_bytes)
        snprintf(note, sizeof note, "read by the forward pass (%.0f MiB as repacked copies)",
                 (double)mem->repacked_bytes / (1024.0 * 1024.0));
    else
        snprintf(note, sizeof note, "tensors read by the forward pass (mapped)");
    row(out, "weights", mem->weight_bytes, note);
    snprintf(note, sizeof note, "%s, %u positions x %u layers x K+V", fitlm_type_name(mem->kv_type), mem->n_ctx,
             hp->n_layers);
    row(out, "KV cache", mem->kv_bytes, note);
    snprintf(note, sizeof note, "activations for %u tokens, logits, attention", mem->n_ubatch);
    row(out, "scratch", mem->scratch_bytes, note);
    row(out, "total", mem->weight_bytes + mem->kv_bytes + mem->scratch_bytes, "weights + KV cache + scratch");
    row(out, "peak RSS (VmHWM)", fitlm_peak_rss_bytes(), "whole process; mapped weights count once touched");
}
