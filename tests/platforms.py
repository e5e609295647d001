"""Skip marks for what a test needs of the platform beyond the transport itself, shared by the test
modules (as pollers.py is): on Windows, no fork, no POSIX signals to kill or interrupt a process
with, no resource module, and Unix sockets (so ipc://) only from Windows 10 1803 on, which the
engine makes itself (Python's socket module there has none). Everywhere else they skip nothing."""

import sys

import pytest

WINDOWS = sys.platform == "win32"


def posix_only(why):
    return pytest.mark.skipif(WINDOWS, reason=f"POSIX only: {why}")


# Windows 10 1803 is build 17134; AF_UNIX came with build 17063.
UNIX_SOCKETS = not WINDOWS or sys.getwindowsversion().build >= 17063
needs_unix_sockets = pytest.mark.skipif(not UNIX_SOCKETS, reason="ipc:// endpoints are Unix sockets, which "
                                                                 "Windows has only from 10 1803 on")
needs_sigkill = posix_only("kills a process with SIGKILL, mid-write (Windows has no signals to kill with)")
needs_posix_signals = posix_only("sends a process a POSIX signal (SIGINT, SIGPIPE)")


def ipc_param(value="ipc"):
    """A parametrization value for the ipc:// case, skipped where there are no Unix sockets."""
    return pytest.param(value, marks=needs_unix_sockets)


def is_unix_socket_file(path):
    """A Unix socket's file: S_ISSOCK on POSIX; on Windows a reparse point of tag
    IO_REPARSE_TAG_AF_UNIX (stat does not call it a socket there)."""
    import os
    import stat
    st = os.lstat(path)
    return stat.S_ISSOCK(st.st_mode) or getattr(st, "st_reparse_tag", 0) == 0x80000023
