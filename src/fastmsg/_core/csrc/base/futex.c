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

#elif !defined(_WIN32) /* portable fallback: short sleeps, doubling from 16 us to 1 ms (Windows: futex_win.c) */

#if defined(_WIN32)
#include <windows.h>
#else
#include <time.h>
#endif

static int64_t fallback_step_ns(unsigned attempt) {
    int64_t step = (int64_t)16000 << (attempt < 6 ? attempt : 6);
    return step < 1000000 ? step : 1000000;
}

int fastmsg_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns, unsigned attempt) {
    int64_t ns = fallback_step_ns(attempt);
    (void)word;
    (void)expected;
    if (timeout_ns >= 0 && timeout_ns < ns)
        ns = timeout_ns;
#if defined(_WIN32)
    Sleep((DWORD)((ns + 999999) / 1000000));
    return 0;
#else
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    return nanosleep(&ts, NULL) == -1 && errno == EINTR ? EINTR : 0;
#endif
}

void fastmsg_futex_wake_all(uint32_t *word) { (void)word; }

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
