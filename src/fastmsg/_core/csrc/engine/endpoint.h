/* What the I/O loop knows of the things it drives. Every object registered with a poller starts
 * with an fm_endpoint (the poller's data pointer is its address), and its ops say what to do with
 * it. The loop calls through the table only, so a new kind of endpoint needs no change to it. */
#ifndef FASTMSG_ENGINE_ENDPOINT_H
#define FASTMSG_ENGINE_ENDPOINT_H

#include <stddef.h>
#include <stdint.h>

typedef struct fm_endpoint fm_endpoint;

/* An object that is only registered with a poller (a connection, a listener, a wake-up fd) needs
 * only `event`; one that joins the loop (a sender, a receiver) fills in all five. */
typedef struct fm_endpoint_ops {
    /* Joins the loop (I/O thread, from a command): 0, or -errno and it stays out. May be NULL. */
    int (*attach)(fm_endpoint *ep);
    /* Leaves the loop (I/O thread): closes and unregisters its fds; its owner frees it after. */
    void (*detach)(fm_endpoint *ep);
    /* Once per loop round: timers and pending work; lowers *next_deadline to when it wants the
     * next round. */
    void (*step)(fm_endpoint *ep, int64_t now, int64_t *next_deadline);
    /* The poller reported `events` (FASTMSG_POLL_*) for the fd registered with this endpoint. */
    void (*event)(fm_endpoint *ep, uint32_t events, int64_t now);
    /* 1 if the next step has work at once: the loop must not sleep. */
    int (*has_work)(fm_endpoint *ep);
} fm_endpoint_ops;

struct fm_endpoint {
    const fm_endpoint_ops *ops;
    fm_endpoint *next; /* in the loop's list of attached endpoints (I/O thread only) */
};

/* The object of type `type` whose member `member` is at `ptr`. */
#define FM_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#endif
