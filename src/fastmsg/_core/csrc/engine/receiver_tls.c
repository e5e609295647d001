#define _GNU_SOURCE
/* A receiver connection's TLS handshake (Receiver ssl=): it runs before the HELLO, under the same
 * handshake deadline. A peer that starts in plaintext is told so in plaintext, as it could not
 * read anything else; a failed handshake is counted (tls_failures) and its reason kept for
 * stats()["last_error"]; the certificate's names then meet the allow list. */
#include <stdlib.h>
#include <string.h>

#include "engine/receiver_internal.h"

/* Every TLS connection starts with a handshake record (content type 22). */
#define TLS_HANDSHAKE_RECORD 0x16

/* The first byte the peer sent, left in the socket; -1 while there is none. */
static int first_byte(int fd) {
    uint8_t first;
    return recv(fd, (char *)&first, 1, MSG_PEEK | MSG_DONTWAIT) == 1 ? first : -1;
}

static int refuse_plaintext(fm_rxconn *c) {
    static const char text[] = "this receiver requires TLS (give the Sender ssl=)";
    uint8_t frame[FM_RXCONN_OUT_MAX];
    struct iovec iov = {frame, fastmsg_encode_error(frame, FASTMSG_PERR_NOT_ALLOWED, text, sizeof text - 1)};
    fastmsg_writev(c->fd, &iov, 1); /* best effort, in plaintext: the peer reads nothing else */
    fm_receiver_note_refusal(c->rx, FM_TLS_FAILURES, "refused a sender", text);
    fm_rxconn_close_as(c, 1); /* lingering: the ERROR is not cut off by a reset */
    return -1;
}

int fm_receiver_names_allowed(const fm_receiver *rx, const fm_tls *t) {
    if (!rx->cfg.nnames) return 1;
    for (uint32_t i = 0; i < rx->cfg.nnames; i++)
        if (fm_tls_peer_has_name(t, rx->cfg.names[i].name, (int)rx->cfg.names[i].kind)) return 1;
    return 0;
}

int fm_rxconn_tls_step(fm_rxconn *c) {
    if (c->tls_wait == FM_TLS_WAIT_FIRST) { /* (later records are encrypted: any type) */
        int first = first_byte(c->fd);
        if (first >= 0 && first != TLS_HANDSHAKE_RECORD) return refuse_plaintext(c);
        if (first >= 0) c->tls_wait = FM_TLS_WAIT_HANDSHAKE;
    }
    int rc = fm_tls_handshake(c->tls);
    if (rc == FM_TLS_WANT_READ || rc == FM_TLS_WANT_WRITE) {
        fm_rxconn_set_interest(c, rc == FM_TLS_WANT_READ ? FASTMSG_POLL_IN : FASTMSG_POLL_OUT);
        return 1;
    }
    if (rc < 0) {
        fm_receiver_note_refusal(c->rx, FM_TLS_FAILURES, "TLS with a sender failed", fm_tls_error(c->tls));
        fm_rxconn_close(c);
        return -1;
    }
    c->tls_wait = 0;
    const char *const *names;
    if (fm_tls_peer_names(c->tls, &names)) {
        char *name = strdup(names[0]);
        if (!name || !(c->buf->peer = strdup(names[0]))) {
            free(name);
            fm_rxconn_close(c);
            return -1;
        }
        fm_mutex_lock(&c->rx->conns_lock);
        c->peer_name = name;
        fm_mutex_unlock(&c->rx->conns_lock);
    }
    fm_rxconn_set_interest(c, FASTMSG_POLL_IN);
    if (!fm_receiver_names_allowed(c->rx, c->tls))
        return fm_rxconn_refuse_why(c, FASTMSG_PERR_NOT_ALLOWED, "its certificate's names are not in the allow list");
    return 0;
}
