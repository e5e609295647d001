/* futex.h: the platform part of the ring's blocking waits. */
/* syscall, ftruncate, clock_gettime, shm_open are POSIX/GNU, hidden by -std=c11 otherwise. */
#define _GNU_SOURCE
#include "base/futex.h"

#include <errno.h>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int fastmsg_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns, unsigned attempt) {
    struct timespec ts, *tsp = NULL;
    (void)attempt;
    if (timeout_ns >= 0) {
        ts.tv_sec = (time_t)(timeout_ns / 1000000000);
        ts.tv_nsec = (long)(timeout_ns % 1000000000);
        tsp = &ts;
    }
    if (syscall(SYS_futex, word, FUTEX_WAIT, expected, tsp, NULL, 0) == -1 && errno == EINTR)
        return EINTR;
    return 0; /* woken, EAGAIN (word changed) or ETIMEDOUT: the caller re-checks */
}

void fastmsg_futex_wake_all(uint32_t *word) { syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0); }

#elif defined(__FreeBSD__)
#include <limits.h>
#include <string.h>
#include <sys/types.h>
#include <sys/umtx.h>
#include <time.h>

/* _umtx_op without the _PRIVATE ops: keyed by the memory object, so shared memory works. */
int fastmsg_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns, unsigned attempt) {
    struct _umtx_time t;
    void *size = NULL, *tp = NULL;
    (void)attempt;
    if (timeout_ns >= 0) {
        memset(&t, 0, sizeof t); /* _flags 0: a relative timeout */
        t._timeout.tv_sec = (time_t)(timeout_ns / 1000000000);
        t._timeout.tv_nsec = (long)(timeout_ns % 1000000000);
        t._clockid = CLOCK_MONOTONIC;
        size = (void *)(uintptr_t)sizeof t;
        tp = &t;
    }
    if (_umtx_op(word, UMTX_OP_WAIT_UINT, expected, size, tp) == -1 && errno == EINTR) return EINTR;
    return 0; /* woken, changed or timed out: the caller re-checks */
}

void fastmsg_futex_wake_all(uint32_t *word) { _umtx_op(word, UMTX_OP_WAKE, INT_MAX, NULL, NULL); }

#elif !defined(_WIN32) /* macOS's waits, or short sleeps doubling from 16 us to 1 ms (Windows: futex_win.c) */

#include <time.h>

/* The fallback wherever the platform's wait is missing: a short sleep, doubling from 16 us to
 * 1 ms with the caller's attempts; the caller re-checks the word after it. */
static int sleep_step(int64_t timeout_ns, unsigned attempt) {
    int64_t ns = (int64_t)16000 << (attempt < 6 ? attempt : 6);
    if (ns > 1000000) ns = 1000000;
    if (timeout_ns >= 0 && timeout_ns < ns) ns = timeout_ns;
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    return nanosleep(&ts, NULL) == -1 && errno == EINTR ? EINTR : 0;
}

#if defined(__APPLE__)
#include <stddef.h>

/* macOS 14.4 and later: os_sync_wait_on_address and its wake, public API. Declared here, under
 * names of this file's own (asm labels), so that they never clash with an SDK header, and weakly,
 * so that one binary also runs on older systems, where they are NULL. The SHARED flags key the
 * wait by the memory object, not the address, as a ring in shared memory needs. */
#define FM_OS_SYNC_SHARED 1u /* OS_SYNC_WAIT_ON_ADDRESS_SHARED, OS_SYNC_WAKE_BY_ADDRESS_SHARED */
#define FM_OS_CLOCK_MACH_ABSOLUTE_TIME 32u
extern int fm_os_sync_wait(void *addr, uint64_t value, size_t size, uint32_t flags)
    __asm__("_os_sync_wait_on_address") __attribute__((weak_import));
extern int fm_os_sync_wait_timeout(void *addr, uint64_t value, size_t size, uint32_t flags, uint32_t clock,
                                   uint64_t timeout_ns) __asm__("_os_sync_wait_on_address_with_timeout")
    __attribute__((weak_import));
extern int fm_os_sync_wake_all(void *addr, size_t size, uint32_t flags)
    __asm__("_os_sync_wake_by_address_all") __attribute__((weak_import));
#if defined(__has_include)
#if __has_include(<os/os_sync_wait_on_address.h>)
#include <os/os_sync_wait_on_address.h> /* only to check the values above */
_Static_assert(OS_SYNC_WAIT_ON_ADDRESS_SHARED == FM_OS_SYNC_SHARED, "wait flag");
_Static_assert(OS_SYNC_WAKE_BY_ADDRESS_SHARED == FM_OS_SYNC_SHARED, "wake flag");
_Static_assert(OS_CLOCK_MACH_ABSOLUTE_TIME == FM_OS_CLOCK_MACH_ABSOLUTE_TIME, "clock");
#endif
#endif

/* Before it (macOS 10.12 on): __ulock, the private call beneath it, stable and used by libc++'s
 * atomic waits. No header declares it. Timeouts in microseconds, 0 for none; with ULF_NO_ERRNO
 * it returns -errno. */
extern int __ulock_wait(uint32_t operation, void *addr, uint64_t value, uint32_t timeout_us) __attribute__((weak_import));
extern int __ulock_wake(uint32_t operation, void *addr, uint64_t wake_value) __attribute__((weak_import));
#define UL_COMPARE_AND_WAIT_SHARED 3u
#define ULF_WAKE_ALL 0x100u
#define ULF_NO_ERRNO 0x01000000u

static int have_os_sync(void) { return fm_os_sync_wait && fm_os_sync_wait_timeout && fm_os_sync_wake_all; }

int fastmsg_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns, unsigned attempt) {
    if (timeout_ns == 0) return 0; /* (nothing to wait for; __ulock would read 0 as no limit) */
    if (have_os_sync()) {
        int rc = timeout_ns < 0 ? fm_os_sync_wait(word, expected, sizeof *word, FM_OS_SYNC_SHARED)
                                : fm_os_sync_wait_timeout(word, expected, sizeof *word, FM_OS_SYNC_SHARED,
                                                          FM_OS_CLOCK_MACH_ABSOLUTE_TIME, (uint64_t)timeout_ns);
        return rc < 0 && errno == EINTR ? EINTR : 0;
    }
    if (__ulock_wait) {
        int64_t us = timeout_ns < 0 ? 0 : (timeout_ns + 999) / 1000; /* (a longer wait returns early) */
        int rc = __ulock_wait(UL_COMPARE_AND_WAIT_SHARED | ULF_NO_ERRNO, word, expected,
                              us > UINT32_MAX ? UINT32_MAX : (uint32_t)us);
        return rc == -EINTR ? EINTR : 0;
    }
    return sleep_step(timeout_ns, attempt);
}

void fastmsg_futex_wake_all(uint32_t *word) {
    if (have_os_sync())
        fm_os_sync_wake_all(word, sizeof *word, FM_OS_SYNC_SHARED);
    else if (__ulock_wake)
        __ulock_wake(UL_COMPARE_AND_WAIT_SHARED | ULF_WAKE_ALL | ULF_NO_ERRNO, word, 0);
}

#else

int fastmsg_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns, unsigned attempt) {
    (void)word;
    (void)expected;
    return sleep_step(timeout_ns, attempt);
}

void fastmsg_futex_wake_all(uint32_t *word) { (void)word; }

#endif
#endif

#if defined(_WIN32)
#include <windows.h>
int64_t fastmsg_monotonic_ns(void) {
    static LARGE_INTEGER freq;
    LARGE_INTEGER now;
    if (!freq.QuadPart)
        QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    return (int64_t)((double)now.QuadPart * 1e9 / (double)freq.QuadPart);
}
#else
#include <time.h>
int64_t fastmsg_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
#endif
