# ssl=: a standard ssl.SSLContext, handed to the engine (docs/architecture.md, "TLS"). The engine
# drives the context's own SSL_CTX through the OpenSSL that the ssl module uses, so everything
# the application configured on it (certificates, CAs, verify mode, protocol versions, ciphers,
# ALPN) holds as it would for an ssl.SSLSocket.

import ssl as _ssl
from cpython.object cimport PyObject

cdef bint _openssl_loaded = False


cdef int _load_openssl() except -1:
    global _openssl_loaded
    cdef char err[256]
    if _openssl_loaded:
        return 0
    import _ssl as ssl_ext  # the extension that holds the library: its file, or the interpreter
    path = getattr(ssl_ext, "__file__", None)
    cdef bytes raw = os.fsencode(path) if path else None
    if fm_tls_load(<const char *>raw if raw is not None else NULL, err, sizeof(err)) != 0:
        raise FastmsgError(f"ssl= is not available here: {err.decode(errors='replace')}")
    _openssl_loaded = True
    return 0


cdef void *_ssl_ctx_of(object context) except NULL:
    """The SSL_CTX an ssl.SSLContext wraps: the first field after the object header, in every
    CPython since 3.x. Checked against what the context says of itself before any use."""
    cdef void *ptr = (<void **>(<char *><PyObject *>context + sizeof(PyObject)))[0]
    if ptr == NULL or fm_tls_ctx_options(ptr) != <uint64_t>int(context.options):
        raise FastmsgError("ssl= cannot use this SSLContext: its layout is not the one this fastmsg "
                           "was built for (a different Python implementation?)")
    return ptr


cdef int _tls_context(fm_tls_ctx **out, object context, bint server, object host) except -1:
    """The engine's TLS context for ssl=`context` (None: plaintext, *out NULL). `host`: the name a
    client checks and sends as SNI (None over ipc, unless server_hostname= was given)."""
    out[0] = NULL
    if context is None:
        return 0
    who = "Receiver" if server else "Sender"
    if not isinstance(context, _ssl.SSLContext):
        raise TypeError(f"ssl= takes an ssl.SSLContext, got {type(context).__name__}")
    if context.protocol == (_ssl.PROTOCOL_TLS_CLIENT if server else _ssl.PROTOCOL_TLS_SERVER):
        side = "client" if server else "server"
        raise ValueError(f"a {who} needs a {'server' if server else 'client'}-side SSLContext, got a {side}-side one "
                         f"(ssl.SSLContext(ssl.PROTOCOL_TLS_{'SERVER' if server else 'CLIENT'}))")
    # These call back into Python with the ssl module's own socket objects, which the engine has
    # none of.
    if context.sni_callback is not None:
        raise ValueError("ssl= does not support an SSLContext with sni_callback set")
    if getattr(context, "keylog_filename", None) is not None or getattr(context, "_msg_callback", None) is not None:
        raise ValueError("ssl= does not support an SSLContext with keylog_filename or _msg_callback set")
    check = not server and context.check_hostname
    if check and host is None:
        raise ValueError("this SSLContext checks host names (check_hostname): give server_hostname= for an "
                         "ipc:// endpoint")
    _load_openssl()
    cdef void *ptr = _ssl_ctx_of(context)
    cdef bytes name = None if host is None else host.encode("ascii" if host.isascii() else "idna")
    out[0] = fm_tls_ctx_new(ptr, server, <const char *>name if name is not None else NULL, check)
    if out[0] == NULL:
        raise MemoryError("cannot allocate the TLS context")
    return 0
