/* Non-blocking stream sockets for the engine: listen, accept, connect, and errno-style results.
 * Addresses come resolved from Python (struct sockaddr bytes), so no name lookup happens here.
 * A socket is an int everywhere: netio.c for POSIX, netio_win.c for Winsock (a SOCKET fits). */
#ifndef FASTMSG_NETIO_H
#define FASTMSG_NETIO_H

#include <stddef.h>
#include <stdint.h>

#include "net/sock.h"

/* A listening socket bound to addr; returns the fd or -errno. For AF_UNIX a stale socket file
 * is not removed here: the caller decides. `v6only`: an AF_INET6 socket takes IPv6 connections
 * only (0: IPv4 ones too, as IPv4-mapped addresses). */
int fastmsg_listen(const struct sockaddr *addr, socklen_t len, int backlog, int v6only);

/* The bound address of fd (to learn an ephemeral port); 0 or -errno. */
int fastmsg_local_addr(int fd, struct sockaddr_storage *out, socklen_t *len);

/* Accepts one connection, non-blocking and close-on-exec; fd, -EAGAIN when none, or -errno. */
int fastmsg_accept(int lfd);

/* Starts a non-blocking connect; fd (connected or in progress) or -errno. */
int fastmsg_connect_start(const struct sockaddr *addr, socklen_t len);

/* The outcome of a connect that became writable: 0 or -errno. */
int fastmsg_connect_result(int fd);

/* 0 if something accepts connections at addr (or may: no answer within timeout_ns), else the
 * connect's -errno: -ECONNREFUSED when nothing listens there (probe.c). */
int fastmsg_probe_listener(const struct sockaddr *addr, socklen_t len, int64_t timeout_ns);
/* 0 if this system makes stream sockets of `family`, else -errno (-EAFNOSUPPORT: Windows before
 * 10 1803 has no AF_UNIX) (probe.c). */
int fastmsg_family_supported(int family);

/* read/writev that retry EINTR and never block; bytes, 0 at EOF (read), -EAGAIN, or -errno. */
ptrdiff_t fastmsg_read(int fd, void *buf, size_t len);
ptrdiff_t fastmsg_writev(int fd, const struct iovec *iov, int n);

/* timeout_ns > 0: fastmsg_read_wait on fd blocks until bytes come, for up to about timeout_ns
 * (the kernel rounds it up to its tick); 0: the socket is non-blocking again. 0 or -errno
 * (-EOPNOTSUPP where reads cannot block this way: Windows). Why: a poll() with a timeout arms a
 * high-resolution timer each time it sleeps, which a virtual machine may pay with an exit to the
 * hypervisor; a read's own timeout rides the kernel's tick. */
int fastmsg_set_read_wait(int fd, int64_t timeout_ns);
/* One read that waits as fastmsg_set_read_wait set: bytes, 0 at EOF, -EAGAIN once the timeout
 * passed, -EINTR when a signal came (not retried: the caller's handlers run), or -errno. */
ptrdiff_t fastmsg_read_wait(int fd, void *buf, size_t len);

/* Waits up to timeout_ns (rounded up to whole ms) for fd to be readable (or to fail, or reach
 * EOF): 1, 0 on timeout, or -errno (-EINTR when a signal came). */
int fastmsg_wait_readable(int fd, int64_t timeout_ns);

void fastmsg_close(int fd);
/* A second descriptor of fd's socket (close-on-exec), or -errno. */
int fastmsg_dup(int fd);
/* Ends the connection both ways, whatever other descriptors of it are open. */
void fastmsg_shutdown(int fd);

/* Reads and drops whatever the peer sent that is waiting in the socket (non-blocking), so that a
 * close() that follows ends with a FIN: closing with unread bytes makes the kernel reset the
 * connection and drop what is still queued to send. */
void fastmsg_drain(int fd);

/* TCP keepalive as a backstop under the heartbeats: a peer silent for about twice
 * `dead_peer_ms` is dropped by the kernel even if nothing else notices. Idle time, probe interval
 * and count are set where the platform has them; a no-op on a socket that is not TCP. */
void fastmsg_keepalive(int fd, uint32_t dead_peer_ms);

/* Builds a socket address: AF_INET/AF_INET6 from a numeric host, port and IPv6 scope, or AF_UNIX
 * from a path. 0, or -EINVAL for an address that does not parse or a path that does not fit. */
int fastmsg_make_sockaddr(int family, const char *host, int port, uint32_t scope_id, const char *path,
                          struct sockaddr_storage *out, socklen_t *len);

/* The numeric host and port of an AF_INET/AF_INET6 address. 0 or -EINVAL. */
int fastmsg_sockaddr_host_port(const struct sockaddr_storage *addr, char *host, size_t hostlen, int *port);

#endif
