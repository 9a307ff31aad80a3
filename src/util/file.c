#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- process-wide guards: temporary outputs and mapped inputs ----
 *
 * Signal handlers may only touch what is safe at any instant, so both
 * registries are fixed arrays of slots whose pointers are published and
 * withdrawn atomically; the strings they point to are freed only after the
 * slot is cleared. */
#define GUARD_SLOTS 64

typedef struct {
    const char *volatile path; /* NULL = free slot */
    const uint8_t *volatile start;
    volatile uint64_t size;
} guard_slot;

static guard_slot tmp_slots[GUARD_SLOTS];  /* temp files to unlink on a fatal signal */
static guard_slot map_slots[GUARD_SLOTS];  /* mapped files, for SIGBUS */
static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;

static int guard_add(guard_slot *slots, const char *path, const uint8_t *start, uint64_t size) {
    pthread_mutex_lock(&guard_lock);
    int k = -1;
    for (int i = 0; i < GUARD_SLOTS && k < 0; i++)
        if (!slots[i].path) k = i;
    if (k >= 0) {
        slots[k].start = start;
        slots[k].size = size;
        __atomic_store_n(&slots[k].path, path, __ATOMIC_SEQ_CST);
    }
    pthread_mutex_unlock(&guard_lock);
    return k;
}

static void guard_remove(guard_slot *slots, const char *path) {
    pthread_mutex_lock(&guard_lock);
    for (int i = 0; i < GUARD_SLOTS; i++)
        if (slots[i].path == path) __atomic_store_n(&slots[i].path, NULL, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&guard_lock);
}

static void unlink_temps(void) {
    for (int i = 0; i < GUARD_SLOTS; i++) {
        const char *p = __atomic_load_n(&tmp_slots[i].path, __ATOMIC_SEQ_CST);
        if (p) unlink(p);
    }
}

static void say(const char *s) {
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

/* SIGINT/SIGTERM/SIGHUP: remove the temporary outputs, then die of the same
 * signal (so the caller sees what happened). */
static void (*volatile g_signal_note)(int sig);

void fitlm_file_set_signal_note(void (*note)(int sig)) {
    g_signal_note = note;
}

static void on_fatal_signal(int sig) {
    unlink_temps();
    void (*note)(int) = g_signal_note;
    if (note) note(sig);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* SIGBUS: a mapped file shrank under us (the page no longer exists). */
static void on_sigbus(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    const uint8_t *a = si ? (const uint8_t *)si->si_addr : NULL;
    for (int i = 0; i < GUARD_SLOTS; i++) {
        const char *p = __atomic_load_n(&map_slots[i].path, __ATOMIC_SEQ_CST);
        if (p && a >= map_slots[i].start && (uint64_t)(a - map_slots[i].start) < map_slots[i].size) {
            unlink_temps();
            say("fitlm: error: ");
            say(p);
            say(" changed while in use (the file was truncated or replaced while fitlm read it)\n");
            _exit(1);
        }
    }
    /* not one of ours: the default action */
    unlink_temps();
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handlers(void) {
    static const int fatal[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
        struct sigaction old;
        /* leave an ignored signal ignored (nohup) */
        if (sigaction(fatal[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(fatal[i], &sa, NULL);
    }
    struct sigaction sb;
    memset(&sb, 0, sizeof sb);
    sb.sa_sigaction = on_sigbus;
    sb.sa_flags = SA_SIGINFO;
    sigemptyset(&sb.sa_mask);
    sigaction(SIGBUS, &sb, NULL);
}

static void guards_install(void) {
    pthread_once(&handlers_once, install_handlers);
}

int fitlm_file_open_regular(const char *path, fitlm_error *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return fitlm_fail(err, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fitlm_fail(err, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        fitlm_fail(err, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        fitlm_fail(err, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

FILE *fitlm_file_fopen_regular(const char *path, fitlm_error *err) {
    int fd = fitlm_file_open_regular(path, err);
    if (fd < 0) return NULL;
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        fitlm_fail(err, "%s: %s", path, strerror(errno));
        close(fd);
    }
    return fp;
}

int fitlm_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

fitlm_mapped_file *fitlm_file_map(const char *path, fitlm_error *err) {
    int fd = fitlm_file_open_regular(path, err);
    if (fd < 0) return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        fitlm_fail(err, "%s: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    fitlm_mapped_file *f = calloc(1, sizeof *f);
    if (!f) {
        close(fd);
        fitlm_fail(err, "%s: out of memory", path);
        return NULL;
    }
    f->path = strdup(path);
    f->size = (uint64_t)st.st_size;
    if (f->size > 0) {
        void *p = mmap(NULL, (size_t)f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            fitlm_fail(err, "%s: mmap: %s", path, strerror(errno));
            close(fd);
            free(f->path);
            free(f);
            return NULL;
        }
        f->data = p;
        if (f->path) {
            guards_install();
            guard_add(map_slots, f->path, f->data, f->size); /* a full table only loses the message */
        }
    }
    close(fd);
    return f;
}

void fitlm_file_unmap(fitlm_mapped_file *f) {
    if (!f) return;
    if (f->path) guard_remove(map_slots, f->path);
    if (f->data) munmap((void *)f->data, (size_t)f->size);
    free(f->path);
    free(f);
}

char *fitlm_file_read_all(const char *path, size_t max_bytes, size_t *len_out, fitlm_error *err) {
    FILE *fp = fitlm_file_fopen_regular(path, err);
    if (!fp) return NULL;
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fitlm_fail(err, "%s: not a regular file", path);
        fclose(fp);
        return NULL;
    }
    if ((uint64_t)st.st_size > max_bytes) {
        fitlm_fail(err, "%s: file too large (%lld bytes, limit %zu)", path, (long long)st.st_size, max_bytes);
        fclose(fp);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fitlm_fail(err, "%s: out of memory", path);
        fclose(fp);
        return NULL;
    }
    if (n && fread(buf, 1, n, fp) != n) {
        fitlm_fail(err, "%s: read error", path);
        free(buf);
        fclose(fp);
        return NULL;
    }
    buf[n] = 0;
    fclose(fp);
    if (len_out) *len_out = n;
    return buf;
}

fitlm_atomic_file *fitlm_atomic_open(const char *path, fitlm_error *err) {
    fitlm_atomic_file *f = calloc(1, sizeof *f);
    if (!f) {
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    size_t n = strlen(path) + 32;
    f->path = strdup(path);
    f->tmp_path = malloc(n);
    if (!f->path || !f->tmp_path) {
        free(f->path);
        free(f->tmp_path);
        free(f);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    snprintf(f->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    guards_install();
    /* registered before it exists: a signal between open and registration
     * would otherwise leave it behind */
    if (guard_add(tmp_slots, f->tmp_path, NULL, 0) < 0) {
        free(f->path);
        free(f->tmp_path);
        free(f);
        fitlm_fail(err, "%s: too many temporary files open at once", path);
        return NULL;
    }
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp) {
        fitlm_fail(err, "%s: %s", f->tmp_path, strerror(errno));
        guard_remove(tmp_slots, f->tmp_path);
        free(f->path);
        free(f->tmp_path);
        free(f);
        return NULL;
    }
    return f;
}

int fitlm_atomic_commit(fitlm_atomic_file *f, fitlm_error *err) {
    int rc = 0;
    if (fflush(f->fp) != 0 || ferror(f->fp)) rc = fitlm_fail(err, "%s: write error: %s", f->tmp_path, strerror(errno));
    if (fclose(f->fp) != 0 && rc == 0) rc = fitlm_fail(err, "%s: close: %s", f->tmp_path, strerror(errno));
    if (rc == 0 && rename(f->tmp_path, f->path) != 0) rc = fitlm_fail(err, "%s: rename: %s", f->path, strerror(errno));
    if (rc != 0) unlink(f->tmp_path);
    guard_remove(tmp_slots, f->tmp_path);
    free(f->path);
    free(f->tmp_path);
    free(f);
    return rc;
}

void fitlm_atomic_abort(fitlm_atomic_file *f) {
    if (!f) return;
    fclose(f->fp);
    unlink(f->tmp_path);
    guard_remove(tmp_slots, f->tmp_path);
    free(f->path);
    free(f->tmp_path);
    free(f);
}

int fitlm_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *fitlm_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s) return NULL;
    memcpy(s, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') s[k++] = '/';
    memcpy(s + k, name, b + 1);
    return s;
}
