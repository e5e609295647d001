/* A connection's byte stream: the socket itself, or TLS over it (tls.h) when `tls` is set. The
 * engine reads and writes through these, so that both have one contract (netio.h's). */
#ifndef FASTMSG_STREAM_H
#define FASTMSG_STREAM_H

#include "net/netio.h"
#include "net/tls.h"

static inline ptrdiff_t fm_io_read(int fd, fm_tls *tls, void *buf, size_t len) {
    return tls ? fm_tls_read(tls, buf, len) : fastmsg_read(fd, buf, len);
}

static inline ptrdiff_t fm_io_writev(int fd, fm_tls *tls, const struct iovec *iov, int n) {
    return tls ? fm_tls_writev(tls, iov, n) : fastmsg_writev(fd, iov, n);
}

/* What TLS took but could not write yet: 0 once written (always, without TLS), -EAGAIN while the
 * socket is full, or -errno. */
static inline int fm_io_flush(fm_tls *tls) { return tls ? fm_tls_flush(tls) : 0; }

#endif
