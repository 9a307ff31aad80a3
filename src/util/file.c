#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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
    }
    close(fd);
    return f;
}

void fitlm_file_unmap(fitlm_mapped_file *f) {
    if (!f) return;
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
    f->fp = fopen(f->tmp_path, "wb");
    if (!f->fp) {
        fitlm_fail(err, "%s: %s", f->tmp_path, strerror(errno));
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
    free(f->path);
    free(f->tmp_path);
    free(f);
    return rc;
}

void fitlm_atomic_abort(fitlm_atomic_file *f) {
    if (!f) return;
    fclose(f->fp);
    unlink(f->tmp_path);
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
