/* The few atomic operations the ring needs, on GCC/Clang (__atomic builtins) and MSVC.
 *
 * Acquire loads and release stores carry the ring's ordering; a full fence plus a counter is
 * the "is anyone asleep?" handshake of the blocking waits (see ring_wait.c). Everything else in
 * the ring is plain memory, ordered by these. */
#ifndef FASTMSG_ATOMICS_H
#define FASTMSG_ATOMICS_H

#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)

static inline uint64_t fastmsg_load_acquire64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void fastmsg_store_release64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t fastmsg_load_relaxed64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void fastmsg_store_relaxed64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline uint32_t fastmsg_load_acquire32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint32_t fastmsg_load_relaxed32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void fastmsg_store_release32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t fastmsg_fetch_add32(uint32_t *p, uint32_t v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline void fastmsg_fence_seq_cst(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
/* 1 if *p was `expected` and is now `v` (a full barrier either way). */
static inline int fastmsg_cas32(uint32_t *p, uint32_t expected, uint32_t v) {
    return __atomic_compare_exchange_n(p, &expected, v, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
static inline void fastmsg_store_seq_cst32(uint32_t *p, uint32_t v) { (void)__atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
/* A store that is also a full barrier against later seq_cst loads (xchg on x86, cheaper than
 * mov + mfence): how a side publishes its position before checking for sleepers. */
static inline void fastmsg_store_seq_cst64(uint64_t *p, uint64_t v) { (void)__atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint32_t fastmsg_load_seq_cst32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }

#if defined(__x86_64__) || defined(__i386__)
static inline void fastmsg_cpu_relax(void) { __builtin_ia32_pause(); }
#elif defined(__aarch64__) || defined(__arm__)
static inline void fastmsg_cpu_relax(void) { __asm__ __volatile__("yield" ::: "memory"); }
#else
static inline void fastmsg_cpu_relax(void) { __asm__ __volatile__("" ::: "memory"); }
#endif

#elif defined(_MSC_VER)

#include <intrin.h>
/* x64 is TSO: a plain volatile access plus a compiler barrier is acquire/release. ARM64 needs a
 * dmb ish after the load and before the store, the same lowering as MSVC's own <atomic>. */
#if defined(_M_ARM64)
#define FASTMSG_HW_BARRIER() __dmb(_ARM64_BARRIER_ISH)
#define FASTMSG_LOAD64(p) ((uint64_t)__iso_volatile_load64((const volatile __int64 *)(p)))
#define FASTMSG_LOAD32(p) ((uint32_t)__iso_volatile_load32((const volatile __int32 *)(p)))
#define FASTMSG_STORE64(p, v) __iso_volatile_store64((volatile __int64 *)(p), (__int64)(v))
#define FASTMSG_STORE32(p, v) __iso_volatile_store32((volatile __int32 *)(p), (__int32)(v))
#else
#define FASTMSG_HW_BARRIER() _ReadWriteBarrier()
#define FASTMSG_LOAD64(p) (*(const volatile uint64_t *)(p))
#define FASTMSG_LOAD32(p) (*(const volatile uint32_t *)(p))
#define FASTMSG_STORE64(p, v) (*(volatile uint64_t *)(p) = (v))
#define FASTMSG_STORE32(p, v) (*(volatile uint32_t *)(p) = (v))
#endif

static __forceinline uint64_t fastmsg_load_acquire64(const uint64_t *p) { uint64_t v = FASTMSG_LOAD64(p); FASTMSG_HW_BARRIER(); return v; }
static __forceinline void fastmsg_store_release64(uint64_t *p, uint64_t v) { FASTMSG_HW_BARRIER(); FASTMSG_STORE64(p, v); }
static __forceinline uint64_t fastmsg_load_relaxed64(const uint64_t *p) { return FASTMSG_LOAD64(p); }
static __forceinline void fastmsg_store_relaxed64(uint64_t *p, uint64_t v) { FASTMSG_STORE64(p, v); }
static __forceinline uint32_t fastmsg_load_acquire32(const uint32_t *p) { uint32_t v = FASTMSG_LOAD32(p); FASTMSG_HW_BARRIER(); return v; }
static __forceinline uint32_t fastmsg_load_relaxed32(const uint32_t *p) { return FASTMSG_LOAD32(p); }
static __forceinline void fastmsg_store_release32(uint32_t *p, uint32_t v) { FASTMSG_HW_BARRIER(); FASTMSG_STORE32(p, v); }
static __forceinline uint32_t fastmsg_fetch_add32(uint32_t *p, uint32_t v) { return (uint32_t)_InterlockedExchangeAdd((volatile long *)p, (long)v); }
static __forceinline void fastmsg_store_seq_cst64(uint64_t *p, uint64_t v) { (void)_InterlockedExchange64((volatile __int64 *)p, (__int64)v); }
static __forceinline int fastmsg_cas32(uint32_t *p, uint32_t expected, uint32_t v) {
    return (uint32_t)_InterlockedCompareExchange((volatile long *)p, (long)v, (long)expected) == expected;
}
static __forceinline void fastmsg_store_seq_cst32(uint32_t *p, uint32_t v) { (void)_InterlockedExchange((volatile long *)p, (long)v); }
#if defined(_M_ARM64)
static __forceinline void fastmsg_fence_seq_cst(void) { __dmb(_ARM64_BARRIER_ISH); }
static __forceinline uint32_t fastmsg_load_seq_cst32(const uint32_t *p) { uint32_t v; __dmb(_ARM64_BARRIER_ISH); v = FASTMSG_LOAD32(p); __dmb(_ARM64_BARRIER_ISH); return v; }
static __forceinline void fastmsg_cpu_relax(void) { __yield(); }
#else
static __forceinline void fastmsg_fence_seq_cst(void) { __faststorefence(); }
static __forceinline uint32_t fastmsg_load_seq_cst32(const uint32_t *p) { return FASTMSG_LOAD32(p); }
static __forceinline void fastmsg_cpu_relax(void) { _mm_pause(); }
#endif

#else
#error "fastmsg needs GCC, Clang or MSVC atomics"
#endif

#endif
