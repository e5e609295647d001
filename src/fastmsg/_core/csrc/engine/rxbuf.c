/* A connection's receive ring: the I/O thread (or a direct reader) produces, Python consumes.
 * Reference-counted, as Messages can outlive their connection and receiver. */
#include <stdlib.h>

#include "engine/receiver_internal.h"

fm_rxbuf *fm_rxbuf_new(fm_ctx *ctx, uint64_t capacity) {
    fm_rxbuf *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->mem = calloc(1, sizeof(fastmsg_ring_ctl) + capacity);
    if (!b->mem) {
        free(b);
        return NULL;
    }
    b->refs = 1;
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
void fm_rxbuf_incref(fm_rxbuf *b) { __atomic_fetch_add(&b->refs, 1, __ATOMIC_RELAXED); }

void fm_rxbuf_decref(fm_rxbuf *b) {
    if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL)) return;
    /* Frames too large for the ring that nobody took: free them. */
    fastmsg_ring r;
    fastmsg_ring_rec rec;
    fastmsg_ring_init(&r, b->ctl, b->data, b->capacity);
    while (fastmsg_ring_next(&r, &rec) > 0)
        if (rec.flags == FM_RX_EXTERNAL) free(fm_pointer_rec_ptr(rec.data));
    free(b->mem);
    free(b);
}

void fm_rxbuf_space_released(fm_rxbuf *b) {
    if (__atomic_load_n(&b->blocked, __ATOMIC_SEQ_CST) && !__atomic_load_n(&b->closed, __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&b->resume, 1, __ATOMIC_SEQ_CST);
        fm_ctx_kick(b->ctx);
    }
}
