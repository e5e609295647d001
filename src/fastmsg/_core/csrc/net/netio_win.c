/* netio.h over Winsock. A SOCKET is a kernel handle, and Windows keeps handles within 32 bits
 * (so that 32- and 64-bit processes can share them): the engine's `int` holds one, and
 * INVALID_SOCKET becomes -1. Winsock's error codes are mapped to the errno values the engine
 * tests for (fastmsg_wsa_errno). */
#ifdef _WIN32
#include "net/netio.h"

#include <errno.h>
#include <limits.h>
#include <mstcpip.h>
#include <string.h>

int fastmsg_wsa_errno(int wsa) {
    switch (wsa) {
    case WSAEWOULDBLOCK: return EAGAIN;
    case WSAEINPROGRESS: return EINPROGRESS;
    case WSAEALREADY: return EALREADY;
    case WSAEINTR: return EINTR;
    case WSAECONNRESET: return ECONNRESET;
    case WSAECONNABORTED: return ECONNABORTED;
    case WSAECONNREFUSED: return ECONNREFUSED;
    case WSAENETRESET: return ENETRESET;
    case WSAESHUTDOWN: return EPIPE;
    case WSAENOTCONN: return ENOTCONN;
    case WSAEISCONN: return EISCONN;
    case WSAETIMEDOUT: return ETIMEDOUT;
    case WSAEADDRINUSE: return EADDRINUSE;
    case WSAEADDRNOTAVAIL: return EADDRNOTAVAIL;
    case WSAENETDOWN: return ENETDOWN;
    case WSAENETUNREACH: return ENETUNREACH;
    case WSAEHOSTUNREACH: return EHOSTUNREACH;
    case WSAEAFNOSUPPORT: return EAFNOSUPPORT;
    case WSAEPROTONOSUPPORT: return EPROTONOSUPPORT;
    case WSAEMFILE: return EMFILE;
    case WSAENOBUFS: return ENOBUFS;
    case WSAEACCES: return EACCES;
    case WSAEFAULT: return EFAULT;
    case WSAEINVAL: return EINVAL;
    case WSAENOTSOCK: return EBADF;
    case WSAEMSGSIZE: return EMSGSIZE;
    case WSA_NOT_ENOUGH_MEMORY: return ENOMEM;
    case WSANOTINITIALISED: return ENOSYS;
    default: return EIO;
    }
}

static int last_error(void) { return -fastmsg_wsa_errno(WSAGetLastError()); }

/* Winsock needs WSAStartup once per process before any call (Python's socket module does it too;
 * the count it keeps makes a second call harmless). Never undone: the engine may run until exit. */
static BOOL CALLBACK startup(PINIT_ONCE once, PVOID arg, PVOID *ctx) {
    WSADATA data;
    (void)once, (void)ctx;
    *(int *)arg = WSAStartup(MAKEWORD(2, 2), &data);
    return TRUE;
}

int fastmsg_net_init(void) {
    static INIT_ONCE once = INIT_ONCE_STATIC_INIT;
    static int rc;
    InitOnceExecuteOnce(&once, startup, &rc, NULL);
    return rc ? -fastmsg_wsa_errno(rc) : 0;
}

/* Non-blocking and not inherited by child processes (close-on-exec's counterpart). */
static int set_flags(SOCKET s) {
    u_long on = 1;
    if (ioctlsocket(s, FIONBIO, &on) != 0) return last_error();
    SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0);
    return 0;
}

/* A socket as the engine's int, or -EMFILE (closing it) for a handle beyond 32 bits, which
 * Windows does not hand out. */
static int as_fd(SOCKET s) {
    if (s > (SOCKET)INT_MAX) {
        closesocket(s);
        return -EMFILE;
    }
    return (int)s;
}

static void tune_stream(SOCKET s, int family) {
    DWORD one = 1;
    if (family == AF_INET || family == AF_INET6)
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
}

static int new_socket(int family) {
    int rc = fastmsg_net_init();
    if (rc) return rc;
    SOCKET s = WSASocketW(family, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET) return last_error();
    if ((rc = set_flags(s))) {
        closesocket(s);
        return rc;
    }
    return as_fd(s);
}

int fastmsg_listen(const struct sockaddr *addr, socklen_t len, int backlog, int v6only) {
    int fd = new_socket(addr->sa_family);
    if (fd < 0) return fd;
    SOCKET s = (SOCKET)fd;
    DWORD v6 = (DWORD)v6only;
    /* Neither address option: SO_REUSEADDR lets another socket take a bound port over there, and
     * SO_EXCLUSIVEADDRUSE keeps a new listener off a port while connections accepted by a closed
     * one linger (as the engine's closes do). Windows's default lets a new listener bind then. */
    if (addr->sa_family == AF_INET6) setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, (const char *)&v6, sizeof v6);
    if (bind(s, addr, len) != 0 || listen(s, backlog) != 0) {
        int err = last_error();
        closesocket(s);
        return err;
    }
    return fd;
}

int fastmsg_local_addr(int fd, struct sockaddr_storage *out, socklen_t *len) {
    *len = sizeof *out;
    return getsockname((SOCKET)fd, (struct sockaddr *)out, len) != 0 ? last_error() : 0;
}

int fastmsg_accept(int lfd) {
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    SOCKET s = accept((SOCKET)lfd, (struct sockaddr *)&peer, &len);
    if (s == INVALID_SOCKET) return last_error();
    int rc = set_flags(s);
    if (rc) {
        closesocket(s);
        return rc;
    }
    tune_stream(s, peer.ss_family);
    return as_fd(s);
}

int fastmsg_connect_start(const struct sockaddr *addr, socklen_t len) {
    int fd = new_socket(addr->sa_family);
    if (fd < 0) return fd;
    SOCKET s = (SOCKET)fd;
    tune_stream(s, addr->sa_family);
    if (connect(s, addr, len) != 0 && WSAGetLastError() != WSAEWOULDBLOCK) { /* (in progress) */
        int err = last_error();
        closesocket(s);
        return err;
    }
    return fd;
}

int fastmsg_connect_result(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt((SOCKET)fd, SOL_SOCKET, SO_ERROR, (char *)&err, &len) != 0) return last_error();
    return err ? -fastmsg_wsa_errno(err) : 0;
}

int fastmsg_wait_readable(int fd, int64_t timeout_ns) {
    WSAPOLLFD p = {.fd = (SOCKET)fd, .events = POLLRDNORM};
    int ms = timeout_ns <= 0 ? 0 : (int)((timeout_ns + 999999) / 1000000);
    int n = WSAPoll(&p, 1, ms);
    if (n < 0) return last_error();
    return n > 0;
}

ptrdiff_t fastmsg_read(int fd, void *buf, size_t len) {
    int n = recv((SOCKET)fd, buf, len > INT_MAX ? INT_MAX : (int)len, 0);
    return n < 0 ? last_error() : n;
}

/* Winsock has no per-call MSG_DONTWAIT: the engine's sockets stay non-blocking and wait in
 * WSAPoll. */
int fastmsg_set_read_wait(int fd, int64_t timeout_ns) {
    (void)fd;
    (void)timeout_ns;
    return -EOPNOTSUPP;
}

ptrdiff_t fastmsg_read_wait(int fd, void *buf, size_t len) {
    (void)fd;
    (void)buf;
    (void)len;
    return -EOPNOTSUPP;
}

/* WSABUFs per WSASend: a longer gather is a short write, which callers handle anyway. */
#define WSABUF_MAX 64

ptrdiff_t fastmsg_writev(int fd, const struct iovec *iov, int n) {
    WSABUF bufs[WSABUF_MAX];
    DWORD sent = 0;
    int k = 0;
    for (; k < n && k < WSABUF_MAX; k++) { /* a WSABUF's length is 32-bit: a longer one goes in part */
        bufs[k].buf = iov[k].iov_base;
        bufs[k].len = iov[k].iov_len > ULONG_MAX ? ULONG_MAX : (ULONG)iov[k].iov_len;
        if (bufs[k].len != iov[k].iov_len) {
            k++;
            break;
        }
    }
    if (WSASend((SOCKET)fd, bufs, (DWORD)k, &sent, 0, NULL, NULL) != 0) return last_error();
    return (ptrdiff_t)sent;
}

void fastmsg_close(int fd) {
    if (fd >= 0) closesocket((SOCKET)fd);
}

/* A second handle of the same socket, for this process (the descriptor dup() would give). */
int fastmsg_dup(int fd) {
    WSAPROTOCOL_INFOW info;
    if (WSADuplicateSocketW((SOCKET)fd, GetCurrentProcessId(), &info) != 0) return last_error();
    SOCKET s = WSASocketW(FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, FROM_PROTOCOL_INFO, &info, 0,
                          WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (s == INVALID_SOCKET) return last_error();
    return as_fd(s);
}

void fastmsg_shutdown(int fd) {
    if (fd >= 0) shutdown((SOCKET)fd, SD_BOTH);
}

/* Bytes read per call when draining a socket before close. */
#define DRAIN_CHUNK 4096

void fastmsg_drain(int fd) {
    uint8_t buf[DRAIN_CHUNK];
    while (fastmsg_read(fd, buf, sizeof buf) > 0) {
    }
}

/* Idle time and probe interval in milliseconds (SIO_KEEPALIVE_VALS). Windows sends 10 probes, a
 * count this call cannot change: a tenth of the timeout apart, they end about where the POSIX
 * version's three do, at twice `dead_peer_ms`. */
void fastmsg_keepalive(int fd, uint32_t dead_peer_ms) {
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    struct tcp_keepalive ka;
    DWORD out = 0;
    if (getsockname((SOCKET)fd, (struct sockaddr *)&addr, &len) != 0) return;
    if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) return;
    ka.onoff = 1;
    ka.keepalivetime = dead_peer_ms ? dead_peer_ms : 1000;
    ka.keepaliveinterval = dead_peer_ms / 10 ? dead_peer_ms / 10 : 100;
    WSAIoctl((SOCKET)fd, SIO_KEEPALIVE_VALS, &ka, sizeof ka, NULL, 0, &out, NULL, NULL);
}

#endif
