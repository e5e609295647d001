/* See netio.h. */
#define _GNU_SOURCE
#include "net/netio.h"

#ifndef _WIN32
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <stddef.h>
#include <sys/time.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <string.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: SO_NOSIGPIPE is set on the socket instead */
#endif

static int set_flags(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) return -errno;
#ifdef SO_NOSIGPIPE
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    return 0;
}

/* Messages are batched by the engine, so Nagle's delay would only add latency. */
static void tune_stream(int fd, int family) {
    int one = 1;
    if (family == AF_INET || family == AF_INET6) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int new_socket(int family) {
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0) return -errno;
    int rc = set_flags(fd);
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

int fastmsg_listen(const struct sockaddr *addr, socklen_t len, int backlog, int v6only) {
    int fd = new_socket(addr->sa_family);
    if (fd < 0) return fd;
    int one = 1;
    if (addr->sa_family != AF_UNIX) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* Set either way: the system's default (net.ipv6.bindv6only) differs between hosts. */
    if (addr->sa_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
    if (bind(fd, addr, len) < 0 || listen(fd, backlog) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int fastmsg_local_addr(int fd, struct sockaddr_storage *out, socklen_t *len) {
    *len = sizeof *out;
    return getsockname(fd, (struct sockaddr *)out, len) < 0 ? -errno : 0;
}

int fastmsg_accept(int lfd) {
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    int fd;
    do {
        fd = accept(lfd, (struct sockaddr *)&peer, &len);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return (errno == EWOULDBLOCK) ? -EAGAIN : -errno;
    int rc = set_flags(fd);
    if (rc) {
        close(fd);
        return rc;
    }
    tune_stream(fd, peer.ss_family);
    return fd;
}

int fastmsg_connect_start(const struct sockaddr *addr, socklen_t len) {
    int fd = new_socket(addr->sa_family);
    if (fd < 0) return fd;
    tune_stream(fd, addr->sa_family);
    int rc;
    do {
        rc = connect(fd, addr, len);
    } while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS && errno != EAGAIN) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

int fastmsg_connect_result(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
    return -err;
}

int fastmsg_wait_readable(int fd, int64_t timeout_ns) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ms = timeout_ns <= 0 ? 0 : (int)((timeout_ns + 999999) / 1000000);
    int n = poll(&p, 1, ms);
    if (n < 0) return -errno;
    return n > 0;
}

/* MSG_DONTWAIT: these never block, even while a requester has its socket blocking for its reads
 * (fastmsg_set_read_wait): the file flag is the socket's, and so shared with every other user. */
ptrdiff_t fastmsg_read(int fd, void *buf, size_t len) {
    ssize_t n;
    do {
        n = recv(fd, buf, len, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return (errno == EWOULDBLOCK) ? -EAGAIN : -errno;
    return n;
}

int fastmsg_set_read_wait(int fd, int64_t timeout_ns) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -errno;
    if (timeout_ns > 0) {
        struct timeval tv = {(time_t)(timeout_ns / 1000000000), (suseconds_t)(timeout_ns % 1000000000 / 1000)};
        if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) return -errno;
        fl &= ~O_NONBLOCK;
    } else {
        fl |= O_NONBLOCK;
    }
    return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

ptrdiff_t fastmsg_read_wait(int fd, void *buf, size_t len) {
    ssize_t n = recv(fd, buf, len, 0);
    if (n < 0) return (errno == EWOULDBLOCK) ? -EAGAIN : -errno;
    return n;
}

/* Writes of up to this many bytes in several pieces are copied together and sent with send():
 * for the small frames of a request or a reply (a header, a record, an ACK in front), the copy
 * costs less than sendmsg's own work, copying in the message header and the iovec array and
 * filling the socket buffer piece by piece (docs/architecture.md, "Two cuts"). */
#define GATHER_MAX 512

ptrdiff_t fastmsg_writev(int fd, const struct iovec *iov, int n) {
    const int flags = MSG_NOSIGNAL | MSG_DONTWAIT; /* a closed peer: an error code, never SIGPIPE */
    uint8_t gathered[GATHER_MAX];
    const void *one = n == 1 ? iov[0].iov_base : NULL;
    size_t len = n == 1 ? iov[0].iov_len : 0;
    for (int i = 0; !one && i < n && len <= GATHER_MAX; i++) len += iov[i].iov_len;
    if (!one && len <= GATHER_MAX) {
        size_t at = 0;
        for (int i = 0; i < n; i++) {
            if (iov[i].iov_len) memcpy(gathered + at, iov[i].iov_base, iov[i].iov_len);
            at += iov[i].iov_len;
        }
        one = gathered;
    }
    ssize_t w;
    if (one) {
        do w = send(fd, one, len, flags);
        while (w < 0 && errno == EINTR);
    } else {
        struct msghdr msg = {0};
        msg.msg_iov = (struct iovec *)iov;
        msg.msg_iovlen = (size_t)n;
        do w = sendmsg(fd, &msg, flags);
        while (w < 0 && errno == EINTR);
    }
    if (w < 0) return (errno == EWOULDBLOCK) ? -EAGAIN : -errno;
    return w;
}

void fastmsg_close(int fd) {
    if (fd >= 0) close(fd);
}

int fastmsg_dup(int fd) {
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return d < 0 ? -errno : d;
}

void fastmsg_shutdown(int fd) {
    if (fd >= 0) shutdown(fd, SHUT_RDWR);
}

/* Bytes read per call when draining a socket before close. */
#define DRAIN_CHUNK 4096

void fastmsg_drain(int fd) {
    uint8_t buf[DRAIN_CHUNK];
    while (fastmsg_read(fd, buf, sizeof buf) > 0) {
    }
}

/* Keepalive probes before the kernel gives up on a silent peer. */
#define KEEPALIVE_PROBES 3

void fastmsg_keepalive(int fd, uint32_t dead_peer_ms) {
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0) return;
    if (addr.ss_family != AF_INET && addr.ss_family != AF_INET6) return;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0) return;
    /* Whole seconds, at least 1: idle for the dead-peer timeout, then KEEPALIVE_PROBES probes
     * a third of it apart. */
    int idle = (int)((dead_peer_ms + 999) / 1000), intvl = (int)((dead_peer_ms + 2999) / 3000), cnt = KEEPALIVE_PROBES;
    if (idle < 1) idle = 1;
    if (intvl < 1) intvl = 1;
#if defined(TCP_KEEPIDLE)
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
#elif defined(TCP_KEEPALIVE) /* macOS */
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPALIVE, &idle, sizeof idle);
#endif
#ifdef TCP_KEEPINTVL
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
#endif
#ifdef TCP_KEEPCNT
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
#endif
    (void)intvl;
    (void)cnt;
}

#endif
