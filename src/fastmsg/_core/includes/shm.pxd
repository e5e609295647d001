# Declarations of csrc/shm.h: a ring in a named shared-memory segment.
from libc.stdint cimport uint8_t, uint64_t

from fastmsg._core.includes.ring cimport fastmsg_ring_ctl

cdef extern from "ring/shm.h" nogil:
    const size_t FASTMSG_SHM_DATA_OFFSET

    ctypedef struct fastmsg_shm:
        void *base
        size_t size
        fastmsg_ring_ctl *ctl
        uint8_t *data
        uint64_t capacity

    enum:
        FASTMSG_SHM_OK
        FASTMSG_SHM_E_UNSUPPORTED
        FASTMSG_SHM_E_TRUNCATED
        FASTMSG_SHM_E_MAGIC
        FASTMSG_SHM_E_VERSION
        FASTMSG_SHM_E_LAYOUT

    int fastmsg_shm_create(const char *name, uint64_t capacity, fastmsg_shm *out)
    int fastmsg_shm_attach(const char *name, fastmsg_shm *out)
    void fastmsg_shm_unmap(fastmsg_shm *s)
    int fastmsg_shm_unlink(const char *name)
