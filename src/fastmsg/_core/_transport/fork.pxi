# Objects made before fork() refuse to work in the child, and the default context's lifetime:
# made on first use, dropped in a forked child (its I/O thread did not survive), closed at exit
# (exit.pxi).

cdef int _generation = 0   # bumped in every forked child; each object keeps the one it was made in

_default = None            # the default Context, once made
_default_lock = threading.Lock()


def _after_fork_in_child():
    global _generation, _default
    _generation += 1
    _default = None  # its I/O thread did not survive the fork


if hasattr(os, "register_at_fork"):  # (not on Windows, where there is no fork: child processes start afresh)
    os.register_at_fork(after_in_child=_after_fork_in_child)


cdef inline int _check_generation(int gen, object obj) except -1:
    if gen != _generation:
        raise FastmsgError(f"{type(obj).__name__} was created before fork(); make a new one in this process")
    return 0


def default_context():
    """The context used when none is given; made on first use, closed at interpreter exit."""
    global _default
    ctx = _default
    if ctx is None or ctx.closed:
        with _default_lock:
            if _default is None or _default.closed:
                _default = Context()
            ctx = _default
    return ctx

