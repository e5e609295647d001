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

/* Probes the CPU and selects the fastest kernel. Idempotent. */
void fm_keyhash_init(void);

/* Forces a kernel by name: 0, -1 for an unknown name, -2 if this CPU cannot run it. */
int fm_keyhash_select(const char *name);

const char *fm_keyhash_name(void);

/* Kernels compiled into this build, fastest first; NULL-terminated. */
const char *const *fm_keyhash_kernel_names(void);

/* 1 if this CPU runs the named kernel. */
int fm_keyhash_runs(const char *name);

extern fm_keyhash_kernel fm_keyhash_active;

#endif
