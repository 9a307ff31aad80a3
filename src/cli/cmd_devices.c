/* fitlm devices: the compute devices this build can run on. */
#include <stdio.h>
#include <string.h>

#include "backend/backend.h"
#include "cli/commands.h"
#include "util/error.h"
#ifdef FITLM_HAVE_VULKAN
#include "backend/vulkan/backend_vulkan.h"
#endif

int cmd_devices(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: fitlm devices\n"
                   "  Lists the devices --device accepts: cpu, and each Vulkan device as vulkan:N with\n"
                   "  its memory heaps, subgroup size and fp16 / int8 / integer dot product /\n"
                   "  cooperative matrix support. Without --device, runtime commands use\n"
                   "  $FITLM_DEVICE if set, else the first discrete GPU, else the CPU.\n");
            return 0;
        }
        return fitlm_die("devices: unknown option '%s'", argv[i]);
    }
    printf("cpu  the CPU backend\n");
#ifdef FITLM_HAVE_VULKAN
    fitlm_error err = {{0}};
    if (fitlm_vulkan_list_devices(stdout, &err) < 0) printf("Vulkan: %s\n", err.msg);
#else
    printf("(this build has no Vulkan backend: configure with libvulkan-dev and glslc installed)\n");
#endif
    printf("default device: %s\n", fitlm_backend_default_name());
    return 0;
}
