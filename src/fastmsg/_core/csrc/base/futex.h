/* Sleep on a 32-bit word until another thread or process changes it, and wake such sleepers.
 * Each platform's wait is keyed by the memory, not the address, so it works on a word in shared
 * memory:
 *   Linux    futex(2) without FUTEX_PRIVATE_FLAG;
 *   macOS    os_sync_wait_on_address with the SHARED flags where the system has it (14.4 on),
 *            else __ulock_wait (private, but stable since 10.12 and used by libc++);
 *   FreeBSD  _umtx_op's UMTX_OP_WAIT_UINT / UMTX_OP_WAKE.
 * Elsewhere (and on a macOS without either call) a portable fallback sleeps in growing steps and
 * lets the caller re-check (Windows' WaitOnAddress works within one process only). */
#ifndef FASTMSG_FUTEX_H
#define FASTMSG_FUTEX_H

#include <stdint.h>

/* Sleeps while *word == expected, at most `timeout_ns` (negative: no limit). `attempt` counts the
 * caller's sleeps so far and sets the fallback's step. Returns 0 after a wake-up, a timeout, a
 * changed word or a spurious return (the caller re-checks its condition either way), or EINTR
 * when a signal arrived. */
int fastmsg_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns, unsigned attempt);

/* Wakes every sleeper on `word`. */
void fastmsg_futex_wake_all(uint32_t *word);

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t fastmsg_monotonic_ns(void);

#endif
