"""Coverage edges for what the native checkers decide.

Atheris sees Python bytecode; in a build without libFuzzer's instrumentation of the C core (any
but FASTMSG_FUZZ=1), a refusal deep in C looks like any other. Reporting the frame kind and the
refusal code here gives each outcome a branch of its own, and libFuzzer keeps an input that
reaches a new one."""

import atheris


def _branches(count):
    """A function with one `if` per value below count: a distinct edge for each."""
    src = "def hit(n):\n" + "".join(f"    if n == {i}: return\n" for i in range(count))
    namespace = {}
    exec(src, namespace)
    return atheris.instrument_func(namespace["hit"])


_hit = _branches(32)


def kind(k):
    """A frame kind (1-10) seen."""
    _hit(k if 0 < k < 16 else 0)


def code(c):
    """A refusal code (1-10, None for one the C checkers do not name) seen."""
    _hit(16 + c if c is not None and 0 < c < 16 else 16)
