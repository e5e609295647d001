# Addresses: a resolved endpoint (socket family and address tuple) as the engine's sockaddr, and
# a bound receiver's sockaddr back as an endpoint string.

# Python's socket module on Windows does not name AF_UNIX; Winsock's (Windows 10 1803 and later)
# is 1 as well, and the engine makes the sockets itself.
_AF_UNIX = getattr(socket, "AF_UNIX", 1)
_unix_sockets_here = None  # (Windows: whether this Windows has them, learnt once)


cdef int _sockaddr(object family, object addr, sockaddr_storage *out, socklen_t *length) except -1:
    cdef int rc
    cdef bytes host
    if family == _AF_UNIX:
        _check_unix_sockets(addr)
        path = os.fsencode(addr)
        rc = fastmsg_make_sockaddr(family, NULL, 0, 0, path, out, length)
    else:
        host = addr[0].encode()
        rc = fastmsg_make_sockaddr(family, host, addr[1], addr[3] if len(addr) > 3 else 0, NULL, out, length)
    if rc != 0:  # -errno: EINVAL for a host or path the family cannot take
        raise_engine_error(-rc, f"cannot use address {addr!r}", NULL, None)
    return 0


cdef int _check_unix_sockets(object path) except -1:
    """Windows before 10 1803 has no Unix sockets: said at once, plainly, rather than as a
    bind or a connect that fails."""
    global _unix_sockets_here
    if sys.platform != "win32":
        return 0
    if _unix_sockets_here is None:
        _unix_sockets_here = fastmsg_family_supported(_AF_UNIX) != -EAFNOSUPPORT
    if not _unix_sockets_here:
        raise OSError(errno.EAFNOSUPPORT, f"cannot use 'ipc://{path}': this Windows has no Unix sockets "
                                          f"(Windows 10 version 1803 and later have them); use "
                                          f"tcp://127.0.0.1:<port>")
    return 0


cdef str _tcp_endpoint(const sockaddr_storage *sa):
    """tcp://host:port (tcp://[v6]:port) for a TCP socket address."""
    cdef char host[64]
    cdef int port
    fastmsg_sockaddr_host_port(sa, host, sizeof(host), &port)
    h = host.decode()
    return f"tcp://[{h}]:{port}" if ":" in h else f"tcp://{h}:{port}"
