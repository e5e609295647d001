/* keyhash.h: the portable kernel and the choice among kernels. */
#include "route/keyhash.h"

#include <string.h>

#include "base/common.h"
#include "base/cpu_features.h"

void fm_keyhash_portable(fm_sipkey key, const uint64_t *keys, size_t count, uint64_t *out) {
    for (size_t i = 0; i < count; i++) out[i] = fm_siphash13_u64(key, keys[i]);
}

typedef struct {
    const char *name;
    fm_keyhash_kernel fn;
    int (*runs_here)(const fastmsg_cpu_features *);
} kernel_entry;

static int always(const fastmsg_cpu_features *f) { (void)f; return 1; }
#if defined(FASTMSG_X86_64)
static int has_avx2(const fastmsg_cpu_features *f) { return f->avx2; }
#endif

/* In order of preference. */
static const kernel_entry kernels[] = {
#if defined(FASTMSG_X86_64)
    {"avx2", fm_keyhash_avx2, has_avx2},
#endif
    {"portable", fm_keyhash_portable, always},
};
#define N_KERNELS (sizeof kernels / sizeof kernels[0])

static const char *names[N_KERNELS + 1];
static const char *active_name = "portable";
fm_keyhash_kernel fm_keyhash_active = fm_keyhash_portable;

static const kernel_entry *find(const char *name) {
    for (size_t i = 0; i < N_KERNELS; i++)
        if (strcmp(kernels[i].name, name) == 0) return &kernels[i];
    return NULL;
}

/* Called from module init, which the import lock serialises. */
void fm_keyhash_init(void) {
    static int done = 0;
    if (done) return;
    for (size_t i = 0; i < N_KERNELS; i++) names[i] = kernels[i].name;
    for (size_t i = 0; i < N_KERNELS; i++) {
        if (kernels[i].runs_here(fastmsg_cpu())) {
            fm_keyhash_select(kernels[i].name);
            break;
        }
    }
    done = 1;
}

int fm_keyhash_select(const char *name) {
    const kernel_entry *k = find(name);
    if (!k) return -1;
    if (!k->runs_here(fastmsg_cpu())) return -2;
    fm_keyhash_active = k->fn;
    active_name = k->name;
    return 0;
}

const char *fm_keyhash_name(void) { return active_name; }

const char *const *fm_keyhash_kernel_names(void) { return names; }

int fm_keyhash_runs(const char *name) {
    const kernel_entry *k = find(name);
    return k && k->runs_here(fastmsg_cpu());
}
