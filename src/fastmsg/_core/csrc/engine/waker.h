/* A wake-up fd for a thread waiting in a poller: an eventfd (rd == wr), a pipe elsewhere, or a
 * loopback TCP pair on Windows (WSAPoll waits on sockets only). */
#ifndef FASTMSG_ENGINE_WAKER_H
#define FASTMSG_ENGINE_WAKER_H

#include "engine/endpoint.h"

typedef struct fm_waker {
    fm_endpoint ep; /* registered with the poller; by default an event drains the fd */
    int rd, wr;     /* -1 when closed */
} fm_waker;

/* Opens the fd(s): 0, or -errno with the waker left closed. */
int fm_waker_open(fm_waker *w);
void fm_waker_signal(fm_waker *w);
void fm_waker_drain(fm_waker *w);
/* Idempotent; a waker that was never opened must have rd == wr == -1. */
void fm_waker_close(fm_waker *w);

#endif
