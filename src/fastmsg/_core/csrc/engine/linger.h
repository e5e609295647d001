/* A closed connection's last moments. Closing a TCP socket while the peer's bytes are unread, or
 * arrive after, makes the kernel reset the connection and drop whatever it still had to send.
 * A socket handed here is half-closed instead (FIN after the queued bytes), kept in the poller
 * and drained until the peer closes too, or a deadline passes; then it is closed and forgotten.
 * It joins the loop as an endpoint of its own, so the sender that gave it up can be freed. */
#ifndef FASTMSG_ENGINE_LINGER_H
#define FASTMSG_ENGINE_LINGER_H

#include <stdint.h>

#include "engine/loop.h"

/* I/O thread: takes over fd (already out of every poller) for at most `linger_ns`. If it cannot
 * (no memory, the poller refuses), closes fd at once. */
void fm_linger_start(fm_ctx *ctx, int fd, int64_t linger_ns, int64_t now);

#endif
