/* build/bench/sse_client HOST PORT BODY.json RAW_OUT [API_KEY]
 *
 * One streaming completion against `fitlm serve`, as cheaply as a client
 * can run: serve_bench.py's load generator shares the server's cores, and on
 * a 2-core machine every microsecond a Python client spends per token is
 * taken from the compute threads. This client posts BODY.json to
 * /v1/completions, then only stamps each recv() (CLOCK_MONOTONIC) and keeps
 * the bytes; it writes the raw response to RAW_OUT and prints
 *
 *   send T_SEND
 *   recv T BYTES      (one line per recv, in order)
 *   end T_END
 *
 * so that serve_bench.py (--c-client) parses the HTTP chunks, SSE events
 * and JSON afterwards, exactly as it does for its own client. Exit status 0,
 * or 1 with a message on stderr.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fail(const char *what) {
    fprintf(stderr, "sse_client: %s: %s\n", what, errno ? strerror(errno) : "failed");
    return 1;
}

/* Reads a whole file into a malloc'd buffer (caller frees); NULL on error. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && n < (1L << 28) && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
            fread(buf, 1, (size_t)n, f) == (size_t)n) {
            *len = (size_t)n;
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv) {
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: sse_client HOST PORT BODY.json RAW_OUT [API_KEY]\n");
        return 1;
    }
    size_t body_len = 0;
    char *body = read_file(argv[3], &body_len);
    if (!body) return fail(argv[3]);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    if (getaddrinfo(argv[1], argv[2], &hints, &ai) != 0 || !ai) {
        fprintf(stderr, "sse_client: cannot resolve %s:%s\n", argv[1], argv[2]);
        return 1;
    }
    int fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) return fail("connect");
    freeaddrinfo(ai);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char head[1024];
    int hn = snprintf(head, sizeof head,
                      "POST /v1/completions HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                      "Content-Length: %zu\r\nConnection: close\r\n%s%s%s\r\n",
                      argv[1], argv[2], body_len, argc == 6 ? "Authorization: Bearer " : "", argc == 6 ? argv[5] : "",
                      argc == 6 ? "\r\n" : "");
    if (hn < 0 || (size_t)hn >= sizeof head) {
        fprintf(stderr, "sse_client: header too long\n");
        return 1;
    }
    /* the stamps and the bytes stay in memory until the stream ends */
    size_t cap = 1 << 20, used = 0, n_recv = 0, cap_recv = 4096;
    char *raw = malloc(cap);
    double *t_recv = malloc(cap_recv * sizeof *t_recv);
    size_t *n_bytes = malloc(cap_recv * sizeof *n_bytes);
    if (!raw || !t_recv || !n_bytes) return fail("out of memory");
    double t_send = now_s();
    if (send(fd, head, (size_t)hn, MSG_NOSIGNAL) != hn) return fail("send");
    for (size_t off = 0; off < body_len;) {
        ssize_t k = send(fd, body + off, body_len - off, MSG_NOSIGNAL);
        if (k <= 0) return fail("send");
        off += (size_t)k;
    }
    for (;;) {
        if (cap - used < 65536) {
            char *r = realloc(raw, cap * 2);
            if (!r) return fail("out of memory");
            raw = r, cap *= 2;
        }
        ssize_t k = recv(fd, raw + used, cap - used, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return fail("recv");
        if (k == 0) break;
        double t = now_s();
        if (n_recv == cap_recv) {
            double *nt = realloc(t_recv, 2 * cap_recv * sizeof *nt);
            if (nt) t_recv = nt;
            size_t *nb = realloc(n_bytes, 2 * cap_recv * sizeof *nb);
            if (nb) n_bytes = nb;
            if (!nt || !nb) return fail("out of memory");
            cap_recv *= 2;
        }
        t_recv[n_recv] = t;
        n_bytes[n_recv++] = (size_t)k;
        used += (size_t)k;
    }
    double t_end = now_s();
    close(fd);
    FILE *f = fopen(argv[4], "wb");
    if (!f || fwrite(raw, 1, used, f) != used || fclose(f) != 0) return fail(argv[4]);
    printf("send %.9f\n", t_send);
    for (size_t i = 0; i < n_recv; i++) printf("recv %.9f %zu\n", t_recv[i], n_bytes[i]);
    printf("end %.9f\n", t_end);
    free(raw);
    free(t_recv);
    free(n_bytes);
    free(body);
    return 0;
}
