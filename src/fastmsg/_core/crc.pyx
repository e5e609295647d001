# cython: freethreading_compatible = True
"""CRC32C from Python: argument checking and the GIL policy around the C kernels."""

import os

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsUnsignedLongLong, PyLong_Check
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from fastmsg._core.includes.crc32c cimport (
    fastmsg_crc32c, fastmsg_crc32c_combine, fastmsg_crc32c_init, fastmsg_crc32c_kernel,
    fastmsg_crc32c_kernel_by_name, fastmsg_crc32c_kernel_names, fastmsg_crc32c_name,
    fastmsg_crc32c_select,
)

# Releasing and retaking the GIL costs about as much as checksumming a few KiB; below this size
# the release would cost more than it lets other threads gain.
cdef Py_ssize_t NOGIL_MIN_LEN = 32 * 1024


cdef uint32_t _as_u32(object value, str what) except? 0xFFFFFFFF:
    if not PyLong_Check(value):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 0 or value > 0xFFFFFFFF:
        raise ValueError(f"{what} must be in 0..2**32-1, got {value}")
    return <uint32_t>PyLong_AsUnsignedLongLong(value)


cdef uint32_t _checksum(fastmsg_crc32c_kernel kernel, object data, uint32_t crc) except? 0xFFFFFFFF:
    """CRC of `data`, continuing `crc`; with kernel NULL the selected kernel runs."""
    cdef Py_buffer view
    cdef const uint8_t *ptr
    cdef Py_ssize_t size
    cdef bint is_bytes = PyBytes_CheckExact(data)
    if is_bytes:
        ptr = <const uint8_t *>PyBytes_AS_STRING(data)
        size = PyBytes_GET_SIZE(data)
    else:
        if isinstance(data, (str, int)):
            raise TypeError(
                f"crc32c() data must be a bytes-like object (bytes, bytearray, memoryview, "
                f"array), not {type(data).__name__}"
            )
        try:
            PyObject_GetBuffer(data, &view, PyBUF_C_CONTIGUOUS)
        except BufferError as exc:
            raise ValueError(f"crc32c() data must be a C-contiguous buffer: {exc}") from None
        except TypeError:
            raise TypeError(
                f"crc32c() data must be a bytes-like object, not {type(data).__name__}"
            ) from None
        ptr = <const uint8_t *>view.buf
        size = view.len
    try:
        if kernel != NULL:
            # Kernels work on the raw register; the public value is its inverse.
            if size >= NOGIL_MIN_LEN:
                with nogil:
                    crc = ~kernel(~crc, ptr, <size_t>size)
            else:
                crc = ~kernel(~crc, ptr, <size_t>size)
        elif size >= NOGIL_MIN_LEN:
            with nogil:
                crc = fastmsg_crc32c(crc, ptr, <size_t>size)
        else:
            crc = fastmsg_crc32c(crc, ptr, <size_t>size)
    finally:
        if not is_bytes:
            PyBuffer_Release(&view)
    return crc


def crc32c(data, value=0):
    """CRC32C (Castagnoli) of a C-contiguous buffer.

    `value` continues a running CRC: ``crc32c(b, crc32c(a)) == crc32c(a + b)``.
    """
    cdef uint32_t start = 0 if value is 0 else _as_u32(value, "crc32c() value")
    if PyBytes_CheckExact(data) and PyBytes_GET_SIZE(data) < NOGIL_MIN_LEN:
        # The common case, kept free of buffer and exception-handling machinery.
        return fastmsg_crc32c(start, PyBytes_AS_STRING(data), <size_t>PyBytes_GET_SIZE(data))
    return _checksum(NULL, data, start)


def crc32c_combine(crc_a, crc_b, len_b):
    """CRC32C of A + B from ``crc32c(A)``, ``crc32c(B)`` and ``len(B)``, in O(log len_b)."""
    cdef uint32_t a = _as_u32(crc_a, "crc32c_combine() crc_a")
    cdef uint32_t b = _as_u32(crc_b, "crc32c_combine() crc_b")
    if not PyLong_Check(len_b):
        raise TypeError(f"crc32c_combine() len_b must be an int, not {type(len_b).__name__}")
    if len_b < 0 or len_b >= 2**61:
        raise ValueError(f"crc32c_combine() len_b must be in 0..2**61-1, got {len_b}")
    return fastmsg_crc32c_combine(a, b, <uint64_t>PyLong_AsUnsignedLongLong(len_b))


def kernels():
    """(name, runs on this CPU) for every kernel compiled into this build, fastest first."""
    cdef const char *const *names = fastmsg_crc32c_kernel_names()
    cdef list out = []
    cdef Py_ssize_t i = 0
    while names[i] != NULL:
        out.append((names[i].decode(), fastmsg_crc32c_kernel_by_name(names[i]) != NULL))
        i += 1
    return out


def crc32c_using(str kernel, data, value=0):
    """crc32c() through a named kernel, bypassing the selection; for tests and benchmarks."""
    cdef bytes name = kernel.encode()
    cdef fastmsg_crc32c_kernel fn = fastmsg_crc32c_kernel_by_name(name)
    if fn == NULL:
        raise ValueError(f"CRC32C kernel {kernel!r} is unknown or cannot run on this CPU; "
                         f"runnable: {[n for n, ok in kernels() if ok]}")
    return _checksum(fn, data, _as_u32(value, "crc32c() value"))


def _select_from_environment():
    forced = os.environ.get("FASTMSG_CRC32C", "").strip()
    if not forced:
        return
    rc = fastmsg_crc32c_select(forced.encode())
    if rc == -1:
        raise ImportError(f"FASTMSG_CRC32C={forced!r} names no kernel of this build; "
                          f"known: {[n for n, _ in kernels()]}")
    if rc == -2:
        raise ImportError(f"FASTMSG_CRC32C={forced!r}: this CPU cannot run that kernel; "
                          f"runnable: {[n for n, ok in kernels() if ok]}")


fastmsg_crc32c_init()
_select_from_environment()
implementation = fastmsg_crc32c_name().decode()
