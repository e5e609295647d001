/* Whether anything listens at an address. A Receiver about to bind ipc://path asks it of the
 * socket file it finds there, and removes the file only if nothing does (its owner died without
 * closing). Built on netio, so the same on POSIX and on Winsock, whose Python has no AF_UNIX. */
#include "net/netio.h"

#ifdef _WIN32
#define poll WSAPoll
typedef WSAPOLLFD probe_pollfd;
#else
#include <errno.h>
#include <poll.h>
#include <unistd.h>
typedef struct pollfd probe_pollfd;
#endif

int fastmsg_probe_listener(const struct sockaddr *addr, socklen_t len, int64_t timeout_ns) {
    int fd = fastmsg_connect_start(addr, len);
    if (fd < 0) return fd; /* refused at once (as POSIX Unix sockets are) */
    /* Connected, or in progress (TCP; Winsock's Unix sockets may be): its end makes the socket
     * writable, and its outcome is then the socket's error. Unanswered in time: taken as alive. */
    probe_pollfd p = {.fd = fd, .events = POLLOUT};
    int n = poll(&p, 1, (int)((timeout_ns + 999999) / 1000000));
    int rc = n > 0 ? fastmsg_connect_result(fd) : 0;
    fastmsg_close(fd);
    return rc;
}

int fastmsg_family_supported(int family) {
#ifdef _WIN32
    int rc = fastmsg_net_init();
    if (rc) return rc;
    SOCKET s = socket(family, SOCK_STREAM, 0);
    if (s == INVALID_SOCKET) return -fastmsg_wsa_errno(WSAGetLastError());
    closesocket(s);
#else
    int fd = socket(family, SOCK_STREAM, 0);
    if (fd < 0) return -errno;
    close(fd);
#endif
    return 0;
}
