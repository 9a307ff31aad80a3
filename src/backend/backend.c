/* Backend-independent helpers: row views and creation by name. */
#include "backend/backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/cpu/backend_cpu.h"
#include "format/ggml_type.h"
#ifdef FITLM_HAVE_VULKAN
#include "backend/vulkan/backend_vulkan.h"
#endif

fitlm_btensor fitlm_btensor_rows(const fitlm_btensor *t, int64_t row0, int64_t n_rows) {
    fitlm_btensor v = *t;
    bool ok = true;
    uint64_t row_bytes = fitlm_type_row_bytes(t->type, (uint64_t)t->ne0, &ok);
    v.data = (uint8_t *)t->data + (uint64_t)row0 * row_bytes;
    v.ne1 = n_rows;
    v.nbytes = row_bytes * (uint64_t)n_rows;
    v.owned = false;
    return v;
}

#ifdef FITLM_HAVE_VULKAN
/* fitlm_vulkan_first_discrete in a child process. Creating a Vulkan instance
 * loads every installed driver, and they stay mapped after the instance is
 * destroyed: Mesa's CPU driver (lavapipe) alone leaves about 70 MiB of LLVM
 * resident in a process that then runs on the CPU. The child's exit takes
 * them away (also under mpirun: the child touches no MPI state and leaves
 * with _exit). When fork fails, the probe runs in this process. */
static int first_discrete_probe(void) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return fitlm_vulkan_first_discrete();
    if (pid == 0) {
        int idx = fitlm_vulkan_first_discrete();
        _exit(idx >= 0 && idx < 250 ? idx + 1 : 0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    if (WIFEXITED(st) && WEXITSTATUS(st) > 0 && WEXITSTATUS(st) <= 250) return WEXITSTATUS(st) - 1;
    return -1;
}
#endif

const char *fitlm_backend_default_name(void) {
    const char *env = getenv("FITLM_DEVICE");
    if (env && *env) return env;
#ifdef FITLM_HAVE_VULKAN
    static char name[32];
    int idx = first_discrete_probe();
    if (idx >= 0) {
        snprintf(name, sizeof name, "vulkan:%d", idx);
        return name;
    }
#endif
    return "cpu";
}

fitlm_backend *fitlm_backend_new(const char *name, int n_threads, fitlm_error *err) {
    if (!name || !strcmp(name, "cpu")) return fitlm_backend_cpu_new(n_threads, err);
#ifdef FITLM_HAVE_VULKAN
    if (!strcmp(name, "vulkan")) return fitlm_backend_vulkan_new(-1, err);
    if (!strncmp(name, "vulkan:", 7)) {
        char *end;
        long idx = strtol(name + 7, &end, 10);
        if (end != name + 7 && !*end && idx >= 0 && idx < 1024) return fitlm_backend_vulkan_new((int)idx, err);
    }
    fitlm_fail(err, "unknown device '%s' (this build has: cpu, vulkan, vulkan:N)", name);
#else
    fitlm_fail(err, "unknown device '%s' (this build has: cpu; the Vulkan backend was not built)", name);
#endif
    return NULL;
}
