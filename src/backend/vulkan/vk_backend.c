/* The Vulkan compute backend: device, memory, command recording and the ops.
 * See backend_vulkan.h for the model; the shaders are in shaders/. */
#include "backend/vulkan/backend_vulkan.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>

#include "backend/coopmat_select.h"
#include "backend/vulkan/vk_shaders.h"
#include "format/ggml_type.h"
#include "util/fp16.h"
#include "util/meminfo.h"

/* ---- sizes ---- */
#define N_BINDINGS 5
#define PC_BYTES 128
#define ALIGN 256                       /* sub-allocation alignment */
#define CHUNK_BYTES (256ull << 20)      /* one shared device allocation */
#define STAGE_BYTES (64ull << 20)       /* host-visible staging (both directions) */
#define ARGS_BYTES (8ull << 20)         /* host-visible op arguments */
#define DESC_SETS 4096                  /* descriptor sets per submission */
#define MAX_GROUPS 65535u               /* dispatch size per dimension (the guaranteed minimum) */
#define ADDR_SHIFT 40                   /* data = (allocation id + 1) << 40 | byte offset */
#define MAX_CM_SHAPES 64                /* VK_NV_cooperative_matrix shapes read from a device */
#define COOPMAT_MIN 16                  /* matmuls of this many tokens or more use matmul_coopmat when chosen */

/* coopmat_select.h mirrors these Vulkan values */
_Static_assert((int)FITLM_CM_F16 == (int)VK_COMPONENT_TYPE_FLOAT16_NV &&
                   (int)FITLM_CM_F32 == (int)VK_COMPONENT_TYPE_FLOAT32_NV,
               "component types");
_Static_assert((int)FITLM_CM_SCOPE_SUBGROUP == (int)VK_SCOPE_SUBGROUP_NV, "scope");

typedef struct vk_alloc {
    VkBuffer buf;
    VkDeviceMemory mem;
    uint64_t size, used;
    uint32_t live; /* tensors in it */
    bool shared;   /* a chunk that several tensors share (else one tensor's own) */
} vk_alloc;

typedef struct vk_pipe {
    const char *name;
    VkPipeline pipe;
} vk_pipe;

typedef struct vk_state {
    VkInstance inst;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t qfam;
    VkPhysicalDeviceProperties props;
    VkPhysicalDeviceMemoryProperties memp;
    uint32_t dev_mem_type, host_mem_type;
    uint64_t max_range, align_off, heap_bytes, held_bytes, max_alloc;
    uint64_t mem_limit; /* $FITLM_VULKAN_MEM_LIMIT: device memory this backend may hold (tests) */
    bool has_budget;    /* VK_EXT_memory_budget */
    uint32_t heap_index; /* the largest device-local heap */
    uint32_t subgroup;  /* subgroup size */
    bool use_sg;        /* matmul reductions by subgroup shuffles (else shared memory) */
    uint32_t tiled_min; /* matmuls of this many tokens or more use matmul_tiled (0: never) */
    uint64_t n_tiled;   /* tiled matmul dispatches recorded (tests) */
    bool coopmat;       /* prefill matmuls by matmul_coopmat (VK_NV_cooperative_matrix, opted in) */
    bool coopmat_asked; /* $FITLM_VULKAN_COOPMAT=1 */
    bool coopmat_emulate; /* test hook FITLM_VULKAN_COOPMAT=emulate: matmul_coopemu (scalar code, no NV extension) */
    char coopmat_why[160]; /* the shape chosen, or why not */
    uint64_t n_coopmat; /* coopmat matmul dispatches recorded */
    /* allocations (index + 1 is the id in a tensor address) */
    vk_alloc *allocs;
    uint32_t n_allocs, cap_allocs;
    /* host-visible buffers */
    VkBuffer stage_buf, args_buf, dummy_buf;
    VkDeviceMemory stage_mem, args_mem, dummy_mem;
    uint8_t *stage_map, *args_map;
    uint64_t stage_used, args_used;
    /* recording */
    VkCommandPool cpool;
    VkCommandBuffer cmd;
    VkFence fence;
    bool recording;
    VkDescriptorSetLayout dsl;
    VkPipelineLayout playout;
    VkDescriptorPool dpool;
    VkPipelineCache pcache;
    uint32_t sets_used; /* descriptor sets of this submission */
    vk_pipe pipes[128];
    int n_pipes;
    /* the RoPE cos/sin table of the current submission (same positions for every layer) */
    int32_t *rope_pos;
    int64_t rope_n, rope_cap;
    const float *rope_freq;
    int rope_hd;
    uint64_t rope_off;
    bool rope_valid;
    /* a lost device (VK_ERROR_DEVICE_LOST): every later submission fails */
    bool lost;
    uint64_t n_submits;   /* submissions so far */
    uint64_t fault_after; /* test hook FITLM_VK_FAULT=device_lost_after:N: the device is "lost" at
                           * submission N + 1 (UINT64_MAX: never) */
    /* the first error since the last sync */
    bool failed;
    fitlm_error err;
} vk_state;

static void vk_seterr(vk_state *s, const char *fmt, ...) FITLM_PRINTF(2, 3);
static void vk_seterr(vk_state *s, const char *fmt, ...) {
    if (s->failed) return;
    s->failed = true;
    va_list ap;
    va_start(ap, fmt);
    fitlm_vfail(&s->err, fmt, ap);
    va_end(ap);
}

static const char *vk_result_str(VkResult r) {
    switch (r) {
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "out of host memory";
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "out of device memory";
    case VK_ERROR_DEVICE_LOST: return "the device was lost";
    case VK_ERROR_INITIALIZATION_FAILED: return "initialization failed";
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "no compatible Vulkan driver";
    case VK_ERROR_TOO_MANY_OBJECTS: return "too many objects";
    case VK_ERROR_FEATURE_NOT_PRESENT: return "feature not present";
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "extension not present";
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "out of descriptor pool memory";
    default: return "Vulkan error";
    }
}

/* ---- instance and devices ---- */

static VkResult make_instance(VkInstance *inst) {
    VkApplicationInfo app = {.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
                             .pApplicationName = "fitlm",
                             .apiVersion = VK_API_VERSION_1_1};
    VkInstanceCreateInfo ici = {.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, .pApplicationInfo = &app};
    return vkCreateInstance(&ici, NULL, inst);
}

/* The physical devices with a compute queue and Vulkan 1.1. Returns a malloc'd
 * array (caller frees) and sets *n; NULL with *n = 0 if none. */
static VkPhysicalDevice *compute_devices(VkInstance inst, uint32_t *n) {
    *n = 0;
    uint32_t cnt = 0;
    if (vkEnumeratePhysicalDevices(inst, &cnt, NULL) != VK_SUCCESS || cnt == 0) return NULL;
    VkPhysicalDevice *all = calloc(cnt, sizeof *all);
    if (!all) return NULL;
    if (vkEnumeratePhysicalDevices(inst, &cnt, all) < 0) {
        free(all);
        return NULL;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < cnt; i++) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(all[i], &p);
        if (p.apiVersion < VK_API_VERSION_1_1) continue;
        uint32_t nq = 0;
        vkGetPhysicalDeviceQueueFamilyProperties(all[i], &nq, NULL);
        VkQueueFamilyProperties qf[32];
        if (nq > 32) nq = 32;
        vkGetPhysicalDeviceQueueFamilyProperties(all[i], &nq, qf);
        bool ok = false;
        for (uint32_t q = 0; q < nq; q++) ok |= (qf[q].queueFlags & VK_QUEUE_COMPUTE_BIT) != 0;
        if (ok) all[k++] = all[i];
    }
    *n = k;
    if (!k) {
        free(all);
        return NULL;
    }
    return all;
}

static const char *dev_type_name(VkPhysicalDeviceType t) {
    switch (t) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return "discrete GPU";
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return "integrated GPU";
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return "virtual GPU";
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return "CPU (software)";
    default: return "other";
    }
}

static bool has_dev_ext(VkPhysicalDevice pd, const char *name) {
    uint32_t n = 0;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, NULL) != VK_SUCCESS || !n) return false;
    VkExtensionProperties *e = calloc(n, sizeof *e);
    if (!e) return false;
    bool found = false;
    if (vkEnumerateDeviceExtensionProperties(pd, NULL, &n, e) >= 0)
        for (uint32_t i = 0; i < n && !found; i++) found = !strcmp(e[i].extensionName, name);
    free(e);
    return found;
}

/* What pd reports for VK_NV_cooperative_matrix and the features its shader
 * needs (coopmat_select.h); the shapes go to shapes[MAX_CM_SHAPES]. Feature
 * structures of extensions the device lacks are not chained. */
static void coopmat_caps(VkInstance inst, VkPhysicalDevice pd, fitlm_coopmat_caps *c, fitlm_coopmat_shape *shapes) {
    memset(c, 0, sizeof *c);
    c->shapes = shapes;
    c->has_ext = has_dev_ext(pd, VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME);
    bool f16_ext = has_dev_ext(pd, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME);
    bool vmm_ext = has_dev_ext(pd, VK_KHR_VULKAN_MEMORY_MODEL_EXTENSION_NAME);
    VkPhysicalDeviceCooperativeMatrixPropertiesNV cmp = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_PROPERTIES_NV};
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES,
                                             .pNext = c->has_ext ? &cmp : NULL};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
    vkGetPhysicalDeviceProperties2(pd, &p2);
    const VkPhysicalDeviceLimits *lim = &p2.properties.limits;
    c->subgroup_size = sg.subgroupSize;
    c->max_invocations = lim->maxComputeWorkGroupInvocations < lim->maxComputeWorkGroupSize[0]
                             ? lim->maxComputeWorkGroupInvocations
                             : lim->maxComputeWorkGroupSize[0];
    c->shared_bytes = lim->maxComputeSharedMemorySize;
    c->compute_stage = (cmp.cooperativeMatrixSupportedStages & VK_SHADER_STAGE_COMPUTE_BIT) != 0;
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cmf = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV};
    VkPhysicalDeviceShaderFloat16Int8Features f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
    VkPhysicalDeviceVulkanMemoryModelFeatures vmm = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES};
    VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2};
    if (c->has_ext) {
        cmf.pNext = f2.pNext;
        f2.pNext = &cmf;
    }
    if (f16_ext) {
        f16.pNext = f2.pNext;
        f2.pNext = &f16;
    }
    if (vmm_ext) {
        vmm.pNext = f2.pNext;
        f2.pNext = &vmm;
    }
    vkGetPhysicalDeviceFeatures2(pd, &f2);
    c->feature = c->has_ext && cmf.cooperativeMatrix;
    c->float16 = f16_ext && f16.shaderFloat16;
    c->memory_model = vmm_ext && vmm.vulkanMemoryModel;
    if (!c->has_ext) return;
    PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV get = (PFN_vkGetPhysicalDeviceCooperativeMatrixPropertiesNV)
        vkGetInstanceProcAddr(inst, "vkGetPhysicalDeviceCooperativeMatrixPropertiesNV");
    uint32_t n = 0;
    if (!get || get(pd, &n, NULL) < 0) return;
    if (n > MAX_CM_SHAPES) n = MAX_CM_SHAPES;
    VkCooperativeMatrixPropertiesNV props[MAX_CM_SHAPES];
    for (uint32_t i = 0; i < n; i++)
        props[i] = (VkCooperativeMatrixPropertiesNV){.sType = VK_STRUCTURE_TYPE_COOPERATIVE_MATRIX_PROPERTIES_NV};
    if (get(pd, &n, props) < 0) return; /* VK_INCOMPLETE: the first MAX_CM_SHAPES */
    for (uint32_t i = 0; i < n; i++)
        shapes[i] = (fitlm_coopmat_shape){props[i].MSize,        props[i].NSize,        props[i].KSize,
                                          (int)props[i].AType,   (int)props[i].BType,   (int)props[i].CType,
                                          (int)props[i].DType,   (int)props[i].scope};
    c->n_shapes = (int)n;
}

int fitlm_vulkan_first_discrete(void) {
    VkInstance inst;
    if (make_instance(&inst) != VK_SUCCESS) return -1;
    uint32_t n = 0;
    VkPhysicalDevice *pd = compute_devices(inst, &n);
    int found = -1;
    for (uint32_t i = 0; i < n && found < 0; i++) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(pd[i], &p);
        if (p.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU) found = (int)i;
    }
    free(pd);
    vkDestroyInstance(inst, NULL);
    return found;
}

int fitlm_vulkan_list_devices(FILE *out, fitlm_error *err) {
    VkInstance inst;
    VkResult r = make_instance(&inst);
    if (r != VK_SUCCESS)
        return fitlm_fail(err, "no Vulkan instance (%s): is a Vulkan driver installed?", vk_result_str(r));
    uint32_t n = 0;
    VkPhysicalDevice *pd = compute_devices(inst, &n);
    if (n == 0) fprintf(out, "no Vulkan device with a compute queue\n");
    for (uint32_t i = 0; i < n; i++) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(pd[i], &p);
        VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES};
        VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
        vkGetPhysicalDeviceProperties2(pd[i], &p2);
        VkPhysicalDeviceShaderFloat16Int8Features f16 = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES};
        VkPhysicalDeviceFeatures2 f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &f16};
        vkGetPhysicalDeviceFeatures2(pd[i], &f2);
        VkPhysicalDeviceMemoryProperties mp;
        vkGetPhysicalDeviceMemoryProperties(pd[i], &mp);
        fprintf(out, "vulkan:%u  %s  (%s, Vulkan %u.%u.%u)\n", i, p.deviceName, dev_type_name(p.deviceType),
                VK_API_VERSION_MAJOR(p.apiVersion), VK_API_VERSION_MINOR(p.apiVersion),
                VK_API_VERSION_PATCH(p.apiVersion));
        for (uint32_t h = 0; h < mp.memoryHeapCount; h++)
            fprintf(out, "  heap %u: %.0f MiB%s\n", h, (double)mp.memoryHeaps[h].size / 1048576.0,
                    mp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT ? " device-local" : "");
        fprintf(out, "  subgroup size: %u\n", sg.subgroupSize);
        fprintf(out, "  fp16 arithmetic: %s, int8 arithmetic: %s\n", f16.shaderFloat16 ? "yes" : "no",
                f16.shaderInt8 ? "yes" : "no");
        fprintf(out, "  integer dot product: %s, cooperative matrix: KHR %s, NV %s\n",
                has_dev_ext(pd[i], "VK_KHR_shader_integer_dot_product") ? "yes" : "no",
                has_dev_ext(pd[i], "VK_KHR_cooperative_matrix") ? "yes" : "no",
                has_dev_ext(pd[i], VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME) ? "yes" : "no");
        fitlm_coopmat_shape shapes[MAX_CM_SHAPES];
        fitlm_coopmat_caps cc;
        coopmat_caps(inst, pd[i], &cc, shapes);
        if (cc.has_ext) {
            fprintf(out, "  NV cooperative matrix shapes (MxNxK A x B + C -> D%s):", cc.n_shapes ? "" : ": none");
            for (int k = 0; k < cc.n_shapes; k++)
                fprintf(out, "%s %ux%ux%u %s x %s + %s -> %s%s", k ? "," : "", shapes[k].m, shapes[k].n, shapes[k].k,
                        fitlm_coopmat_type_name(shapes[k].a_type), fitlm_coopmat_type_name(shapes[k].b_type),
                        fitlm_coopmat_type_name(shapes[k].c_type), fitlm_coopmat_type_name(shapes[k].d_type),
                        shapes[k].scope == FITLM_CM_SCOPE_SUBGROUP ? "" : " (not subgroup scope)");
            char why[160];
            bool ok = fitlm_coopmat_choose(&cc, true, why, sizeof why) >= 0;
            fprintf(out, "\n  cooperative-matrix prefill (FITLM_VULKAN_COOPMAT=1): %s (%s)\n",
                    ok ? "available" : "not available", why);
        }
        VkPhysicalDeviceMaintenance3Properties m3 = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
        VkPhysicalDeviceProperties2 q2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &m3};
        vkGetPhysicalDeviceProperties2(pd[i], &q2);
        fprintf(out, "  max storage buffer range: %.0f MiB, max allocation: %.0f MiB\n",
                (double)p.limits.maxStorageBufferRange / 1048576.0, (double)m3.maxMemoryAllocationSize / 1048576.0);
    }
    free(pd);
    vkDestroyInstance(inst, NULL);
    return (int)n;
}

/* ---- memory ---- */

static int find_mem_type(const VkPhysicalDeviceMemoryProperties *mp, uint32_t bits, VkMemoryPropertyFlags want,
                         VkMemoryPropertyFlags prefer) {
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < mp->memoryTypeCount; i++) {
            VkMemoryPropertyFlags f = mp->memoryTypes[i].propertyFlags;
            if (!(bits & (1u << i)) || (f & want) != want) continue;
            if (pass == 0 && (f & prefer) != prefer) continue;
            return (int)i;
        }
    return -1;
}

/* Creates a buffer of `size` bytes with its own memory (the caller destroys
 * both: free_alloc for tensors, vk_free for the host buffers). VK_SUCCESS or
 * the failing VkResult (nothing left allocated then). */
static VkResult make_buffer(vk_state *s, uint64_t size, bool host, VkBuffer *buf, VkDeviceMemory *mem) {
    VkBufferCreateInfo bci = {.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
                              .size = size,
                              .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                       VK_BUFFER_USAGE_TRANSFER_DST_BIT,
                              .sharingMode = VK_SHARING_MODE_EXCLUSIVE};
    VkResult r = vkCreateBuffer(s->dev, &bci, NULL, buf);
    if (r != VK_SUCCESS) return r;
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(s->dev, *buf, &req);
    int mt = host ? find_mem_type(&s->memp, req.memoryTypeBits,
                                  VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                                  VK_MEMORY_PROPERTY_HOST_CACHED_BIT)
                  : find_mem_type(&s->memp, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0);
    if (mt < 0) {
        vkDestroyBuffer(s->dev, *buf, NULL);
        return VK_ERROR_FEATURE_NOT_PRESENT;
    }
    VkMemoryAllocateInfo mai = {.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
                                .allocationSize = req.size,
                                .memoryTypeIndex = (uint32_t)mt};
    r = vkAllocateMemory(s->dev, &mai, NULL, mem);
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(s->dev, *buf, NULL);
        return r;
    }
    r = vkBindBufferMemory(s->dev, *buf, *mem, 0);
    if (r != VK_SUCCESS) {
        vkFreeMemory(s->dev, *mem, NULL);
        vkDestroyBuffer(s->dev, *buf, NULL);
    }
    return r;
}

static void free_alloc(vk_state *s, vk_alloc *a) {
    if (a->buf) vkDestroyBuffer(s->dev, a->buf, NULL);
    if (a->mem) vkFreeMemory(s->dev, a->mem, NULL);
    s->held_bytes -= a->size;
    memset(a, 0, sizeof *a);
}

static inline void *enc_addr(uint32_t id, uint64_t off) {
    return (void *)(uintptr_t)(((uint64_t)(id + 1) << ADDR_SHIFT) | off);
}

/* The allocation and byte offset of a device address; NULL if not ours. */
static vk_alloc *dec_addr(vk_state *s, const void *p, uint64_t *off) {
    uint64_t v = (uint64_t)(uintptr_t)p;
    uint64_t id = v >> ADDR_SHIFT;
    if (id == 0 || id > s->n_allocs || !s->allocs[id - 1].buf) return NULL;
    *off = v & ((1ull << ADDR_SHIFT) - 1);
    return &s->allocs[id - 1];
}

static void set_lost(vk_state *s);

/* Reserves `bytes` of device memory; returns the encoded address (given back
 * with dev_free, by vk_release) or NULL with err. */
static void *dev_alloc(vk_state *s, uint64_t bytes, fitlm_error *err) {
    if (s->lost) {
        set_lost(s);
        *err = s->err;
        s->failed = false;
        return NULL;
    }
    bytes = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    if (bytes == 0) bytes = ALIGN;
    bool own = bytes > CHUNK_BYTES / 4;
    if (!own)
        for (uint32_t i = 0; i < s->n_allocs; i++) {
            vk_alloc *a = &s->allocs[i];
            if (a->buf && a->shared && a->size - a->used >= bytes) {
                void *p = enc_addr(i, a->used);
                a->used += bytes;
                a->live++;
                return p;
            }
        }
    uint32_t id = 0;
    while (id < s->n_allocs && s->allocs[id].buf) id++;
    if (id == s->n_allocs) {
        if (s->n_allocs == s->cap_allocs) {
            uint32_t cap = s->cap_allocs ? 2 * s->cap_allocs : 64;
            vk_alloc *g = realloc(s->allocs, cap * sizeof *g);
            if (!g) return fitlm_fail(err, "out of memory"), NULL;
            s->allocs = g;
            s->cap_allocs = cap;
        }
        memset(&s->allocs[s->n_allocs], 0, sizeof s->allocs[0]);
        s->n_allocs++;
    }
    uint64_t size = own ? bytes : CHUNK_BYTES;
    if (size > s->max_alloc)
        return fitlm_fail(err, "a tensor of %.1f MiB is larger than the device's largest allocation (%.1f MiB)",
                          (double)bytes / 1048576.0, (double)s->max_alloc / 1048576.0),
               NULL;
    vk_alloc *a = &s->allocs[id];
    VkResult r = s->held_bytes + size > s->mem_limit ? VK_ERROR_OUT_OF_DEVICE_MEMORY
                                                     : make_buffer(s, size, false, &a->buf, &a->mem);
    if (r != VK_SUCCESS && !own) { /* a full chunk does not fit: try just this tensor */
        size = bytes;
        own = true;
        r = s->held_bytes + size > s->mem_limit ? VK_ERROR_OUT_OF_DEVICE_MEMORY
                                                : make_buffer(s, size, false, &a->buf, &a->mem);
    }
    if (r != VK_SUCCESS) {
        memset(a, 0, sizeof *a);
        return fitlm_fail(err,
                          "out of device memory on %s: %.1f MiB more requested, %.1f MiB held by fitlm, "
                          "device heap %.1f MiB (%s); -ngl N puts fewer layers on the GPU, --fit as many as fit",
                          s->props.deviceName, (double)bytes / 1048576.0, (double)s->held_bytes / 1048576.0,
                          (double)s->heap_bytes / 1048576.0, vk_result_str(r)),
               NULL;
    }
    a->size = size;
    a->used = bytes;
    a->live = 1;
    a->shared = !own;
    s->held_bytes += size;
    return enc_addr(id, 0);
}

static void dev_free(vk_state *s, void *p) {
    uint64_t off = 0;
    vk_alloc *a = dec_addr(s, p, &off);
    if (!a) return;
    if (--a->live == 0) free_alloc(s, a);
}

/* ---- recording and submission ---- */

static void flush(vk_state *s);

static void set_lost(vk_state *s) {
    s->lost = true;
    vk_seterr(s,
              "Vulkan: the device %s was lost (VK_ERROR_DEVICE_LOST: a GPU fault, a driver reset or a "
              "submission that ran too long); its memory and the work queued on it are gone, so this run "
              "cannot continue (run again, or with --device cpu)",
              s->props.deviceName);
}

static bool begin(vk_state *s) {
    if (s->lost) set_lost(s);
    if (s->failed) return false;
    if (s->recording) return true;
    VkCommandBufferBeginInfo bi = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
                                   .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT};
    VkResult r = vkBeginCommandBuffer(s->cmd, &bi);
    if (r != VK_SUCCESS) {
        vk_seterr(s, "Vulkan: cannot record commands (%s)", vk_result_str(r));
        return false;
    }
    s->recording = true;
    return true;
}

static void barrier(vk_state *s) {
    VkMemoryBarrier mb = {.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
                          .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT,
                          .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                                           VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT |
                                           VK_ACCESS_HOST_READ_BIT};
    vkCmdPipelineBarrier(s->cmd, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT |
                             VK_PIPELINE_STAGE_HOST_BIT,
                         0, 1, &mb, 0, NULL, 0, NULL);
}

/* Submits what was recorded and waits for it; then the host rings are free. */
static void flush(vk_state *s) {
    if (s->recording) {
        s->recording = false;
        VkResult r = vkEndCommandBuffer(s->cmd);
        if (r == VK_SUCCESS && (s->lost || s->n_submits++ >= s->fault_after)) r = VK_ERROR_DEVICE_LOST;
        if (r == VK_SUCCESS) {
            VkSubmitInfo si = {
                .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &s->cmd};
            r = vkQueueSubmit(s->queue, 1, &si, s->fence);
            if (r == VK_SUCCESS) {
                r = vkWaitForFences(s->dev, 1, &s->fence, VK_TRUE, UINT64_MAX);
                vkResetFences(s->dev, 1, &s->fence);
            }
        }
        if (r == VK_ERROR_DEVICE_LOST)
            set_lost(s);
        else if (r != VK_SUCCESS)
            vk_seterr(s, "Vulkan: running the queued work failed on %s (%s)", s->props.deviceName, vk_result_str(r));
        vkResetCommandPool(s->dev, s->cpool, 0);
        vkResetDescriptorPool(s->dev, s->dpool, 0);
    }
    s->sets_used = 0;
    s->stage_used = 0;
    s->args_used = 0;
    s->rope_valid = false;
}

/* Copies bytes into the argument buffer (flushing first if it is full) and
 * returns their index in 32-bit words; UINT64_MAX on error. */
static uint64_t push_args(vk_state *s, const void *data, uint64_t bytes) {
    uint64_t need = (bytes + 15) / 16 * 16;
    if (need > ARGS_BYTES) {
        vk_seterr(s, "Vulkan: %llu bytes of op arguments exceed the %llu-byte argument buffer",
                  (unsigned long long)bytes, (unsigned long long)ARGS_BYTES);
        return UINT64_MAX;
    }
    if (s->args_used + need > ARGS_BYTES) flush(s);
    if (!begin(s)) return UINT64_MAX;
    uint64_t off = s->args_used;
    if (data && bytes) memcpy(s->args_map + off, data, bytes);
    s->args_used += need;
    return off / 4;
}

/* A binding of `bytes` at device address p: the descriptor (offset aligned
 * down) and the byte offset of p inside it. False (error set) if p is not a
 * device address or the range does not fit one binding. */
static bool bind_of(vk_state *s, const void *p, uint64_t bytes, VkDescriptorBufferInfo *bi, uint32_t *rem) {
    uint64_t off = 0;
    vk_alloc *a = dec_addr(s, p, &off);
    if (!a) {
        vk_seterr(s, "Vulkan backend: a tensor is not in device memory");
        return false;
    }
    uint64_t start = off / s->align_off * s->align_off;
    *rem = (uint32_t)(off - start);
    uint64_t range = a->size - start;
    if (range > s->max_range) range = s->max_range;
    if (*rem + bytes > range) {
        vk_seterr(s, "Vulkan backend: %.1f MiB do not fit one storage binding (%.1f MiB on %s)",
                  (double)bytes / 1048576.0, (double)s->max_range / 1048576.0, s->props.deviceName);
        return false;
    }
    bi->buffer = a->buf;
    bi->offset = start;
    bi->range = range;
    return true;
}

static bool bind_tensor(vk_state *s, const fitlm_btensor *t, VkDescriptorBufferInfo *bi, uint32_t *rem) {
    return bind_of(s, t->data, t->nbytes, bi, rem);
}

static void bind_args(vk_state *s, VkDescriptorBufferInfo *bi) {
    bi->buffer = s->args_buf;
    bi->offset = 0;
    /* the device's own limit: FITLM_VULKAN_MAX_RANGE plays a smaller one for tensors only */
    uint64_t dev_range = s->props.limits.maxStorageBufferRange;
    bi->range = ARGS_BYTES < dev_range ? ARGS_BYTES : dev_range;
}

static VkPipeline get_pipe(vk_state *s, const char *name) {
    for (int i = 0; i < s->n_pipes; i++)
        if (!strcmp(s->pipes[i].name, name)) return s->pipes[i].pipe;
    const fitlm_vk_shader *sh = fitlm_vk_shaders;
    while (sh->name && strcmp(sh->name, name)) sh++;
    if (!sh->name || s->n_pipes == (int)(sizeof s->pipes / sizeof s->pipes[0])) {
        vk_seterr(s, "Vulkan backend: no shader '%s' in this build", name);
        return VK_NULL_HANDLE;
    }
    VkShaderModuleCreateInfo smi = {
        .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, .codeSize = sh->size, .pCode = sh->code};
    VkShaderModule mod;
    VkResult r = vkCreateShaderModule(s->dev, &smi, NULL, &mod);
    if (r != VK_SUCCESS) {
        vk_seterr(s, "Vulkan: shader %s: %s", name, vk_result_str(r));
        return VK_NULL_HANDLE;
    }
    VkComputePipelineCreateInfo cpi = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .stage = {.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
                  .stage = VK_SHADER_STAGE_COMPUTE_BIT,
                  .module = mod,
                  .pName = "main"},
        .layout = s->playout};
    VkPipeline p;
    r = vkCreateComputePipelines(s->dev, s->pcache, 1, &cpi, NULL, &p);
    vkDestroyShaderModule(s->dev, mod, NULL);
    if (r != VK_SUCCESS) {
        vk_seterr(s, "Vulkan: pipeline %s: %s", name, vk_result_str(r));
        return VK_NULL_HANDLE;
    }
    s->pipes[s->n_pipes].name = sh->name;
    s->pipes[s->n_pipes].pipe = p;
    s->n_pipes++;
    return p;
}

/* Records one dispatch of shader `name` over (gx, gy) workgroups with up to
 * N_BINDINGS buffers (the rest bound to a dummy) and push constants pc. */
static void dispatch(vk_state *s, const char *name, int nb, const VkDescriptorBufferInfo *bufs, const void *pc,
                     uint32_t pc_bytes, uint32_t gx, uint32_t gy) {
    if (gx == 0 || gy == 0) return;
    VkPipeline p = get_pipe(s, name);
    if (!p || !begin(s)) return;
    VkDescriptorSetAllocateInfo dai = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO,
                                       .descriptorPool = s->dpool,
                                       .descriptorSetCount = 1,
                                       .pSetLayouts = &s->dsl};
    VkDescriptorSet set;
    VkResult r = s->sets_used < DESC_SETS ? vkAllocateDescriptorSets(s->dev, &dai, &set) : VK_ERROR_OUT_OF_POOL_MEMORY;
    s->sets_used++;
    if (r != VK_SUCCESS) {
        vk_seterr(s, "Vulkan: descriptor set: %s", vk_result_str(r));
        return;
    }
    VkDescriptorBufferInfo all[N_BINDINGS];
    VkWriteDescriptorSet w[N_BINDINGS];
    for (int i = 0; i < N_BINDINGS; i++) {
        if (i < nb) {
            all[i] = bufs[i];
        } else {
            all[i].buffer = s->dummy_buf;
            all[i].offset = 0;
            all[i].range = VK_WHOLE_SIZE;
        }
        w[i] = (VkWriteDescriptorSet){.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET,
                                      .dstSet = set,
                                      .dstBinding = (uint32_t)i,
                                      .descriptorCount = 1,
                                      .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                      .pBufferInfo = &all[i]};
    }
    vkUpdateDescriptorSets(s->dev, N_BINDINGS, w, 0, NULL);
    vkCmdBindPipeline(s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, p);
    vkCmdBindDescriptorSets(s->cmd, VK_PIPELINE_BIND_POINT_COMPUTE, s->playout, 0, 1, &set, 0, NULL);
    vkCmdPushConstants(s->cmd, s->playout, VK_SHADER_STAGE_COMPUTE_BIT, 0, pc_bytes, pc);
    vkCmdDispatch(s->cmd, gx, gy, 1);
    barrier(s);
}

/* Makes room for `need` dispatches in this submission's descriptor pool
 * (flushing what is queued if not): called by each op before it pushes its
 * arguments, so that a flush never separates an op from its arguments. */
static void room_for(vk_state *s, uint32_t need) {
    if (s->sets_used + need > DESC_SETS) flush(s);
}

/* ---- backend: allocation, transfers ---- */

static vk_state *st(const fitlm_backend *be) {
    return (vk_state *)be->state;
}

static uint64_t row_bytes_of(int type, int64_t ne0) {
    bool ok = true;
    uint64_t r = fitlm_type_row_bytes(type, (uint64_t)ne0, &ok);
    return ok ? r : 0;
}

static bool vk_weight_type_supported(const fitlm_backend *be, int type) {
    (void)be;
    switch (type) {
    case FITLM_TYPE_F32:
    case FITLM_TYPE_F16:
    case FITLM_TYPE_BF16:
    case FITLM_TYPE_Q8_0:
    case FITLM_TYPE_Q4_0:
    case FITLM_TYPE_Q4_K:
    case FITLM_TYPE_Q5_K:
    case FITLM_TYPE_Q6_K: return true;
    default: return false;
    }
}

static const char *type_suffix(int type) {
    switch (type) {
    case FITLM_TYPE_F32: return "f32";
    case FITLM_TYPE_F16: return "f16";
    case FITLM_TYPE_BF16: return "bf16";
    case FITLM_TYPE_Q8_0: return "q8_0";
    case FITLM_TYPE_Q4_0: return "q4_0";
    case FITLM_TYPE_Q4_K: return "q4_k";
    case FITLM_TYPE_Q5_K: return "q5_k";
    case FITLM_TYPE_Q6_K: return "q6_k";
    default: return NULL;
    }
}

static int vk_alloc_t(fitlm_backend *be, int type, int64_t ne0, int64_t ne1, fitlm_btensor *out, fitlm_error *err) {
    vk_state *s = st(be);
    memset(out, 0, sizeof *out);
    uint64_t rb = row_bytes_of(type, ne0);
    if (ne0 <= 0 || ne1 <= 0 || !rb) return fitlm_fail(err, "cannot allocate a %lldx%lld tensor of type %s",
                                                      (long long)ne0, (long long)ne1, fitlm_type_name(type));
    uint64_t bytes = rb * (uint64_t)ne1;
    void *p = dev_alloc(s, bytes, err);
    if (!p) return -1;
    out->type = type;
    out->device = FITLM_DEVICE_VULKAN;
    out->ne0 = ne0;
    out->ne1 = ne1;
    out->nbytes = bytes;
    out->data = p;
    out->owned = true;
    return 0;
}

static void vk_release(fitlm_backend *be, fitlm_btensor *t) {
    if (t->owned && t->data) {
        vk_state *s = st(be);
        flush(s); /* queued work may still use it */
        dev_free(s, t->data);
    }
    memset(t, 0, sizeof *t);
}

/* Copies host bytes to device address dst through the staging buffer. */
static void upload_bytes(vk_state *s, void *dst, const void *src, uint64_t bytes) {
    uint64_t off = 0;
    vk_alloc *a = dec_addr(s, dst, &off);
    if (!a) {
        vk_seterr(s, "Vulkan backend: upload to a tensor that is not in device memory");
        return;
    }
    const uint8_t *p = src;
    while (bytes > 0 && !s->failed) {
        if (s->stage_used + 16 > STAGE_BYTES) flush(s);
        if (!begin(s)) return;
        uint64_t room = STAGE_BYTES - s->stage_used;
        uint64_t n = bytes < room ? bytes : room;
        memcpy(s->stage_map + s->stage_used, p, n);
        VkBufferCopy c = {.srcOffset = s->stage_used, .dstOffset = off, .size = n};
        vkCmdCopyBuffer(s->cmd, s->stage_buf, a->buf, 1, &c);
        s->stage_used = (s->stage_used + n + 15) / 16 * 16;
        p += n;
        off += n;
        bytes -= n;
    }
    if (s->recording) barrier(s);
}

static void vk_upload(fitlm_backend *be, fitlm_btensor *t, int64_t row0, int64_t n_rows, const float *src) {
    vk_state *s = st(be);
    uint64_t rb = (uint64_t)t->ne0 * 4;
    upload_bytes(s, (uint8_t *)t->data + (uint64_t)row0 * rb, src, rb * (uint64_t)n_rows);
}

static void vk_download(fitlm_backend *be, const fitlm_btensor *t, int64_t row0, int64_t n_rows, float *dst) {
    vk_state *s = st(be);
    uint64_t rb = (uint64_t)t->ne0 * 4, bytes = rb * (uint64_t)n_rows, off = 0;
    vk_alloc *a = dec_addr(s, (uint8_t *)t->data + (uint64_t)row0 * rb, &off);
    if (!a) {
        vk_seterr(s, "Vulkan backend: download from a tensor that is not in device memory");
        return;
    }
    uint8_t *out = (uint8_t *)dst;
    while (bytes > 0 && !s->failed) {
        if (s->stage_used + 16 > STAGE_BYTES) flush(s);
        if (!begin(s)) break;
        uint64_t at = s->stage_used, room = STAGE_BYTES - at;
        uint64_t n = bytes < room ? bytes : room;
        VkBufferCopy c = {.srcOffset = off, .dstOffset = at, .size = n};
        vkCmdCopyBuffer(s->cmd, a->buf, s->stage_buf, 1, &c);
        barrier(s);
        s->stage_used = at + n;
        flush(s);
        if (s->failed) break;
        memcpy(out, s->stage_map + at, n);
        out += n;
        off += n;
        bytes -= n;
    }
    if (s->failed) memset(dst, 0, (size_t)(rb * (uint64_t)n_rows));
}

static void vk_clear(fitlm_backend *be, fitlm_btensor *t) {
    vk_state *s = st(be);
    uint64_t off = 0;
    vk_alloc *a = dec_addr(s, t->data, &off);
    if (!a || !begin(s)) return;
    /* sizes are rounded up to 4: allocations are ALIGN-sized, so this stays inside */
    vkCmdFillBuffer(s->cmd, a->buf, off, (t->nbytes + 3) / 4 * 4, 0);
    barrier(s);
}

static int vk_sync(fitlm_backend *be, fitlm_error *err) {
    vk_state *s = st(be);
    flush(s);
    if (s->failed) {
        if (err) *err = s->err;
        s->failed = false; /* reported once */
        return -1;
    }
    return 0;
}

static int vk_prepare_weight(fitlm_backend *be, const fitlm_tensor *src, fitlm_btensor *out, fitlm_error *err) {
    vk_state *s = st(be);
    memset(out, 0, sizeof *out);
    if (!src->data) return fitlm_fail(err, "tensor %s has no data", src->name);
    bool is_vector = src->n_dims == 1 || src->n_elements == src->ne[0];
    if (is_vector) {
        int64_t n = (int64_t)src->ne[0];
        if (src->type != FITLM_TYPE_F32 && src->type != FITLM_TYPE_F16 && src->type != FITLM_TYPE_BF16)
            return fitlm_fail(err, "tensor %s has type %s, which the Vulkan backend cannot use for a vector",
                              src->name, fitlm_type_name(src->type));
        float *tmp = malloc((size_t)n * sizeof *tmp); /* freed below */
        if (!tmp) return fitlm_fail(err, "out of memory");
        const uint8_t *p = src->data;
        for (int64_t i = 0; i < n; i++) {
            if (src->type == FITLM_TYPE_F32) {
                memcpy(&tmp[i], p + 4 * i, 4);
            } else {
                uint16_t h;
                memcpy(&h, p + 2 * i, 2);
                tmp[i] = src->type == FITLM_TYPE_F16 ? fitlm_fp16_to_fp32(h) : fitlm_bf16_to_fp32(h);
            }
        }
        int rc = vk_alloc_t(be, FITLM_TYPE_F32, n, 1, out, err);
        if (!rc) upload_bytes(s, out->data, tmp, (uint64_t)n * 4);
        free(tmp);
        if (!rc && s->failed) {
            *err = s->err;
            s->failed = false;
            vk_release(be, out);
            return -1;
        }
        return rc;
    }
    if (!vk_weight_type_supported(be, src->type))
        return fitlm_fail(err, "tensor %s has type %s, which the Vulkan backend cannot run", src->name,
                          fitlm_type_name(src->type));
    int64_t ne0 = (int64_t)src->ne[0], ne1 = (int64_t)(src->n_elements / src->ne[0]);
    if (vk_alloc_t(be, src->type, ne0, ne1, out, err)) return -1;
    if (out->nbytes != src->nbytes) {
        vk_release(be, out);
        return fitlm_fail(err, "tensor %s: %llu bytes do not match its shape", src->name,
                          (unsigned long long)src->nbytes);
    }
    upload_bytes(s, out->data, src->data, src->nbytes);
    flush(s); /* weights are uploaded once: keep the staging ring free */
    if (s->failed) {
        *err = s->err;
        s->failed = false;
        vk_release(be, out);
        return -1;
    }
    return 0;
}

static int vk_reserve(fitlm_backend *be, uint32_t n_tokens, uint32_t n_ctx, uint32_t n_heads, uint32_t n_kv_heads,
                      uint32_t head_dim, fitlm_error *err) {
    (void)be;
    (void)n_tokens;
    (void)n_ctx;
    if (head_dim > 256 || head_dim % 2)
        return fitlm_fail(err, "the Vulkan backend's attention supports even head sizes up to 256 (got %u)", head_dim);
    if (n_kv_heads == 0 || n_heads % n_kv_heads)
        return fitlm_fail(err, "n_heads (%u) is not a multiple of n_kv_heads (%u)", n_heads, n_kv_heads);
    return 0;
}

static uint64_t vk_scratch_bytes(const fitlm_backend *be) {
    (void)be;
    return 0; /* the host-visible staging and argument buffers are not device memory of the model */
}

/* ---- ops ---- */

static void vk_matmul(fitlm_backend *be, const fitlm_btensor *W, const fitlm_btensor *x, int64_t n_tokens,
                      fitlm_btensor *y) {
    vk_state *s = st(be);
    if (s->failed || n_tokens <= 0) return;
    room_for(s, 64);
    const char *suf = type_suffix(W->type);
    if (!suf) {
        vk_seterr(s, "Vulkan backend: matmul of type %s", fitlm_type_name(W->type));
        return;
    }
    /* many tokens (prefill): the tiled shader, bit-identical to the
     * matrix-vector one (see matmul_tiled.comp), so the choice never changes a result;
     * or, opted in, the cooperative-matrix one (F16 inputs: not bit-identical) */
    bool coop = s->coopmat && n_tokens >= COOPMAT_MIN;
    bool tiled = !coop && s->tiled_min && n_tokens >= (int64_t)s->tiled_min;
    int64_t tn = coop ? 64 : tiled ? 32 : 8; /* tokens per workgroup */
    int64_t rn = coop ? 64 : tiled ? 32 : 8; /* weight rows per workgroup */
    char name[32];
    const char *fmt = coop    ? (s->coopmat_emulate ? "matmul_coopemu_%s" : "matmul_coopmat_%s")
                      : tiled ? "matmul_tiled_%s"
                      : s->use_sg ? "matmul_sg_%s"
                                  : "matmul_%s";
    snprintf(name, sizeof name, fmt, suf);
    uint64_t rb = row_bytes_of(W->type, W->ne0);
    VkDescriptorBufferInfo b[3];
    uint32_t xr, yr;
    if (!bind_of(s, x->data, (uint64_t)n_tokens * (uint64_t)W->ne0 * 4, &b[1], &xr) ||
        !bind_of(s, y->data, (uint64_t)n_tokens * (uint64_t)y->ne0 * 4, &b[2], &yr))
        return;
    uint64_t rows_fit = (s->max_range - s->align_off) / rb;
    uint64_t per = rows_fit < 8ull * MAX_GROUPS ? rows_fit : 8ull * MAX_GROUPS;
    if (per == 0) {
        vk_seterr(s, "Vulkan backend: one weight row of %llu bytes exceeds a storage binding", (unsigned long long)rb);
        return;
    }
    for (int64_t r0 = 0; r0 < W->ne1; r0 += (int64_t)per) {
        int64_t nr = W->ne1 - r0 < (int64_t)per ? W->ne1 - r0 : (int64_t)per;
        uint32_t wr;
        if (!bind_of(s, (const uint8_t *)W->data + (uint64_t)r0 * rb, (uint64_t)nr * rb, &b[0], &wr)) return;
        for (int64_t t0 = 0; t0 < n_tokens; t0 += tn * (int64_t)MAX_GROUPS) {
            int64_t nt = n_tokens - t0 < tn * (int64_t)MAX_GROUPS ? n_tokens - t0 : tn * (int64_t)MAX_GROUPS;
            uint32_t pc[9] = {wr, (uint32_t)rb, (uint32_t)W->ne0, (uint32_t)n_tokens, xr / 4, yr / 4 + (uint32_t)r0,
                              (uint32_t)y->ne0, (uint32_t)t0, (uint32_t)nr};
            uint32_t gx = (uint32_t)((nr + rn - 1) / rn);
            dispatch(s, name, 3, b, pc, sizeof pc, gx, (uint32_t)((nt + tn - 1) / tn));
            s->n_tiled += tiled;
            s->n_coopmat += coop;
        }
    }
}

static void vk_matmul_multi(fitlm_backend *be, int n, const fitlm_btensor *const *W, const fitlm_btensor *x,
                            int64_t n_tokens, fitlm_btensor *const *y) {
    for (int i = 0; i < n; i++) vk_matmul(be, W[i], x, n_tokens, y[i]);
}

static void vk_rmsnorm(fitlm_backend *be, const fitlm_btensor *x, const fitlm_btensor *w, float eps, int64_t n_tokens,
                       fitlm_btensor *y) {
    vk_state *s = st(be);
    if (s->failed || n_tokens <= 0) return;
    room_for(s, 64);
    uint64_t bytes = (uint64_t)n_tokens * (uint64_t)x->ne0 * 4;
    VkDescriptorBufferInfo b[3];
    uint32_t xr, wr, yr;
    if (!bind_of(s, x->data, bytes, &b[0], &xr) || !bind_tensor(s, w, &b[1], &wr) ||
        !bind_of(s, y->data, bytes, &b[2], &yr))
        return;
    for (int64_t r0 = 0; r0 < n_tokens; r0 += MAX_GROUPS) {
        int64_t nr = n_tokens - r0 < MAX_GROUPS ? n_tokens - r0 : MAX_GROUPS;
        struct {
            uint32_t x_off, w_off, y_off, n;
            float eps;
            uint32_t row0;
        } pc = {xr / 4, wr / 4, yr / 4, (uint32_t)x->ne0, eps, (uint32_t)r0};
        dispatch(s, "rmsnorm", 3, b, &pc, sizeof pc, (uint32_t)nr, 1);
    }
}

static void vk_rope(fitlm_backend *be, fitlm_btensor *x, int64_t n_tokens, int n_heads, const int32_t *pos,
                    const fitlm_rope_table *rope) {
    vk_state *s = st(be);
    if (s->failed || n_tokens <= 0) return;
    room_for(s, 64);
    int half = rope->head_dim / 2;
    /* the cos/sin table, computed on the host exactly as the CPU backend does,
     * once per submission for the same positions and frequencies */
    bool same = s->rope_valid && s->rope_n == n_tokens && s->rope_freq == rope->inv_freq &&
                s->rope_hd == rope->head_dim && !memcmp(s->rope_pos, pos, (size_t)n_tokens * sizeof *pos);
    if (!same) {
        uint64_t bytes = (uint64_t)n_tokens * (uint64_t)half * 2 * sizeof(float);
        float *cs = malloc(bytes); /* freed below */
        if (!cs) {
            vk_seterr(s, "out of memory");
            return;
        }
        for (int64_t t = 0; t < n_tokens; t++)
            for (int i = 0; i < half; i++) {
                float angle = (float)pos[t] * rope->inv_freq[i];
                cs[2 * (t * half + i)] = cosf(angle);
                cs[2 * (t * half + i) + 1] = sinf(angle);
            }
        uint64_t off = push_args(s, cs, bytes);
        free(cs);
        if (off == UINT64_MAX) return;
        if (s->rope_cap < n_tokens) {
            int32_t *g = realloc(s->rope_pos, (size_t)n_tokens * sizeof *g);
            if (!g) {
                vk_seterr(s, "out of memory");
                return;
            }
            s->rope_pos = g;
            s->rope_cap = n_tokens;
        }
        memcpy(s->rope_pos, pos, (size_t)n_tokens * sizeof *pos);
        s->rope_n = n_tokens;
        s->rope_freq = rope->inv_freq;
        s->rope_hd = rope->head_dim;
        s->rope_off = off;
        s->rope_valid = true;
    }
    VkDescriptorBufferInfo b[2];
    uint32_t xr;
    if (!bind_of(s, x->data, (uint64_t)n_tokens * (uint64_t)x->ne0 * 4, &b[0], &xr)) return;
    bind_args(s, &b[1]);
    uint64_t total = (uint64_t)n_tokens * (uint64_t)n_heads * (uint64_t)half;
    for (uint64_t base = 0; base < total; base += 256ull * MAX_GROUPS) {
        uint64_t n = total - base < 256ull * MAX_GROUPS ? total - base : 256ull * MAX_GROUPS;
        uint32_t pc[8] = {xr / 4,
                          (uint32_t)x->ne0,
                          (uint32_t)n_heads,
                          (uint32_t)rope->head_dim,
                          rope->layout == FITLM_ROPE_ADJACENT ? 0u : 1u,
                          (uint32_t)n_tokens,
                          (uint32_t)s->rope_off,
                          (uint32_t)base};
        dispatch(s, "rope", 2, b, pc, sizeof pc, (uint32_t)((n + 255) / 256), 1);
    }
}

static const char *kv_suffix(int type) {
    switch (type) {
    case FITLM_TYPE_F32: return "f32";
    case FITLM_TYPE_F16: return "f16";
    case FITLM_TYPE_Q8_0: return "q8_0";
    default: return NULL;
    }
}

static void vk_kv_store(fitlm_backend *be, fitlm_btensor *cache, const int64_t *slot, const fitlm_btensor *src,
                        int64_t n_tokens) {
    vk_state *s = st(be);
    if (s->failed || n_tokens <= 0) return;
    room_for(s, 64);
    const char *suf = kv_suffix(cache->type);
    if (!suf) {
        vk_seterr(s, "Vulkan backend: KV cache type %s", fitlm_type_name(cache->type));
        return;
    }
    int32_t *sl = malloc((size_t)n_tokens * sizeof *sl); /* freed below */
    if (!sl) {
        vk_seterr(s, "out of memory");
        return;
    }
    for (int64_t t = 0; t < n_tokens; t++) sl[t] = (int32_t)slot[t];
    uint64_t ao = push_args(s, sl, (uint64_t)n_tokens * sizeof *sl);
    free(sl);
    if (ao == UINT64_MAX) return;
    char name[32];
    snprintf(name, sizeof name, "kv_store_%s", suf);
    VkDescriptorBufferInfo b[3];
    uint32_t xr, cr;
    if (!bind_of(s, src->data, (uint64_t)n_tokens * (uint64_t)src->ne0 * 4, &b[0], &xr) ||
        !bind_tensor(s, cache, &b[1], &cr))
        return;
    bind_args(s, &b[2]);
    uint64_t per = cache->type == FITLM_TYPE_Q8_0 ? (uint64_t)cache->ne0 / 32 : (uint64_t)cache->ne0 / 2;
    uint64_t total = per * (uint64_t)n_tokens;
    for (uint64_t base = 0; base < total; base += 64ull * MAX_GROUPS) {
        uint64_t n = total - base < 64ull * MAX_GROUPS ? total - base : 64ull * MAX_GROUPS;
        uint32_t pc[7] = {xr / 4,          cr, (uint32_t)row_bytes_of(cache->type, cache->ne0), (uint32_t)cache->ne0,
                          (uint32_t)n_tokens, (uint32_t)ao, (uint32_t)base};
        dispatch(s, name, 3, b, pc, sizeof pc, (uint32_t)((n + 63) / 64), 1);
    }
}

static void vk_attention(fitlm_backend *be, const fitlm_btensor *q, const fitlm_btensor *k_cache,
                         const fitlm_btensor *v_cache, const fitlm_attn_batch *ab, int n_heads, int n_kv_heads,
                         int head_dim, uint32_t window, fitlm_btensor *out) {
    vk_state *s = st(be);
    int64_t n = ab->n_tokens;
    if (s->failed || n <= 0) return;
    room_for(s, 64);
    const char *suf = kv_suffix(k_cache->type);
    if (!suf || k_cache->type != v_cache->type || head_dim > 256 || n_kv_heads <= 0 || n_heads % n_kv_heads) {
        vk_seterr(s, "Vulkan backend: attention with cache type %s, head size %d, %d/%d heads",
                  fitlm_type_name(k_cache->type), head_dim, n_heads, n_kv_heads);
        return;
    }
    /* arguments: pos[n], seq[n], table offset[n_seqs], then the tables the
     * tokens reach (each sequence's blocks up to its largest position) */
    int32_t n_seqs = 0;
    for (int64_t t = 0; t < n; t++)
        if (ab->seq[t] + 1 > n_seqs) n_seqs = ab->seq[t] + 1;
    int32_t *nblk = calloc((size_t)n_seqs, sizeof *nblk); /* freed below */
    if (!nblk) {
        vk_seterr(s, "out of memory");
        return;
    }
    for (int64_t t = 0; t < n; t++) {
        int32_t b = (ab->pos[t] >> ab->block_shift) + 1;
        if (b > nblk[ab->seq[t]]) nblk[ab->seq[t]] = b;
    }
    uint64_t n_words = 2 * (uint64_t)n + (uint64_t)n_seqs;
    for (int32_t i = 0; i < n_seqs; i++) n_words += (uint64_t)nblk[i];
    int32_t *a = malloc(n_words * sizeof *a); /* freed below */
    if (!a) {
        free(nblk);
        vk_seterr(s, "out of memory");
        return;
    }
    memcpy(a, ab->pos, (size_t)n * sizeof *a);
    memcpy(a + n, ab->seq, (size_t)n * sizeof *a);
    /* make sure the whole argument block lands in one ring segment: the
     * table offsets below are absolute word indices */
    if (s->args_used + (n_words * 4 + 15) / 16 * 16 > ARGS_BYTES) flush(s);
    uint64_t base = s->args_used / 4;
    uint64_t at = 2 * (uint64_t)n + (uint64_t)n_seqs;
    for (int32_t i = 0; i < n_seqs; i++) {
        a[2 * n + i] = (int32_t)(base + at);
        if (nblk[i]) memcpy(a + at, ab->block_table[i], (size_t)nblk[i] * sizeof *a);
        at += (uint64_t)nblk[i];
    }
    uint64_t ao = push_args(s, a, n_words * sizeof *a);
    free(a);
    free(nblk);
    if (ao == UINT64_MAX) return;
    if (ao != base) {
        vk_seterr(s, "Vulkan backend: attention arguments moved");
        return;
    }
    char name[32];
    snprintf(name, sizeof name, "attention_%s", suf);
    VkDescriptorBufferInfo b[5];
    uint32_t qr, kr, vr, orr;
    uint64_t act = (uint64_t)n * (uint64_t)n_heads * (uint64_t)head_dim * 4;
    if (!bind_of(s, q->data, act, &b[0], &qr) || !bind_tensor(s, k_cache, &b[1], &kr) ||
        !bind_tensor(s, v_cache, &b[2], &vr) || !bind_of(s, out->data, act, &b[3], &orr))
        return;
    bind_args(s, &b[4]);
    for (int64_t t0 = 0; t0 < n; t0 += MAX_GROUPS) {
        int64_t nt = n - t0 < MAX_GROUPS ? n - t0 : MAX_GROUPS;
        struct {
            uint32_t q_off, o_off, k_off, v_off, row_bytes, n_heads, group, head_dim, window, block_shift;
            float scale;
            uint32_t pos_o, seq_o, tbo_o, tok0;
        } pc = {qr / 4,
                orr / 4,
                kr,
                vr,
                (uint32_t)row_bytes_of(k_cache->type, k_cache->ne0),
                (uint32_t)n_heads,
                (uint32_t)(n_heads / n_kv_heads),
                (uint32_t)head_dim,
                window,
                (uint32_t)ab->block_shift,
                1.0f / sqrtf((float)head_dim),
                (uint32_t)ao,
                (uint32_t)(ao + (uint64_t)n),
                (uint32_t)(ao + 2 * (uint64_t)n),
                (uint32_t)t0};
        dispatch(s, name, 5, b, &pc, sizeof pc, (uint32_t)n_heads, (uint32_t)nt);
    }
}

/* Copies whole rows between (or within) device tensors: dst row dst_row[i] <- src row src_row[i]. */
static void copy_rows(vk_state *s, const fitlm_btensor *src, const fitlm_btensor *dst, uint64_t row_bytes,
                      const int64_t *src_row, const int64_t *dst_row, const int32_t *src_row32, int64_t n) {
    uint64_t so = 0, dof = 0;
    vk_alloc *sa = dec_addr(s, src->data, &so), *da = dec_addr(s, dst->data, &dof);
    if (!sa || !da) {
        vk_seterr(s, "Vulkan backend: a row copy between tensors that are not in device memory");
        return;
    }
    if (!begin(s)) return;
    VkBufferCopy c[64];
    int k = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t sr = src_row32 ? src_row32[i] : src_row[i];
        int64_t dr = dst_row ? dst_row[i] : i;
        c[k++] = (VkBufferCopy){.srcOffset = so + (uint64_t)sr * row_bytes,
                                .dstOffset = dof + (uint64_t)dr * row_bytes,
                                .size = row_bytes};
        if (k == 64 || i == n - 1) {
            vkCmdCopyBuffer(s->cmd, sa->buf, da->buf, (uint32_t)k, c);
            k = 0;
        }
    }
    barrier(s);
}

static void vk_get_rows(fitlm_backend *be, const fitlm_btensor *src, const int32_t *rows, int64_t n,
                        fitlm_btensor *dst) {
    vk_state *s = st(be);
    if (s->failed || n <= 0) return;
    copy_rows(s, src, dst, (uint64_t)src->ne0 * 4, NULL, NULL, rows, n);
}

static void vk_copy_slots(fitlm_backend *be, fitlm_btensor *cache, const int64_t *src_slot, const int64_t *dst_slot,
                          int64_t n) {
    vk_state *s = st(be);
    if (s->failed || n <= 0) return;
    copy_rows(s, cache, cache, row_bytes_of(cache->type, cache->ne0), src_slot, dst_slot, NULL, n);
}

static void elementwise(vk_state *s, const char *name, fitlm_btensor *d, const fitlm_btensor *a,
                        const fitlm_btensor *b, uint64_t ne0, uint64_t total, bool a_is_row) {
    if (s->failed || total == 0) return;
    room_for(s, 64);
    VkDescriptorBufferInfo bi[3];
    uint32_t dr, ar, br = 0;
    if (!bind_of(s, d->data, total * 4, &bi[0], &dr) || !bind_of(s, a->data, (a_is_row ? ne0 : total) * 4, &bi[1], &ar))
        return;
    if (b) {
        if (!bind_of(s, b->data, total * 4, &bi[2], &br)) return;
    } else {
        bi[2] = bi[1];
    }
    for (uint64_t base = 0; base < total; base += 256ull * MAX_GROUPS) {
        uint64_t n = total - base < 256ull * MAX_GROUPS ? total - base : 256ull * MAX_GROUPS;
        uint32_t pc[6] = {dr / 4, ar / 4, br / 4, (uint32_t)ne0, (uint32_t)total, (uint32_t)base};
        dispatch(s, name, 3, bi, pc, sizeof pc, (uint32_t)((n + 255) / 256), 1);
    }
}

static void vk_silu_mul(fitlm_backend *be, const fitlm_btensor *gate, const fitlm_btensor *up, int64_t n_tokens,
                        fitlm_btensor *out) {
    if (n_tokens <= 0) return;
    elementwise(st(be), "silu_mul", out, gate, up, (uint64_t)gate->ne0, (uint64_t)gate->ne0 * (uint64_t)n_tokens,
                false);
}

static void vk_add(fitlm_backend *be, fitlm_btensor *x, const fitlm_btensor *y, int64_t n_tokens) {
    if (n_tokens <= 0) return;
    elementwise(st(be), "add", x, y, NULL, (uint64_t)x->ne0, (uint64_t)x->ne0 * (uint64_t)n_tokens, false);
}

static void vk_add_bias(fitlm_backend *be, fitlm_btensor *x, const fitlm_btensor *b, int64_t n_tokens) {
    if (n_tokens <= 0) return;
    elementwise(st(be), "add_bias", x, b, NULL, (uint64_t)x->ne0, (uint64_t)x->ne0 * (uint64_t)n_tokens, true);
}

static void vk_embed(fitlm_backend *be, const fitlm_btensor *E, const int32_t *ids, int64_t n_tokens,
                     fitlm_btensor *out) {
    vk_state *s = st(be);
    if (s->failed || n_tokens <= 0) return;
    const char *suf = type_suffix(E->type);
    if (!suf) {
        vk_seterr(s, "Vulkan backend: embedding of type %s", fitlm_type_name(E->type));
        return;
    }
    char name[32];
    snprintf(name, sizeof name, "embed_%s", suf);
    uint64_t rb = row_bytes_of(E->type, E->ne0);
    uint32_t nu = (uint32_t)((E->ne0 + 31) / 32);
    VkDescriptorBufferInfo b[3];
    uint32_t orr;
    if (!bind_of(s, out->data, (uint64_t)n_tokens * (uint64_t)E->ne0 * 4, &b[1], &orr)) return;
    bind_args(s, &b[2]);
    bool whole = E->nbytes + s->align_off <= s->max_range;
    /* a matrix larger than one binding: one dispatch per token, bound at its row */
    int64_t step = whole ? MAX_GROUPS : 1;
    for (int64_t t0 = 0; t0 < n_tokens; t0 += step) {
        int64_t nt = n_tokens - t0 < step ? n_tokens - t0 : step;
        uint32_t wr;
        uint64_t ao;
        room_for(s, 1);
        if (whole) {
            if (!bind_tensor(s, E, &b[0], &wr)) return;
            ao = push_args(s, ids + t0, (uint64_t)nt * sizeof *ids);
        } else {
            int32_t zero = 0;
            if (!bind_of(s, (const uint8_t *)E->data + (uint64_t)ids[t0] * rb, rb, &b[0], &wr)) return;
            ao = push_args(s, &zero, sizeof zero);
        }
        if (ao == UINT64_MAX) return;
        uint32_t pc[7] = {wr, (uint32_t)rb, (uint32_t)E->ne0, (uint32_t)nt, (uint32_t)ao,
                          orr / 4 + (uint32_t)(t0 * E->ne0), 0};
        dispatch(s, name, 3, b, pc, sizeof pc, (nu + 63) / 64, (uint32_t)nt);
    }
}

/* ---- creation ---- */

static void vk_free(fitlm_backend *be) {
    if (!be) return;
    vk_state *s = st(be);
    if (s) {
        if (s->dev) {
            if (s->recording) flush(s);
            vkDeviceWaitIdle(s->dev);
            for (int i = 0; i < s->n_pipes; i++) vkDestroyPipeline(s->dev, s->pipes[i].pipe, NULL);
            for (uint32_t i = 0; i < s->n_allocs; i++)
                if (s->allocs[i].buf) free_alloc(s, &s->allocs[i]);
            if (s->pcache) vkDestroyPipelineCache(s->dev, s->pcache, NULL);
            if (s->dpool) vkDestroyDescriptorPool(s->dev, s->dpool, NULL);
            if (s->playout) vkDestroyPipelineLayout(s->dev, s->playout, NULL);
            if (s->dsl) vkDestroyDescriptorSetLayout(s->dev, s->dsl, NULL);
            if (s->fence) vkDestroyFence(s->dev, s->fence, NULL);
            if (s->cpool) vkDestroyCommandPool(s->dev, s->cpool, NULL);
            VkBuffer bufs[3] = {s->stage_buf, s->args_buf, s->dummy_buf};
            VkDeviceMemory mems[3] = {s->stage_mem, s->args_mem, s->dummy_mem};
            for (int i = 0; i < 3; i++) {
                if (bufs[i]) vkDestroyBuffer(s->dev, bufs[i], NULL);
                if (mems[i]) vkFreeMemory(s->dev, mems[i], NULL);
            }
            vkDestroyDevice(s->dev, NULL);
        }
        if (s->inst) vkDestroyInstance(s->inst, NULL);
        free(s->allocs);
        free(s->rope_pos);
        free(s);
    }
    free(be);
}

static int make_host_buffer(vk_state *s, uint64_t size, VkBuffer *buf, VkDeviceMemory *mem, uint8_t **map,
                            fitlm_error *err) {
    VkResult r = make_buffer(s, size, true, buf, mem);
    if (r != VK_SUCCESS) return fitlm_fail(err, "Vulkan: host-visible buffer of %llu bytes: %s",
                                           (unsigned long long)size, vk_result_str(r));
    if (map) {
        void *p;
        r = vkMapMemory(s->dev, *mem, 0, VK_WHOLE_SIZE, 0, &p);
        if (r != VK_SUCCESS) return fitlm_fail(err, "Vulkan: mapping a host buffer: %s", vk_result_str(r));
        *map = p;
    }
    return 0;
}

static int init_device(vk_state *s, int index, fitlm_error *err) {
    VkResult r = make_instance(&s->inst);
    if (r != VK_SUCCESS) {
        s->inst = VK_NULL_HANDLE;
        return fitlm_fail(err, "no Vulkan instance (%s): is a Vulkan driver (e.g. mesa-vulkan-drivers) installed?",
                          vk_result_str(r));
    }
    uint32_t n = 0;
    VkPhysicalDevice *pd = compute_devices(s->inst, &n);
    if (n == 0) return fitlm_fail(err, "no Vulkan device with a compute queue");
    if (index < 0) {
        index = 0;
        for (uint32_t i = 0; i < n; i++) {
            VkPhysicalDeviceProperties p;
            vkGetPhysicalDeviceProperties(pd[i], &p);
            if (p.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU) {
                index = (int)i;
                break;
            }
        }
    }
    if ((uint32_t)index >= n) {
        free(pd);
        return fitlm_fail(err, "no Vulkan device %d (there %s %u: see fitlm devices)", index, n == 1 ? "is" : "are", n);
    }
    s->phys = pd[index];
    free(pd);
    vkGetPhysicalDeviceProperties(s->phys, &s->props);
    vkGetPhysicalDeviceMemoryProperties(s->phys, &s->memp);
    s->max_range = s->props.limits.maxStorageBufferRange;
    s->align_off = s->props.limits.minStorageBufferOffsetAlignment;
    if (s->align_off < 4) s->align_off = 4;
    if (ALIGN % s->align_off) return fitlm_fail(err, "Vulkan: storage buffer offset alignment %llu is unsupported",
                                                (unsigned long long)s->align_off);
    VkPhysicalDeviceMaintenance3Properties m3 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES};
    VkPhysicalDeviceSubgroupProperties sg = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES,
                                             .pNext = &m3};
    VkPhysicalDeviceProperties2 p2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2, .pNext = &sg};
    vkGetPhysicalDeviceProperties2(s->phys, &p2);
    /* the matmul's 8 lanes of a row must sit in one subgroup: subgroups of a
     * multiple of 8 with shuffles in compute shaders (FITLM_VULKAN_NO_SUBGROUP=1:
     * the shared-memory reduction, e.g. to test it) */
    s->subgroup = sg.subgroupSize;
    const char *nosg = getenv("FITLM_VULKAN_NO_SUBGROUP");
    s->use_sg = sg.subgroupSize >= 8 && sg.subgroupSize % 8 == 0 &&
                (sg.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT) &&
                (sg.supportedOperations & VK_SUBGROUP_FEATURE_SHUFFLE_BIT) && !(nosg && *nosg && strcmp(nosg, "0"));
    s->max_alloc = m3.maxMemoryAllocationSize ? m3.maxMemoryAllocationSize : (1ull << 30);
    /* test hook: a smaller storage binding than the device's, so that the
     * tests split small tensors as a large model's are split on a GPU */
    const char *mr = getenv("FITLM_VULKAN_MAX_RANGE");
    if (mr && *mr) {
        uint64_t v = 0;
        if (fitlm_parse_size(mr, &v, err) || v < 4096 || v % s->align_off)
            return fitlm_fail(err, "FITLM_VULKAN_MAX_RANGE: '%s' is not a size of at least 4K in whole %llu-byte units",
                              mr, (unsigned long long)s->align_off);
        if (v < s->max_range) s->max_range = v;
    }
    /* the tiled matmul needs 256 invocations and 32 KiB of shared memory per
     * workgroup; FITLM_VULKAN_TILED_MIN=N: from N tokens on (default 16; 0: never) */
    s->tiled_min = 16;
    const char *tm = getenv("FITLM_VULKAN_TILED_MIN");
    if (tm && *tm) {
        char *end;
        unsigned long v = strtoul(tm, &end, 10);
        if (*end || v > 1000000)
            return fitlm_fail(err, "FITLM_VULKAN_TILED_MIN: '%s' is not a number of tokens", tm);
        s->tiled_min = (uint32_t)v;
    }
    if (s->props.limits.maxComputeWorkGroupInvocations < 256 || s->props.limits.maxComputeWorkGroupSize[0] < 256 ||
        s->props.limits.maxComputeSharedMemorySize < 32768)
        s->tiled_min = 0;
    /* opt-in (FITLM_VULKAN_COOPMAT=1): prefill matmuls on the device's
     * cooperative matrices (VK_NV_cooperative_matrix), when it has what
     * matmul_coopmat.comp needs (coopmat_select.c); F16 inputs, so off by default */
    const char *cm = getenv("FITLM_VULKAN_COOPMAT");
    s->coopmat_emulate = cm && !strcmp(cm, "emulate");
    if (!s->coopmat_emulate && fitlm_coopmat_parse_optin(cm, &s->coopmat_asked))
        return fitlm_fail(err, "FITLM_VULKAN_COOPMAT: '%s' is not 0 or 1", cm);
    fitlm_coopmat_shape cm_shapes[MAX_CM_SHAPES];
    fitlm_coopmat_caps cm_caps;
    coopmat_caps(s->inst, s->phys, &cm_caps, cm_shapes);
    s->coopmat = fitlm_coopmat_choose(&cm_caps, s->coopmat_asked, s->coopmat_why, sizeof s->coopmat_why) >= 0;
    if (s->coopmat_emulate) {
        /* test hook: the same shader's tiles with scalar products (F16 in shared memory) */
        if (!cm_caps.float16)
            return fitlm_fail(err, "FITLM_VULKAN_COOPMAT=emulate: %s has no shaderFloat16", s->props.deviceName);
        if (cm_caps.max_invocations < FITLM_COOPMAT_INVOCATIONS || cm_caps.shared_bytes < FITLM_COOPMAT_SHARED_BYTES)
            return fitlm_fail(err, "FITLM_VULKAN_COOPMAT=emulate: %s lacks 128 invocations or 26 KiB of shared memory",
                              s->props.deviceName);
        s->coopmat = s->coopmat_asked = true;
        snprintf(s->coopmat_why, sizeof s->coopmat_why,
                 "emulated by scalar code: FITLM_VULKAN_COOPMAT=emulate, a test hook");
    }
    for (uint32_t h = 0; h < s->memp.memoryHeapCount; h++)
        if ((s->memp.memoryHeaps[h].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
            s->memp.memoryHeaps[h].size > s->heap_bytes) {
            s->heap_bytes = s->memp.memoryHeaps[h].size;
            s->heap_index = h;
        }
    s->has_budget = has_dev_ext(s->phys, VK_EXT_MEMORY_BUDGET_EXTENSION_NAME);
    s->mem_limit = UINT64_MAX;
    /* test hook: FITLM_VK_FAULT=device_lost_after:N plays a device lost at the
     * (N + 1)-th submission, so the tests can exercise that path on lavapipe */
    s->fault_after = UINT64_MAX;
    const char *fault = getenv("FITLM_VK_FAULT");
    if (fault && *fault) {
        char *end;
        const char *pre = "device_lost_after:";
        if (strncmp(fault, pre, strlen(pre)))
            return fitlm_fail(err, "FITLM_VK_FAULT: '%s' is not device_lost_after:N", fault);
        const char *num = fault + strlen(pre);
        unsigned long long v = strtoull(num, &end, 10);
        if (!*num || *end || *num == '-' || v > 1000000000ull)
            return fitlm_fail(err, "FITLM_VK_FAULT: '%s' is not device_lost_after:N", fault);
        s->fault_after = v;
    }
    const char *lim = getenv("FITLM_VULKAN_MEM_LIMIT");
    if (lim && *lim) {
        if (fitlm_parse_size(lim, &s->mem_limit, err))
            return fitlm_fail(err, "FITLM_VULKAN_MEM_LIMIT: '%s' is not a size", lim);
        if (s->mem_limit < s->heap_bytes) s->heap_bytes = s->mem_limit;
    }
    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(s->phys, &nq, NULL);
    VkQueueFamilyProperties qf[32];
    if (nq > 32) nq = 32;
    vkGetPhysicalDeviceQueueFamilyProperties(s->phys, &nq, qf);
    s->qfam = UINT32_MAX;
    for (uint32_t q = 0; q < nq && s->qfam == UINT32_MAX; q++)
        if (qf[q].queueFlags & VK_QUEUE_COMPUTE_BIT) s->qfam = q;
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
                                   .queueFamilyIndex = s->qfam,
                                   .queueCount = 1,
                                   .pQueuePriorities = &prio};
    VkDeviceCreateInfo dci = {.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, .queueCreateInfoCount = 1,
                              .pQueueCreateInfos = &qci};
    /* the extensions and features of matmul_coopmat, only when it is used */
    const char *cm_exts[3] = {VK_NV_COOPERATIVE_MATRIX_EXTENSION_NAME, VK_KHR_SHADER_FLOAT16_INT8_EXTENSION_NAME,
                              VK_KHR_VULKAN_MEMORY_MODEL_EXTENSION_NAME};
    VkPhysicalDeviceVulkanMemoryModelFeatures cm_vmm = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_MEMORY_MODEL_FEATURES, .vulkanMemoryModel = VK_TRUE};
    VkPhysicalDeviceShaderFloat16Int8Features cm_f16 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SHADER_FLOAT16_INT8_FEATURES, .pNext = &cm_vmm,
        .shaderFloat16 = VK_TRUE};
    VkPhysicalDeviceCooperativeMatrixFeaturesNV cm_feat = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_COOPERATIVE_MATRIX_FEATURES_NV, .pNext = &cm_f16,
        .cooperativeMatrix = VK_TRUE};
    VkPhysicalDeviceFeatures2 cm_f2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, .pNext = &cm_feat};
    if (s->coopmat_emulate) { /* only shaderFloat16 */
        cm_f16.pNext = NULL;
        cm_f2.pNext = &cm_f16;
        dci.pNext = &cm_f2;
        dci.enabledExtensionCount = 1;
        dci.ppEnabledExtensionNames = &cm_exts[1];
    } else if (s->coopmat) {
        dci.pNext = &cm_f2;
        dci.enabledExtensionCount = 3;
        dci.ppEnabledExtensionNames = cm_exts;
    }
    r = vkCreateDevice(s->phys, &dci, NULL, &s->dev);
    if (r != VK_SUCCESS && s->coopmat && !s->coopmat_emulate) { /* the driver refuses them after all: without */
        s->coopmat = false;
        snprintf(s->coopmat_why, sizeof s->coopmat_why, "opening the device with VK_NV_cooperative_matrix failed (%s)",
                 vk_result_str(r));
        dci.pNext = NULL;
        dci.enabledExtensionCount = 0;
        dci.ppEnabledExtensionNames = NULL;
        r = vkCreateDevice(s->phys, &dci, NULL, &s->dev);
    }
    if (r != VK_SUCCESS) {
        s->dev = VK_NULL_HANDLE;
        return fitlm_fail(err, "Vulkan: cannot open %s (%s)", s->props.deviceName, vk_result_str(r));
    }
    vkGetDeviceQueue(s->dev, s->qfam, 0, &s->queue);
    VkCommandPoolCreateInfo cpi = {.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO, .queueFamilyIndex = s->qfam};
    VkCommandBufferAllocateInfo cai = {.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
                                       .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                                       .commandBufferCount = 1};
    VkFenceCreateInfo fci = {.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VkDescriptorSetLayoutBinding lb[N_BINDINGS];
    for (int i = 0; i < N_BINDINGS; i++)
        lb[i] = (VkDescriptorSetLayoutBinding){.binding = (uint32_t)i,
                                               .descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                                               .descriptorCount = 1,
                                               .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT};
    VkDescriptorSetLayoutCreateInfo dli = {
        .sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, .bindingCount = N_BINDINGS, .pBindings = lb};
    VkPushConstantRange pcr = {.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = PC_BYTES};
    VkDescriptorPoolSize ps = {.type = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, .descriptorCount = DESC_SETS * N_BINDINGS};
    VkDescriptorPoolCreateInfo dpi = {.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO,
                                      .maxSets = DESC_SETS,
                                      .poolSizeCount = 1,
                                      .pPoolSizes = &ps};
    VkPipelineCacheCreateInfo pci = {.sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO};
    if ((r = vkCreateCommandPool(s->dev, &cpi, NULL, &s->cpool)) != VK_SUCCESS) goto fail;
    cai.commandPool = s->cpool;
    if ((r = vkAllocateCommandBuffers(s->dev, &cai, &s->cmd)) != VK_SUCCESS) goto fail;
    if ((r = vkCreateFence(s->dev, &fci, NULL, &s->fence)) != VK_SUCCESS) goto fail;
    if ((r = vkCreateDescriptorSetLayout(s->dev, &dli, NULL, &s->dsl)) != VK_SUCCESS) goto fail;
    VkPipelineLayoutCreateInfo pli = {.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
                                      .setLayoutCount = 1,
                                      .pSetLayouts = &s->dsl,
                                      .pushConstantRangeCount = 1,
                                      .pPushConstantRanges = &pcr};
    if ((r = vkCreatePipelineLayout(s->dev, &pli, NULL, &s->playout)) != VK_SUCCESS) goto fail;
    if ((r = vkCreateDescriptorPool(s->dev, &dpi, NULL, &s->dpool)) != VK_SUCCESS) goto fail;
    if ((r = vkCreatePipelineCache(s->dev, &pci, NULL, &s->pcache)) != VK_SUCCESS) goto fail;
    if (make_host_buffer(s, STAGE_BYTES, &s->stage_buf, &s->stage_mem, &s->stage_map, err) ||
        make_host_buffer(s, ARGS_BYTES, &s->args_buf, &s->args_mem, &s->args_map, err) ||
        make_host_buffer(s, 256, &s->dummy_buf, &s->dummy_mem, NULL, err))
        return -1;
    return 0;
fail:
    return fitlm_fail(err, "Vulkan: setting up %s failed (%s)", s->props.deviceName, vk_result_str(r));
}

fitlm_backend *fitlm_backend_vulkan_new(int index, fitlm_error *err) {
    fitlm_backend *be = calloc(1, sizeof *be);
    vk_state *s = calloc(1, sizeof *s);
    if (!be || !s) {
        free(be);
        free(s);
        fitlm_fail(err, "out of memory");
        return NULL;
    }
    be->state = s;
    if (init_device(s, index, err)) {
        vk_free(be);
        return NULL;
    }
    be->name = "vulkan";
    be->device = FITLM_DEVICE_VULKAN;
    be->free = vk_free;
    be->weight_type_supported = vk_weight_type_supported;
    be->alloc = vk_alloc_t;
    be->release = vk_release;
    be->prepare_weight = vk_prepare_weight;
    be->reserve = vk_reserve;
    be->scratch_bytes = vk_scratch_bytes;
    be->upload = vk_upload;
    be->download = vk_download;
    be->clear = vk_clear;
    be->sync = vk_sync;
    be->matmul = vk_matmul;
    be->matmul_multi = vk_matmul_multi;
    be->rmsnorm = vk_rmsnorm;
    be->rope = vk_rope;
    be->kv_store = vk_kv_store;
    be->attention = vk_attention;
    be->get_rows = vk_get_rows;
    be->copy_slots = vk_copy_slots;
    be->silu_mul = vk_silu_mul;
    be->add = vk_add;
    be->add_bias = vk_add_bias;
    be->embed = vk_embed;
    return be;
}

void fitlm_backend_vulkan_memory(const fitlm_backend *be, uint64_t *heap_bytes, uint64_t *held_bytes) {
    const vk_state *s = st(be);
    if (heap_bytes) *heap_bytes = s->heap_bytes;
    if (held_bytes) *held_bytes = s->held_bytes;
}

const char *fitlm_backend_vulkan_device_name(const fitlm_backend *be) {
    return st(be)->props.deviceName;
}

uint64_t fitlm_backend_vulkan_tiled_dispatches(const fitlm_backend *be) {
    return st(be)->n_tiled;
}

bool fitlm_backend_vulkan_coopmat(const fitlm_backend *be, bool *asked, const char **why) {
    const vk_state *s = st(be);
    if (asked) *asked = s->coopmat_asked;
    if (why) *why = s->coopmat_why;
    return s->coopmat;
}

uint64_t fitlm_backend_vulkan_coopmat_dispatches(const fitlm_backend *be) {
    return st(be)->n_coopmat;
}

uint64_t fitlm_backend_vulkan_free_memory(const fitlm_backend *be, char *how, size_t how_size) {
    const vk_state *s = st(be);
    uint64_t heap = s->memp.memoryHeaps[s->heap_index].size, free_b;
    if (s->has_budget) {
        VkPhysicalDeviceMemoryBudgetPropertiesEXT mb = {
            .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_BUDGET_PROPERTIES_EXT};
        VkPhysicalDeviceMemoryProperties2 mp2 = {.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MEMORY_PROPERTIES_2,
                                                  .pNext = &mb};
        vkGetPhysicalDeviceMemoryProperties2(s->phys, &mp2);
        uint64_t budget = mb.heapBudget[s->heap_index], usage = mb.heapUsage[s->heap_index];
        /* 5% of it kept: the budget is an estimate, and device allocations come in 256 MiB chunks */
        free_b = budget > usage ? (budget - usage) / 20 * 19 : 0;
        snprintf(how, how_size,
                 "VK_EXT_memory_budget: 95%% of budget %.1f MiB - used %.1f MiB, of the %.1f MiB heap",
                 (double)budget / 1048576.0, (double)usage / 1048576.0, (double)heap / 1048576.0);
    } else {
        free_b = heap / 10 * 9;
        snprintf(how, how_size, "no VK_EXT_memory_budget: 90%% of the %.1f MiB heap", (double)heap / 1048576.0);
    }
    if (s->mem_limit != UINT64_MAX) {
        uint64_t left = s->mem_limit > s->held_bytes ? s->mem_limit - s->held_bytes : 0;
        if (left < free_b) {
            free_b = left;
            snprintf(how, how_size, "FITLM_VULKAN_MEM_LIMIT %.1f MiB - %.1f MiB held", (double)s->mem_limit / 1048576.0,
                     (double)s->held_bytes / 1048576.0);
        }
    }
    return free_b;
}

uint64_t fitlm_backend_vulkan_alloc_align(void) {
    return ALIGN;
}
