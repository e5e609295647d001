/* Chooses the CRC32C kernel once, from what the CPU can run. */
#include "base/cpu_features.h"
#include "crc32c/crc32c.h"
#include "base/common.h"

typedef struct {
    const char *name;
    fastmsg_crc32c_kernel fn, short_fn; /* short_fn: fn's own loop below FASTMSG_CRC32C_SHORT_INPUT */
    int (*runs_here)(const fastmsg_cpu_features *);
} kernel_entry;

static int always(const fastmsg_cpu_features *f) { (void)f; return 1; }
#if defined(FASTMSG_X86_64)
static int has_sse42(const fastmsg_cpu_features *f) { return f->sse42; }
static int has_pclmul(const fastmsg_cpu_features *f) { return f->sse42 && f->pclmul; }
static int has_vpclmul(const fastmsg_cpu_features *f) { return f->sse42 && f->pclmul && f->vpclmul; }
#endif
#if defined(FASTMSG_AARCH64)
static int has_arm_crc(const fastmsg_cpu_features *f) { return f->arm_crc32; }
#endif

/* In order of preference. */
static const kernel_entry kernels[] = {
#if defined(FASTMSG_X86_64)
    {"vpclmul", fastmsg_crc32c_vpclmul, fastmsg_crc32c_sse42_short, has_vpclmul},
    {"pclmul", fastmsg_crc32c_pclmul, fastmsg_crc32c_sse42_short, has_pclmul},
    {"sse42", fastmsg_crc32c_sse42, fastmsg_crc32c_sse42_short, has_sse42},
#endif
#if defined(FASTMSG_AARCH64)
    {"armv8", fastmsg_crc32c_armv8, fastmsg_crc32c_armv8_short, has_arm_crc},
#endif
    {"portable", fastmsg_crc32c_portable, fastmsg_crc32c_portable, always},
};
#define N_KERNELS (sizeof kernels / sizeof kernels[0])

static const char *names[N_KERNELS + 1];
static const char *active_name = "portable";
fastmsg_crc32c_kernel fastmsg_crc32c_active = fastmsg_crc32c_portable;
fastmsg_crc32c_kernel fastmsg_crc32c_active_short = fastmsg_crc32c_portable;

static void use(const kernel_entry *k) {
    fastmsg_crc32c_active = k->fn;
    fastmsg_crc32c_active_short = k->short_fn;
    active_name = k->name;
}

static const kernel_entry *find(const char *name) {
    for (size_t i = 0; i < N_KERNELS; i++)
        if (strcmp(kernels[i].name, name) == 0) return &kernels[i];
    return NULL;
}

/* Called from module init, which the import lock serialises. */
void fastmsg_crc32c_init(void) {
    static int done = 0;
    if (done) return;
    fastmsg_crc32c_portable_init();
    for (size_t i = 0; i < N_KERNELS; i++) names[i] = kernels[i].name;
    for (size_t i = 0; i < N_KERNELS; i++) {
        if (kernels[i].runs_here(fastmsg_cpu())) {
            use(&kernels[i]);
            break;
        }
    }
    done = 1;
}

int fastmsg_crc32c_select(const char *name) {
    const kernel_entry *k = find(name);
    if (!k) return -1;
    if (!k->runs_here(fastmsg_cpu())) return -2;
    use(k);
    return 0;
}

const char *fastmsg_crc32c_name(void) { return active_name; }

const char *const *fastmsg_crc32c_kernel_names(void) { return names; }

fastmsg_crc32c_kernel fastmsg_crc32c_kernel_by_name(const char *name) {
    const kernel_entry *k = find(name);
    return (k && k->runs_here(fastmsg_cpu())) ? k->fn : NULL;
}
