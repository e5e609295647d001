/* Who may connect, looked at on accept: the allow list's networks (a peer over a Unix socket has
 * no address: networks do not apply to it) and max_connections_per_source. Key ids are checked
 * at the handshake (receiver_auth.c). */
#include <string.h>

#include "engine/receiver_internal.h"

/* The peer's IP address in 16 bytes (IPv4 in the first 4, as fm_allow_net) and its family, 4 or
 * 6; an IPv4-mapped IPv6 address counts as IPv4. 0 for a peer with no IP address. */
static int ip_of(const struct sockaddr_storage *ss, uint8_t out[16]) {
    memset(out, 0, 16);
    if (ss->ss_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)ss)->sin_addr, 4);
        return 4;
    }
    if (ss->ss_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a, mapped, 12) == 0) {
            memcpy(out, a + 12, 4);
            return 4;
        }
        memcpy(out, a, 16);
        return 6;
    }
    return 0;
}

static int in_net(const fm_allow_net *n, int family, const uint8_t ip[16]) {
    if (n->family != family) return 0;
    uint32_t full = n->prefix / 8, rest = n->prefix % 8;
    if (memcmp(n->addr, ip, full) != 0) return 0;
    if (!rest) return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (n->addr[full] & mask) == (ip[full] & mask);
}

const char *fm_receiver_check_peer(fm_receiver *rx, const struct sockaddr_storage *peer, int *code) {
    uint8_t ip[16];
    int family = ip_of(peer, ip);
    if (!family) return NULL; /* a Unix socket's peer: the file's permissions say who connects */
    const fm_receiver_config *cfg = &rx->cfg;
    if (cfg->nnets) {
        int ok = 0;
        for (uint32_t i = 0; i < cfg->nnets && !ok; i++) ok = in_net(&cfg->nets[i], family, ip);
        if (!ok) {
            *code = FASTMSG_PERR_NOT_ALLOWED;
            return "address not allowed";
        }
    }
    if (cfg->max_per_source) {
        uint32_t same = 0;
        for (fm_rxconn *c = rx->conns; c; c = c->next) {
            uint8_t other[16];
            if (ip_of(&c->peer, other) == family && memcmp(other, ip, 16) == 0) same++;
        }
        if (same >= cfg->max_per_source) {
            *code = FASTMSG_PERR_LIMIT;
            return "too many connections from this address";
        }
    }
    return NULL;
}
