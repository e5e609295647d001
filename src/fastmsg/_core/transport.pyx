# cython: freethreading_compatible = True
"""Sender, Receiver, Message and Context: the Python face of the I/O engine (csrc/engine*.c).

Python threads copy messages into a sender's ring and read them in place from a connection's
ring; the engine's I/O thread does every socket call. Layout: docs/architecture.md.

One extension module, as the engine keeps thread-local and process-wide state that must exist
once; each part lives in its own include file under _transport/, in dependency order."""

cimport cython
from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.pythread cimport (NOWAIT_LOCK, WAIT_LOCK, PyThread_acquire_lock, PyThread_allocate_lock,
                               PyThread_free_lock, PyThread_release_lock, PyThread_type_lock)
from libc.errno cimport EAFNOSUPPORT, EAGAIN, ECONNREFUSED, EINVAL, EMSGSIZE, ENOMEM
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdlib cimport free
from libc.string cimport memcmp, memcpy, memset
from cpython.unicode cimport PyUnicode_Decode

from fastmsg._core.includes.crc32c cimport use_selected_kernel
from fastmsg._core.includes.engine cimport *
from fastmsg._core.includes.notifier cimport *
from fastmsg._core.includes.ring cimport *
from fastmsg._core.includes.layout cimport *
from fastmsg._core.includes.deadline cimport deadline_ns
from fastmsg._core.ring cimport Record, _Ring
from fastmsg._core.waiting cimport (WAIT_CLOSED, WAIT_READY, WAIT_TIMED_OUT, ring_wait_space,
                                    wait_until)

import atexit
import errno
import os
import secrets
import socket
import stat
import sys
import threading
import time
import weakref
from collections import deque

from fastmsg.endpoint import parse as _parse_endpoint
from fastmsg.errors import BindError, Closed, FastmsgError, Full, MessageTooLarge, ProtocolError, Timeout

use_selected_kernel()

cdef extern from "Python.h":
    int PyErr_CheckSignals() except -1
    ctypedef enum PyLockStatus:
        PY_LOCK_FAILURE
        PY_LOCK_ACQUIRED
        PY_LOCK_INTR
    # (not in Cython's cpython.pythread) waits up to `microseconds` (-1: no limit); intr_flag: a
    # signal ends the wait with PY_LOCK_INTR
    PyLockStatus PyThread_acquire_lock_timed(PyThread_type_lock lock, long long microseconds, int intr_flag) nogil

# Blocking waits of a Sender wake at least this often to notice a close() from another thread.
cdef int64_t WAIT_SLICE_NS = 50 * 1000 * 1000

include "_transport/errors.pxi"       # raise_engine_error: an engine failure as a Python exception
include "_transport/fork.pxi"         # fork generations; the default context's lifetime
include "_transport/limits.pxi"       # option defaults and checks, stats() dicts
include "_transport/addresses.pxi"    # endpoints to sockaddrs and back
include "_transport/context.pxi"      # Context
include "_transport/access.pxi"       # secret=, secrets=, allow=: keys and allow lists for the engine
include "_transport/tls.pxi"          # ssl=: an ssl.SSLContext for the engine
include "_transport/readiness.pxi"    # the readiness fds behind fileno()
include "_transport/exit.pxi"         # at exit: Senders get their linger, what is left is reported
include "_transport/gated_lock.pxi"   # the lock of one producer (Sender) or one consumer (Receiver)
include "_transport/sender.pxi"       # Sender
include "_transport/spread.pxi"       # _Spread: the Balancer's per-message path
include "_transport/message.pxi"      # Message, _BigFrame
include "_transport/reply.pxi"        # a request's wait for its reply
include "_transport/wire_decode.pxi"  # the DATA frame layout, as the receiver reads it
include "_transport/receiver.pxi"     # Receiver, _ConnRing
