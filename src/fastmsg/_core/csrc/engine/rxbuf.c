/* A connection's receive ring: the I/O thread (or a direct reader) produces, Python consumes.
 * Reference-counted, as Messages can outlive their connection and receiver. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */
#include <stdlib.h>
#ifndef _WIN32
#include <sys/mman.h>
#endif

#include "engine/receiver_internal.h"

/* A ring's memory comes straight from the kernel: its pages cost nothing until bytes arrive (an
 * idle connection touches one), and all of them go back when it is freed. From malloc, a ring
 * freed into the heap keeps the pages it touched resident, and calloc clears a reused one whole:
 * a receiver with many short connections would grow towards a full ring per connection. */
static void *ring_mem_new(size_t size) {
#ifndef _WIN32
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
#else /* (VirtualAlloc: committed pages are zero and take memory only once touched) */
    return VirtualAlloc(NULL, size, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
#endif
}

static void ring_mem_free(void *p, size_t size) {
#ifndef _WIN32
    munmap(p, size);
#else
    (void)size;
    VirtualFree(p, 0, MEM_RELEASE);
#endif
}

fm_rxbuf *fm_rxbuf_new(fm_ctx *ctx, uint64_t capacity) {
    fm_rxbuf *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->mem = ring_mem_new(sizeof(fastmsg_ring_ctl) + capacity);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    b->refs = 1;
    b->ack_at = FM_NO_ACK_AT;
    b->ctx = ctx;
    b->capacity = capacity;
    b->ctl = b->mem;
    b->data = (uint8_t *)b->mem + sizeof(fastmsg_ring_ctl);
    return b;
}

fastmsg_ring_ctl *fm_rxbuf_ctl(fm_rxbuf *b) { return b->ctl; }
uint8_t *fm_rxbuf_data(fm_rxbuf *b) { return b->data; }
uint64_t fm_rxbuf_capacity(fm_rxbuf *b) { return b->capacity; }
int fm_rxbuf_closed(fm_rxbuf *b) { return (int)__atomic_load_n(&b->closed, __ATOMIC_ACQUIRE); }
uint64_t fm_rxbuf_session(fm_rxbuf *b) { return b->session_id; }

const char *fm_rxbuf_peer(fm_rxbuf *b) { return b->peer; }
void fm_rxbuf_incref(fm_rxbuf *b) { __atomic_fetch_add(&b->refs, 1, __ATOMIC_RELAXED); }

void fm_rxbuf_decref(fm_rxbuf *b) {
    if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL)) return;
    /* Frames too large for the ring that nobody took: free them. */
    fastmsg_ring r;
    fastmsg_ring_rec rec;
    fastmsg_ring_init(&r, b->ctl, b->data, b->capacity);
    while (fastmsg_ring_next(&r, &rec) > 0)
        if (rec.flags == FM_RX_EXTERNAL) free(fm_pointer_rec_ptr(rec.data));
    ring_mem_free(b->mem, sizeof(fastmsg_ring_ctl) + b->capacity);
    free(b->peer);
    free(b);
}

int fm_rxbuf_space_released(fm_rxbuf *b) {
    int ack_due = 0;
    uint64_t at = __atomic_load_n(&b->ack_at, __ATOMIC_RELAXED);
    if (at != FM_NO_ACK_AT && __atomic_load_n(&b->ctl->head, __ATOMIC_ACQUIRE) >= at &&
        __atomic_compare_exchange_n(&b->ack_at, &at, FM_NO_ACK_AT, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
        ack_due = 1; /* (once per arming: the compare-and-swap) */
    /* A closed connection writes no ACK; and its receiver, perhaps its context, may be gone (a
     * Message outlives them), so nothing here may touch them. */
    if (__atomic_load_n(&b->closed, __ATOMIC_ACQUIRE)) ack_due = 0;
    if (__atomic_load_n(&b->blocked, __ATOMIC_SEQ_CST) && !__atomic_load_n(&b->closed, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&b->resume, 1, __ATOMIC_SEQ_CST);
        fm_ctx_kick(b->ctx);
    }
    return ack_due;
}

void fm_rxbuf_ack_kick(fm_rxbuf *b) { fm_ctx_kick(b->ctx); }
