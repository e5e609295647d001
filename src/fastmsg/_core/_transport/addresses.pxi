# Addresses: a resolved endpoint (socket family and address tuple) as the engine's sockaddr, and
# a bound receiver's sockaddr back as an endpoint string.

# The socket module of Python on Windows has no AF_UNIX (endpoint.py refuses ipc:// there).
_AF_UNIX = getattr(socket, "AF_UNIX", None)


cdef int _sockaddr(object family, object addr, sockaddr_storage *out, socklen_t *length) except -1:
    cdef int rc
    cdef bytes host
    if family == _AF_UNIX:
        path = os.fsencode(addr)
        rc = fastmsg_make_sockaddr(family, NULL, 0, 0, path, out, length)
    else:
        host = addr[0].encode()
        rc = fastmsg_make_sockaddr(family, host, addr[1], addr[3] if len(addr) > 3 else 0, NULL, out, length)
    if rc != 0:  # -errno: EINVAL for a host or path the family cannot take
        raise_engine_error(-rc, f"cannot use address {addr!r}", NULL, None)
    return 0


cdef str _tcp_endpoint(const sockaddr_storage *sa):
    """tcp://host:port (tcp://[v6]:port) for a TCP socket address."""
    cdef char host[64]
    cdef int port
    fastmsg_sockaddr_host_port(sa, host, sizeof(host), &port)
    h = host.decode()
    return f"tcp://[{h}]:{port}" if ":" in h else f"tcp://{h}:{port}"
