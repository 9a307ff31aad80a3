/* comm_bench: the cost of the collectives distributed inference uses, through
 * fitlm_comm (src/parallel/comm.h) exactly as the forward pass calls them.
 *
 *     mpirun -np 2 build/bench/comm_bench [--iters N] [--out FILE] [--write-profile | --profile FILE]
 *
 * Measures the F32 sum all-reduce for message sizes from 4 bytes to 8 MiB
 * (one decoded token of a TinyLlama-shaped model all-reduces dim x 4 = 8 KiB
 * twice per layer; a 512-token prompt 4 MiB), the step broadcast (4 KiB) and
 * a point-to-point send/recv ping-pong, then fits T = alpha + beta * m to the
 * all-reduce times (least squares on the relative error) and prints a table. With --out it writes
 * the fit as JSON (docs/parallel.md: the planner's alpha and link bandwidth
 * for a CPU cluster). Rank 0 reports the median of each size over the ranks'
 * maximum (a collective ends when its slowest rank does). --write-profile
 * (or --profile FILE) stores alpha and the bandwidth in the host profile
 * (allreduce_alpha_s, allreduce_bw; default $XDG_CACHE_HOME/fitlm/host.json),
 * where `fitlm plan` reads them for tensor / pipeline parallel runs on CPUs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "parallel/comm.h"
#include "planner/host_comm.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median over iters of the slowest rank's time for one call of op(size). */
typedef int (*op_fn)(fitlm_comm *c, void *buf, size_t bytes, fitlm_error *err);

static int op_allreduce(fitlm_comm *c, void *buf, size_t bytes, fitlm_error *err) {
    return fitlm_comm_allreduce_sum(c, buf, bytes / 4, FITLM_COMM_F32, err);
}
static int op_bcast(fitlm_comm *c, void *buf, size_t bytes, fitlm_error *err) {
    return fitlm_comm_bcast(c, buf, bytes, 0, err);
}
static int op_pingpong(fitlm_comm *c, void *buf, size_t bytes, fitlm_error *err) {
    if (c->rank == 0) return fitlm_comm_send(c, buf, bytes, 1, 7, err) || fitlm_comm_recv(c, buf, bytes, 1, 7, err);
    if (c->rank == 1) return fitlm_comm_recv(c, buf, bytes, 0, 7, err) || fitlm_comm_send(c, buf, bytes, 0, 7, err);
    return 0;
}

static double measure(fitlm_comm *c, op_fn op, void *buf, size_t bytes, int iters, fitlm_error *err) {
    double *t = malloc((size_t)iters * sizeof *t);
    if (!t) return -1.0;
    for (int w = 0; w < 3; w++) op(c, buf, bytes, err); /* warm up */
    for (int i = 0; i < iters; i++) {
        fitlm_comm_barrier(c, err);
        double t0 = now_s();
        if (op(c, buf, bytes, err)) {
            free(t);
            return -1.0;
        }
        float dt = (float)(now_s() - t0);
        /* the slowest rank's time: each rank puts its own in its slot, the sum
         * gives every rank all of them (fitlm_comm has no max reduction) */
        float all[256] = {0};
        if (c->size <= 256) {
            all[c->rank] = dt;
            fitlm_comm_allreduce_sum(c, all, (size_t)c->size, FITLM_COMM_F32, err);
            for (int r = 0; r < c->size; r++)
                if (all[r] > dt) dt = all[r];
        }
        t[i] = dt;
    }
    qsort(t, (size_t)iters, sizeof *t, cmp_d);
    double med = t[iters / 2];
    free(t);
    return med;
}

int main(int argc, char **argv) {
    fitlm_error err = {{0}};
    if (fitlm_comm_world_init(&argc, &argv, &err)) {
        fitlm_error_print(&err);
        return 1;
    }
    fitlm_comm *c = fitlm_comm_world();
    int iters = 200;
    const char *out = NULL, *profile = NULL;
    char def[4096];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--profile") && i + 1 < argc) profile = argv[++i];
        else if (!strcmp(argv[i], "--write-profile")) {
            if (fitlm_host_profile_default_path(def, sizeof def)) {
                fprintf(stderr, "fitlm: error: neither XDG_CACHE_HOME nor HOME is set: give --profile FILE\n");
                return fitlm_comm_world_finalize(1);
            }
            profile = def;
        } else {
            fprintf(stderr, "usage: mpirun -np N comm_bench [--iters N] [--out FILE] [--write-profile | --profile FILE]\n");
            return fitlm_comm_world_finalize(1);
        }
    }
    if (c->size < 2) {
        fprintf(stderr, "fitlm: error: comm_bench needs at least 2 ranks (mpirun -np 2 ...)\n");
        return fitlm_comm_world_finalize(1);
    }
    if (iters < 5) iters = 5;
    static const size_t sizes[] = {4, 64, 256, 1024, 4096, 8192, 16384, 65536, 262144, 1048576, 4194304, 8388608};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    void *buf = calloc(1, sizes[NS - 1]);
    if (!buf) return fitlm_comm_world_finalize(1);
    double ar[NS], pp[NS];
    for (int i = 0; i < NS; i++) {
        int it = sizes[i] >= 1048576 ? (iters / 10 > 5 ? iters / 10 : 5) : iters;
        ar[i] = measure(c, op_allreduce, buf, sizes[i], it, &err);
        pp[i] = measure(c, op_pingpong, buf, sizes[i], it, &err) / 2.0;
    }
    double bc = measure(c, op_bcast, buf, 4096, iters, &err);
    /* T = alpha + beta m by least squares on the relative error (weights
     * 1/T^2): small messages fix alpha, large ones beta, and one slow size on
     * a busy machine does not swamp the others */
    double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (int i = 0; i < NS; i++) {
        double x = (double)sizes[i], y = ar[i], w = y > 0 ? 1.0 / (y * y) : 0.0;
        sw += w, sx += w * x, sy += w * y, sxx += w * x * x, sxy += w * x * y;
    }
    double beta = (sw * sxy - sx * sy) / (sw * sxx - sx * sx), alpha = (sy - beta * sx) / sw;
    if (c->rank == 0) {
        printf("# fitlm comm_bench: %d ranks (%s), median of the slowest rank over %d calls\n", c->size, c->kind, iters);
        printf("%10s %14s %14s %12s\n", "bytes", "allreduce_us", "one_way_us", "allred_GB/s");
        for (int i = 0; i < NS; i++)
            printf("%10zu %14.2f %14.2f %12.3f\n", sizes[i], ar[i] * 1e6, pp[i] * 1e6, (double)sizes[i] / ar[i] / 1e9);
        printf("step broadcast (4096 bytes): %.2f us\n", bc * 1e6);
        printf("fit: allreduce T = alpha + beta*m: alpha = %.2f us, beta = %.4f ns/byte (%.2f GB/s)\n", alpha * 1e6,
               beta * 1e9, beta > 0 ? 1e-9 / beta : 0.0);
        if (out) {
            FILE *f = fopen(out, "w");
            if (!f) {
                fprintf(stderr, "fitlm: error: %s: cannot write\n", out);
            } else {
                fprintf(f, "{\n  \"ranks\": %d,\n  \"transport\": \"%s\",\n", c->size, getenv("OMPI_MCA_btl") ? getenv("OMPI_MCA_btl") : "default");
                fprintf(f, "  \"allreduce_alpha_s\": %.9g,\n  \"allreduce_beta_s_per_byte\": %.9g,\n", alpha, beta);
                fprintf(f, "  \"allreduce_bw_bytes_per_s\": %.9g,\n  \"bcast_4k_s\": %.9g,\n", beta > 0 ? 1.0 / beta : 0.0, bc);
                fprintf(f, "  \"points\": [");
                for (int i = 0; i < NS; i++)
                    fprintf(f, "%s\n    {\"bytes\": %zu, \"allreduce_s\": %.9g, \"one_way_s\": %.9g}", i ? "," : "", sizes[i], ar[i], pp[i]);
                fprintf(f, "\n  ]\n}\n");
                fclose(f);
                printf("wrote %s\n", out);
            }
        }
    }
    int rc = 0;
    if (c->rank == 0 && profile) {
        if (fitlm_host_profile_set_comm(profile, alpha, beta > 0 ? 1.0 / beta : 0.0, &err)) {
            fitlm_error_prefix(&err, profile);
            fitlm_error_print(&err);
            rc = 1;
        } else {
            printf("wrote allreduce_alpha_s and allreduce_bw to %s\n", profile);
        }
    }
    free(buf);
    return fitlm_comm_world_finalize(rc);
}
