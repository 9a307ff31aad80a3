/* Runs the hostile GGUF corpus generator (tests/hostile/gen_gguf.py) and checks
 * the reader against its manifest: every `gguf`-layer file is refused with a
 * one-line message, every other file (model/tokenizer defects, the valid tiny
 * llama) is accepted. Each file is opened in a forked child with a time limit
 * and, outside sanitizer builds, a 1 GiB address-space limit, so a lying size
 * field that caused a giant allocation or a hang would fail the test. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "format/gguf.h"
#include "format/gguf_arena.h"
#include "util/file.h"

enum { CHILD_ACCEPTED = 10, CHILD_REFUSED = 11, CHILD_REFUSED_NO_MSG = 12, CHILD_MISMATCH = 13 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* In the child: opens the file from disk and from memory; both must agree.
 * Writes the message (or "") to fd. */
static int child_main(const char *path, int fd, bool limit_as) {
    if (limit_as) {
        struct rlimit rl = {1ull << 30, 1ull << 30};
        setrlimit(RLIMIT_AS, &rl);
    }
    alarm(10);
    fitlm_error e1 = {{0}}, e2 = {{0}};
    fitlm_gguf *g = fitlm_gguf_open(path, &e1);
    size_t len = 0;
    char *buf = fitlm_file_read_all(path, 64u << 20, &len, &e2);
    fitlm_gguf *m = buf ? fitlm_gguf_open_memory(buf, len, &e2) : NULL;
    int rc;
    if (!g != !m || (!g && strcmp(e1.msg, e2.msg) != 0)) {
        fitlm_error a = e1;
        snprintf(e1.msg, sizeof e1.msg, "file and memory readers disagree: '%.400s' vs '%.400s'", a.msg, e2.msg);
        rc = CHILD_MISMATCH;
    } else if (g) {
        /* memory bounded by a small multiple of the file size */
        size_t used = fitlm_arena_used(g->arena);
        if (used > 8 * (size_t)len + 4096) {
            snprintf(e1.msg, sizeof e1.msg, "reader used %zu bytes for a %zu-byte file", used, len);
            rc = CHILD_MISMATCH;
        } else {
            e1.msg[0] = 0;
            rc = CHILD_ACCEPTED;
        }
    } else {
        rc = e1.msg[0] ? CHILD_REFUSED : CHILD_REFUSED_NO_MSG;
    }
    if (write(fd, e1.msg, strlen(e1.msg)) < 0) rc = CHILD_MISMATCH;
    fitlm_gguf_close(g);
    fitlm_gguf_close(m);
    free(buf);
    return rc;
}

static int run_one(const char *path, bool limit_as, char *msg, size_t cap, double *secs) {
    int p[2];
    if (pipe(p) != 0) return -1;
    double t0 = now_s();
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        int rc = child_main(path, p[1], limit_as);
        close(p[1]);
        _exit(rc);
    }
    close(p[1]);
    size_t k = 0;
    ssize_t r;
    while (k + 1 < cap && (r = read(p[0], msg + k, cap - 1 - k)) > 0) k += (size_t)r;
    msg[k] = 0;
    close(p[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    *secs = now_s() - t0;
    if (WIFSIGNALED(st)) return 1000 + WTERMSIG(st);
    return WEXITSTATUS(st);
}

int main(void) {
    const char *src = check_env_or_skip("FITLM_SRC");
    const char *tmp = check_env_or_skip("FITLM_TMP");
    bool sanitized = getenv("FITLM_SANITIZED") && *getenv("FITLM_SANITIZED");
    char dir[4096], cmd[16384];
    snprintf(dir, sizeof dir, "%s/hostile-gguf", tmp);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/hostile/gen_gguf.py' '%s'", src, dir);
    int sys_rc = system(cmd);
    CHECK(sys_rc == 0, "generator failed: %s (rc %d)", cmd, sys_rc);
    if (sys_rc != 0) return check_report();

    char manifest[8192];
    snprintf(manifest, sizeof manifest, "%s/gguf.tsv", dir);
    fitlm_error err = {{0}};
    char *tsv = fitlm_file_read_all(manifest, 1 << 20, NULL, &err);
    CHECK(tsv != NULL, "%s", err.msg);
    if (!tsv) return check_report();
    int n_files = 0, n_gguf = 0, n_model = 0, n_tok = 0, n_ok = 0, n_run = 0;
    double worst = 0;
    char *save = NULL;
    for (char *line = strtok_r(tsv, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *name = line, *layer = strchr(line, '\t'), *what = NULL;
        if (layer) {
            *layer++ = 0;
            what = strchr(layer, '\t');
            if (what) *what++ = 0;
        }
        CHECK(layer && what && *what, "manifest line malformed: %s", line);
        if (!layer || !what) continue;
        char path[12288];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        char msg[2048];
        double secs = 0;
        int rc = run_one(path, !sanitized, msg, sizeof msg, &secs);
        n_files++;
        if (secs > worst) worst = secs;
        CHECK(secs < (sanitized ? 5.0 : 1.0), "%s took %.2f s", name, secs);
        CHECK(rc < 1000, "%s (%s): child killed by signal %d", name, what, rc - 1000);
        CHECK(rc != CHILD_MISMATCH, "%s: %s", name, msg);
        CHECK(strchr(msg, '\n') == NULL, "%s: message is not one line: %s", name, msg);
        if (strcmp(layer, "gguf") == 0) {
            n_gguf++;
            CHECK(rc == CHILD_REFUSED, "%s (%s) was not refused with a message (rc %d)", name, what, rc);
            printf("refused  %-34s %s\n         -> %s\n", name, what, msg);
        } else {
            if (strcmp(layer, "model") == 0) n_model++;
            else if (strcmp(layer, "tokenizer") == 0) n_tok++;
            else if (strcmp(layer, "ok") == 0) n_ok++;
            else if (strcmp(layer, "run") == 0) n_run++;
            else CHECK(0, "%s: unknown layer %s", name, layer);
            CHECK(rc == CHILD_ACCEPTED, "%s (%s layer: %s) refused by the GGUF reader: %s", name, layer, what, msg);
        }
    }
    free(tsv);
    printf("%d files: %d refused by the reader, %d model and %d tokenizer defects accepted, %d valid; slowest %.3f s\n",
           n_files, n_gguf, n_model, n_tok, n_ok, worst);
    CHECK(n_gguf >= 45, "only %d gguf-layer cases", n_gguf);
    CHECK(n_model >= 5 && n_tok >= 5 && n_ok == 1 && n_run >= 5, "layers: %d model, %d tokenizer, %d ok, %d run", n_model, n_tok, n_ok, n_run);

    /* the valid tiny llama: the complete tensor table */
    char path[8192];
    snprintf(path, sizeof path, "%s/valid-tiny-llama.gguf", dir);
    fitlm_gguf *g = fitlm_gguf_open(path, &err);
    CHECK(g != NULL, "%s", err.msg);
    if (g) {
        CHECK(g->n_tensors == 1 + 2 * 9 + 2, "tiny llama has %llu tensors", (unsigned long long)g->n_tensors);
        const fitlm_gguf_tensor *t = fitlm_gguf_find_tensor(g, "blk.1.attn_k.weight");
        CHECK(t && t->n_dims == 2 && t->ne[0] == 64 && t->ne[1] == 32 && t->type == 1 && t->nbytes == 64 * 32 * 2,
              "blk.1.attn_k.weight");
        t = fitlm_gguf_find_tensor(g, "blk.0.ffn_down.weight");
        CHECK(t && t->ne[0] == 128 && t->ne[1] == 64, "blk.0.ffn_down.weight");
        const fitlm_gguf_value *tok = NULL;
        CHECK(fitlm_gguf_get_arr(g, "tokenizer.ggml.tokens", FITLM_GGUF_STRING, &tok, &err) == 1 &&
                  tok->v.arr.n == 32 && strcmp(tok->v.arr.strs[1].s, "<s>") == 0,
              "tiny tokens");
        fitlm_gguf_close(g);
    }
    return check_report();
}
