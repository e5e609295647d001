/* SipHash-1-3 of many 8-byte keys at once, the first step of routing a uint64 array: one kernel
 * per instruction set, all with the same results, one chosen at init from what the CPU runs. */
#ifndef FASTMSG_ROUTE_KEYHASH_H
#define FASTMSG_ROUTE_KEYHASH_H

#include <stddef.h>
#include <stdint.h>

#include "route/siphash.h"

/* out[i] = fm_siphash13_u64(key, keys[i]) for i < count. */
typedef void (*fm_keyhash_kernel)(fm_sipkey key, const uint64_t *keys, size_t count, uint64_t *out);

void fm_keyhash_portable(fm_sipkey key, const uint64_t *keys, size_t count, uint64_t *out);
#if defined(FASTMSG_X86_64)
void fm_keyhash_avx2(fm_sipkey key, const uint64_t *keys, size_t count, uint64_t *out);
#endif

/* The kernel in use (portable until init), its name, and the kernels of this build fastest first
 * (NULL-terminated). init selects the fastest that this CPU runs; select forces one by name and
 * returns 0, -1 for an unknown name or -2 if this CPU cannot run it; runs says whether it can. */
extern fm_keyhash_kernel fm_keyhash_active;
const char *fm_keyhash_name(void);
const char *const *fm_keyhash_kernel_names(void);
void fm_keyhash_init(void);
int fm_keyhash_select(const char *name);
int fm_keyhash_runs(const char *name);

#endif
