/* Socket addresses from their parts and back (netio.h), the same calls in POSIX and Winsock. */
#define _GNU_SOURCE
#include "net/netio.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#ifndef _WIN32
#include <arpa/inet.h>
#include <sys/un.h>
#endif

int fastmsg_make_sockaddr(int family, const char *host, int port, uint32_t scope_id, const char *path,
                          struct sockaddr_storage *out, socklen_t *len) {
    memset(out, 0, sizeof *out);
#ifdef _WIN32
    if (fastmsg_net_init()) return -EINVAL; /* (inet_pton needs WSAStartup) */
#endif
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)out;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return -EINVAL;
        *len = sizeof *a;
        return 0;
    }
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)out;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_scope_id = scope_id;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return -EINVAL;
        *len = sizeof *a;
        return 0;
    }
    if (family == AF_UNIX) {
        struct sockaddr_un *a = (struct sockaddr_un *)out;
        size_t n = strlen(path);
        if (n == 0 || n >= sizeof a->sun_path) return -EINVAL;
        a->sun_family = AF_UNIX;
        memcpy(a->sun_path, path, n + 1);
        *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        return 0;
    }
    return -EINVAL;
}

int fastmsg_sockaddr_host_port(const struct sockaddr_storage *addr, char *host, size_t hostlen, int *port) {
    if (addr->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)addr;
        *port = ntohs(a->sin_port);
        return inet_ntop(AF_INET, &a->sin_addr, host, (socklen_t)hostlen) ? 0 : -EINVAL;
    }
    if (addr->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)addr;
        *port = ntohs(a->sin6_port);
        return inet_ntop(AF_INET6, &a->sin6_addr, host, (socklen_t)hostlen) ? 0 : -EINVAL;
    }
    return -EINVAL;
}
