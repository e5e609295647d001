/* The socket headers of the platform, and the few POSIX names Winsock spells otherwise: the
 * engine's sockets are `int` everywhere (net/netio.h says why that holds on Windows). */
#ifndef FASTMSG_SOCK_H
#define FASTMSG_SOCK_H

#include <stddef.h>

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <afunix.h> /* AF_UNIX stream sockets, Windows 10 1803 and later */

/* The engine gathers writes in iovecs; netio_win.c hands them to WSASend as WSABUFs (whose fields
 * are the other way round and 32-bit). */
struct iovec {
    void *iov_base;
    size_t iov_len;
};
#ifndef SHUT_WR
#define SHUT_WR SD_SEND
#define SHUT_RDWR SD_BOTH
#endif
/* Every engine socket is non-blocking already (ioctlsocket FIONBIO). */
#ifndef MSG_DONTWAIT
#define MSG_DONTWAIT 0
#endif
/* netio_win.c: the errno value for a Winsock error code (WSAEWOULDBLOCK: EAGAIN...), and
 * WSAStartup, once per process (0 or -errno); every socket made in netio calls it first. */
int fastmsg_wsa_errno(int wsa);
int fastmsg_net_init(void);
#else
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#endif

#endif
