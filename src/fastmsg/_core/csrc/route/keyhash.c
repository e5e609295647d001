/* keyhash.h: the portable kernel and the choice among kernels. */
#include "route/keyhash.h"

#include <string.h>

#include "base/common.h"
#include "base/cpu_features.h"

void fm_keyhash_portable(fm_sipkey key, const uint64_t *keys, size_t count, uint64_t *out) {
    for (size_t i = 0; i < count; i++) out[i] = fm_siphash13_u64(key, keys[i]);
}

/* Two kernels, so a plain switch by name rather than a table. */
static int runs(const char *name, fm_keyhash_kernel *fn) {
    if (strcmp(name, "portable") == 0) {
        *fn = fm_keyhash_portable;
        return 1;
    }
#if defined(FASTMSG_X86_64)
    if (strcmp(name, "avx2") == 0) {
        *fn = fm_keyhash_avx2;
        return fastmsg_cpu()->avx2 ? 1 : 0;
    }
#endif
    return -1;
}

static const char *const names[] = {
#if defined(FASTMSG_X86_64)
    "avx2",
#endif
    "portable", NULL,
};
static const char *active_name = "portable";
fm_keyhash_kernel fm_keyhash_active = fm_keyhash_portable;

int fm_keyhash_select(const char *name) {
    fm_keyhash_kernel fn;
    int rc = runs(name, &fn);
    if (rc != 1) return rc == 0 ? -2 : -1;
    for (size_t i = 0; names[i]; i++)
        if (strcmp(names[i], name) == 0) active_name = names[i];
    fm_keyhash_active = fn;
    return 0;
}

/* Called from module init, which the import lock serialises: the first kernel that runs here. */
void fm_keyhash_init(void) {
    for (size_t i = 0; names[i]; i++)
        if (fm_keyhash_select(names[i]) == 0) return;
}

const char *fm_keyhash_name(void) { return active_name; }

const char *const *fm_keyhash_kernel_names(void) { return names; }

int fm_keyhash_runs(const char *name) {
    fm_keyhash_kernel fn;
    return runs(name, &fn) == 1;
}
