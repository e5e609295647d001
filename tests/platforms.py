"""Skip marks for what a test needs of the platform beyond the transport itself, shared by the test
modules (as pollers.py is): on Windows, Python has no Unix sockets (so no ipc://), no fork, no
POSIX signals to kill or interrupt a process with, and no resource module. Everywhere else they
skip nothing."""

import sys

import pytest

WINDOWS = sys.platform == "win32"


def posix_only(why):
    return pytest.mark.skipif(WINDOWS, reason=f"POSIX only: {why}")


needs_unix_sockets = posix_only("ipc:// endpoints are Unix sockets, which Python's socket module lacks on Windows")
needs_sigkill = posix_only("kills a process with SIGKILL, mid-write (Windows has no signals to kill with)")
needs_posix_signals = posix_only("sends a process a POSIX signal (SIGINT, SIGPIPE)")


def ipc_param(value="ipc"):
    """A parametrization value for the ipc:// case, skipped where there are no Unix sockets."""
    return pytest.param(value, marks=needs_unix_sockets)
