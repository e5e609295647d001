/* See busy_poll.h: whether the thread was switched out (Linux counts it per thread). */
#define _GNU_SOURCE
#include "engine/busy_poll.h"

#ifdef __linux__
#include <sys/resource.h>

long fm_thread_switches(void) {
    struct rusage u;
    if (getrusage(RUSAGE_THREAD, &u) != 0) return -1;
    return u.ru_nvcsw + u.ru_nivcsw;
}
#else
long fm_thread_switches(void) { return -1; }
#endif
