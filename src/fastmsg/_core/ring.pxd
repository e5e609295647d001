# The ring's Python-facing classes, for other core modules to cimport.
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from fastmsg._core.includes.ring cimport fastmsg_ring, fastmsg_ring_rec
from fastmsg._core.includes.shm cimport fastmsg_shm


cdef class _Ring:
    cdef fastmsg_ring r          # the C handle: both sides' cursors and cached positions
    cdef bint _closed            # close() was called: every operation raises Closed
    cdef bint mapped             # the memory is still allocated / mapped
    cdef Py_ssize_t live         # records handed out whose slots are not given back yet
    cdef uint64_t release_pos    # consumer position handed back to the producer
    cdef uint8_t *early          # bitmap, one bit per 8 ring bytes: a span starting there was
                                 # released before those ahead of it
    cdef Py_ssize_t n_early      # bits set in `early`
    cdef uint64_t max_payload    # the largest record this ring accepts

    cdef int _check_open(self) except -1
    cdef int _setup_release(self, uint64_t capacity, uint64_t pos) except -1
    cdef int _check_size(self, Py_ssize_t size) except -1
    cdef int _put(self, object data, object timeout, bint publish) except -1
    cdef int _wait_data(self, object timeout) except -1
    cdef int _wait_space(self, Py_ssize_t size, object timeout) except -1
    cdef Record _record(self, fastmsg_ring_rec *rec)
    cdef void _skip(self, fastmsg_ring_rec *rec) noexcept
    cdef void _give_back(self, uint64_t start, uint64_t end) noexcept
    cdef void _give_back_locked(self, uint64_t start, uint64_t end) noexcept
    cdef void _unmap(self) noexcept


cdef class RingBuffer(_Ring):
    cdef void *mem               # control block + records, from PyMem_RawCalloc


cdef class SharedRing(_Ring):
    cdef fastmsg_shm shm         # the mapping of the segment
    cdef str _name               # the segment's name, with its leading "/"

    cdef _setup(self, str name)


cdef class Record:
    # Kept small (no cdef methods, so no vtable): one is allocated per record read.
    cdef _Ring ring              # owns the memory under this record and takes its release
    cdef const uint8_t *data     # payload, inside the ring
    cdef uint64_t start          # span in ring positions, PAD before it included
    cdef uint64_t end
    cdef uint32_t length         # payload bytes
    cdef uint32_t _flags         # flags from the record header
    cdef uint32_t exports        # buffer views alive
    cdef uint8_t _released       # release() called: no new views, slot given back at exports == 0
    cdef uint8_t given_back      # the slot went back to the ring
