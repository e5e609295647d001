# Declarations of csrc/crc32c.h: the CRC32C kernels, callable without the GIL.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "crc32c.h" nogil:
    ctypedef uint32_t (*fastmsg_crc32c_kernel)(uint32_t raw, const uint8_t *data, size_t length)

    void fastmsg_crc32c_init()
    int fastmsg_crc32c_select(const char *name)
    const char *fastmsg_crc32c_name()
    const char *const *fastmsg_crc32c_kernel_names()
    fastmsg_crc32c_kernel fastmsg_crc32c_kernel_by_name(const char *name)
    uint32_t fastmsg_crc32c(uint32_t crc, const void *data, size_t length)
    uint32_t fastmsg_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
