/* The receiver's sessions: for each sender it has seen, the next sequence number it expects, so
 * that a sender that reconnects resumes there (WELCOME says it) and resent records are skipped.
 *
 * Each session is a block of its own, found through a hash table keyed by a seeded mix of its id
 * (ids are random, but a hostile peer picks its own). A session held by a live connection stays;
 * idle ones are kept on a list in the order they went idle and, beyond the bound, the oldest is
 * forgotten: its sender, if it comes back, starts a new session at the sequence number its HELLO
 * gives, so nothing it sends is taken for a duplicate. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#ifdef _WIN32
#include "net/sock.h" /* (winsock2.h before windows.h) */
#include <bcrypt.h>
#if defined(_MSC_VER)
#pragma comment(lib, "bcrypt.lib")
#endif
#else
#include <unistd.h>
#ifdef __APPLE__
#include <sys/random.h> /* getentropy (glibc declares it in unistd.h) */
#endif
#endif

#include "engine/receiver_internal.h"

#define BUCKETS_MIN 64u

static uint64_t mix64(uint64_t x) { /* splitmix64's finaliser: a bijection that spreads every bit */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t random_seed(const void *salt) {
#if defined(__linux__) || defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__)
    uint64_t seed = 0;
    if (getentropy(&seed, sizeof seed) == 0 && seed) return seed;
#elif defined(_WIN32)
    uint64_t seed = 0;
    if (BCRYPT_SUCCESS(BCryptGenRandom(NULL, (PUCHAR)&seed, sizeof seed, BCRYPT_USE_SYSTEM_PREFERRED_RNG)) && seed)
        return seed;
    FILETIME ft; /* (100 ns units: Windows has no clock_gettime of its own) */
    GetSystemTimePreciseAsFileTime(&ft);
    return mix64(((uint64_t)ft.dwHighDateTime << 32 | ft.dwLowDateTime) ^ (uint64_t)(uintptr_t)salt);
#endif
#ifndef _WIN32
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)(uintptr_t)salt);
#endif
}

static fm_session **bucket(const fm_session_table *t, uint64_t id) {
    return &t->buckets[mix64(id ^ t->seed) & (t->nbuckets - 1)];
}

static void count_sessions(fm_session_table *t) {
    __atomic_store_n(&t->stats[FM_SESSIONS], (uint64_t)t->n, __ATOMIC_RELAXED);
}

int fm_session_table_init(fm_session_table *t, uint32_t max, uint64_t *stats) {
    t->buckets = calloc(BUCKETS_MIN, sizeof *t->buckets);
    if (!t->buckets) return -ENOMEM;
    t->nbuckets = BUCKETS_MIN;
    t->max = max;
    t->seed = random_seed(t);
    t->idle_head = t->idle_tail = NULL;
    t->stats = stats;
    t->n = 0;
    return 0;
}

/* Doubles the buckets (the sessions stay where they are); without memory, chains just grow. */
static void grow(fm_session_table *t) {
    uint32_t nb = t->nbuckets * 2;
    fm_session **b = calloc(nb, sizeof *b);
    if (!b) return;
    fm_session **old = t->buckets;
    uint32_t n_old = t->nbuckets;
    t->buckets = b;
    t->nbuckets = nb;
    for (uint32_t i = 0; i < n_old; i++) {
        for (fm_session *s = old[i], *next; s; s = next) {
            next = s->hnext;
            fm_session **pp = bucket(t, s->id);
            s->hnext = *pp;
            *pp = s;
        }
    }
    free(old);
}

static void idle_unlink(fm_session_table *t, fm_session *s) {
    if (s->idle_prev) s->idle_prev->idle_next = s->idle_next;
    else t->idle_head = s->idle_next;
    if (s->idle_next) s->idle_next->idle_prev = s->idle_prev;
    else t->idle_tail = s->idle_prev;
    s->idle_prev = s->idle_next = NULL;
}

/* Forgets the longest idle sessions while there are more than the bound. A session whose frames
 * still wait for the consumer to release them is kept: forgetting it would have its sender's
 * resent messages delivered twice. */
static void evict(fm_session_table *t) {
    for (fm_session *s = t->idle_head, *next; s && t->n > t->max; s = next) {
        next = s->idle_next;
        if (s->wlen) fm_ack_update(s); /* (frames released since the last look) */
        if (s->wlen) continue;
        idle_unlink(t, s);
        fm_session **pp = bucket(t, s->id);
        while (*pp != s) pp = &(*pp)->hnext;
        *pp = s->hnext;
        fm_session_acks_free(s);
        fm_session_replies_drop(t, s);
        free(s);
        t->n--;
        __atomic_fetch_add(&t->stats[FM_EVICTED_SESSIONS], 1, __ATOMIC_RELAXED);
    }
    count_sessions(t);
}

fm_session *fm_session_find(fm_session_table *t, uint64_t id) {
    for (fm_session *s = *bucket(t, id); s; s = s->hnext)
        if (s->id == id) return s;
    return NULL;
}

fm_session *fm_session_for(fm_session_table *t, uint64_t id, int *made) {
    *made = 0;
    fm_session *s = fm_session_find(t, id);
    if (s) return s;
    s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (t->n >= t->nbuckets) grow(t);
    s->id = id;
    fm_session **pp = bucket(t, id);
    s->hnext = *pp;
    *pp = s;
    t->n++;
    *made = 1;
    evict(t); /* the new session is in no idle list: it stays */
    return s;
}

void fm_session_attach(fm_session_table *t, fm_session *s, fm_rxconn *c) {
    if (!s->conn && (s->idle_prev || t->idle_head == s)) idle_unlink(t, s); /* a new one is in no list */
    s->conn = c;
}

void fm_session_release(fm_session_table *t, fm_session *s) {
    s->conn = NULL;
    s->idle_prev = t->idle_tail;
    s->idle_next = NULL;
    if (t->idle_tail) t->idle_tail->idle_next = s;
    else t->idle_head = s;
    t->idle_tail = s;
    evict(t);
}

void fm_session_table_free(fm_session_table *t) {
    for (uint32_t i = 0; t->buckets && i < t->nbuckets; i++) {
        for (fm_session *s = t->buckets[i], *next; s; s = next) {
            next = s->hnext;
            fm_session_acks_free(s);
            fm_session_replies_drop(t, s);
            free(s);
        }
    }
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = t->n = 0;
    t->idle_head = t->idle_tail = NULL;
}
