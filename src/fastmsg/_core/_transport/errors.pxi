# The one place where an engine failure becomes a Python exception.

cdef int raise_engine_error(int errnum, str doing, const char *text, object endpoint,
                            object os_error=OSError) except -1:
    """Raises the exception for a failed engine call: `doing` says what failed ("cannot bind
    tcp://...") and `text` (NULL or empty: nothing) is the engine's explanation.

    ENOMEM: MemoryError. EINVAL: ValueError. 0: FastmsgError (a failure with no errno). Any
    other errno: os_error(errnum, message) with `errno` set; OSError itself becomes its subclass
    for that errno (FileNotFoundError, PermissionError...), BindError stays BindError. `endpoint`,
    when given, is kept as the exception's `endpoint` attribute (the message names it too)."""
    cdef str message = doing
    if text != NULL and text[0] != 0:
        message = f"{doing}: {text.decode(errors='replace')}"
    if errnum == ENOMEM:
        exc = MemoryError(message)
    elif errnum == EINVAL:
        exc = ValueError(message)
    elif errnum == 0:
        exc = FastmsgError(message)
    else:
        exc = os_error(errnum, message)
    if endpoint is not None:
        exc.endpoint = str(endpoint)
    raise exc


def _raise_engine_error(int errnum, str doing, bytes text=None, endpoint=None, os_error=OSError):
    """raise_engine_error from Python, for the tests of its mapping."""
    raise_engine_error(errnum, doing, NULL if text is None else <const char *>text, endpoint, os_error)
