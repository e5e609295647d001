# Declarations of csrc/crc32c.h: the CRC32C kernels, callable without the GIL.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "crc32c/crc32c.h" nogil:
    ctypedef uint32_t (*fastmsg_crc32c_kernel)(uint32_t raw, const uint8_t *data, size_t length)

    void fastmsg_crc32c_init()
    int fastmsg_crc32c_select(const char *name)
    const char *fastmsg_crc32c_name()
    const char *const *fastmsg_crc32c_kernel_names()
    fastmsg_crc32c_kernel fastmsg_crc32c_kernel_by_name(const char *name)
    uint32_t fastmsg_crc32c(uint32_t crc, const void *data, size_t length)
    uint32_t fastmsg_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)


cdef inline int use_selected_kernel() except -1:
    """Every extension that compiles the kernels in keeps its own copy of the selection; this makes
    it follow the one fastmsg._core.crc made (which honours FASTMSG_CRC32C)."""
    from fastmsg._core.crc import implementation
    fastmsg_crc32c_init()
    if fastmsg_crc32c_select(implementation.encode()) != 0:
        raise ImportError(f"CRC32C kernel {implementation!r} is not available to this module")
    return 0
