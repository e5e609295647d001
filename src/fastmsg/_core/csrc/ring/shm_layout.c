/* The part of shm.h that is the same on every platform: writing and checking a segment's header,
 * and where the ring sits in a mapping (shm.c for POSIX, shm_win.c for Windows). */
#include "ring/shm.h"

#include <string.h>

void fastmsg_shm_format(void *base, uint64_t capacity) {
    fastmsg_shm_header *h = (fastmsg_shm_header *)base;
    h->version = FASTMSG_SHM_VERSION;
    h->header_size = (uint32_t)FASTMSG_SHM_DATA_OFFSET;
    h->capacity = capacity;
    h->record_header = FASTMSG_REC_HDR;
    h->line = FASTMSG_RING_LINE;
    h->endian = FASTMSG_SHM_ENDIAN;
    memcpy(h->magic, FASTMSG_SHM_MAGIC, 8);
    fastmsg_store_release32(&h->ready, 1);
}

void fastmsg_shm_fill(fastmsg_shm *out, void *base, size_t size, uint64_t capacity) {
    out->base = base;
    out->size = size;
    out->ctl = (fastmsg_ring_ctl *)((uint8_t *)base + sizeof(fastmsg_shm_header));
    out->data = (uint8_t *)base + FASTMSG_SHM_DATA_OFFSET;
    out->capacity = capacity;
}

int fastmsg_shm_check(const fastmsg_shm_header *h, size_t size) {
    if (memcmp(h->magic, FASTMSG_SHM_MAGIC, 8) != 0 || fastmsg_load_acquire32(&h->ready) != 1)
        return FASTMSG_SHM_E_MAGIC;
    if (h->version != FASTMSG_SHM_VERSION)
        return FASTMSG_SHM_E_VERSION;
    if (h->endian != FASTMSG_SHM_ENDIAN || h->header_size != FASTMSG_SHM_DATA_OFFSET ||
        h->record_header != FASTMSG_REC_HDR || h->line != FASTMSG_RING_LINE ||
        h->capacity < FASTMSG_RING_MIN_CAPACITY || h->capacity > FASTMSG_RING_MAX_CAPACITY ||
        (h->capacity & (h->capacity - 1)) != 0)
        return FASTMSG_SHM_E_LAYOUT;
    if (size < FASTMSG_SHM_DATA_OFFSET + h->capacity)
        return FASTMSG_SHM_E_TRUNCATED;
    return FASTMSG_SHM_OK;
}
