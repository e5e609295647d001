/* The few threading primitives the engine uses: a mutex, one thread started and joined, a yield.
 * POSIX threads, or Win32 directly on Windows (SRWLOCK, _beginthreadex), so that a Windows build
 * with MSVC needs no pthreads library. */
#ifndef FASTMSG_THREAD_H
#define FASTMSG_THREAD_H

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN /* (and so no winsock.h, which would clash with net/sock.h's winsock2.h) */
#endif
#include <windows.h>
#include <errno.h>
#include <process.h>
#include <stdlib.h>

typedef SRWLOCK fm_mutex; /* (not recursive, as the default pthread mutex the engine relies on) */
#define FM_MUTEX_INIT SRWLOCK_INIT
static inline int fm_mutex_init(fm_mutex *m) {
    InitializeSRWLock(m);
    return 0;
}
static inline void fm_mutex_destroy(fm_mutex *m) { (void)m; } /* (an SRWLOCK holds no resources) */
static inline void fm_mutex_lock(fm_mutex *m) { AcquireSRWLockExclusive(m); }
static inline void fm_mutex_unlock(fm_mutex *m) { ReleaseSRWLockExclusive(m); }

typedef HANDLE fm_thread;
typedef struct {
    void *(*fn)(void *);
    void *arg;
} fm_thread_start_;
static unsigned __stdcall fm_thread_trampoline_(void *p) {
    fm_thread_start_ s = *(fm_thread_start_ *)p;
    free(p);
    s.fn(s.arg);
    return 0;
}
/* 0, or an errno value. (_beginthreadex, not CreateThread: the C runtime's per-thread state.) */
static inline int fm_thread_start(fm_thread *t, void *(*fn)(void *), void *arg) {
    fm_thread_start_ *s = malloc(sizeof *s);
    if (!s) return ENOMEM;
    s->fn = fn;
    s->arg = arg;
    *t = (HANDLE)_beginthreadex(NULL, 0, fm_thread_trampoline_, s, 0, NULL);
    if (!*t) {
        free(s);
        return EAGAIN;
    }
    return 0;
}
static inline void fm_thread_join(fm_thread t) {
    WaitForSingleObject(t, INFINITE);
    CloseHandle(t);
}
static inline void fm_yield(void) { SwitchToThread(); }

#else
#include <pthread.h>
#include <sched.h>

typedef pthread_mutex_t fm_mutex;
#define FM_MUTEX_INIT PTHREAD_MUTEX_INITIALIZER
static inline int fm_mutex_init(fm_mutex *m) { return pthread_mutex_init(m, NULL); }
static inline void fm_mutex_destroy(fm_mutex *m) { pthread_mutex_destroy(m); }
static inline void fm_mutex_lock(fm_mutex *m) { pthread_mutex_lock(m); }
static inline void fm_mutex_unlock(fm_mutex *m) { pthread_mutex_unlock(m); }

typedef pthread_t fm_thread;
static inline int fm_thread_start(fm_thread *t, void *(*fn)(void *), void *arg) {
    return pthread_create(t, NULL, fn, arg);
}
static inline void fm_thread_join(fm_thread t) { pthread_join(t, NULL); }
static inline void fm_yield(void) { sched_yield(); }
#endif

#endif
