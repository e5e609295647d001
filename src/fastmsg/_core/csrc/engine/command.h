/* Commands from Python threads to the I/O thread: attach an endpoint to the loop, or detach it.
 * A command lives in the frame of the thread that sends it, which waits until it has run. */
#ifndef FASTMSG_ENGINE_COMMAND_H
#define FASTMSG_ENGINE_COMMAND_H

#include "base/thread.h"
#include <stdint.h>

#include "engine/endpoint.h"

typedef enum { FM_CMD_ATTACH, FM_CMD_DETACH } fm_cmd_kind;

typedef struct fm_cmd {
    fm_cmd_kind kind;
    fm_endpoint *ep;
    int result;          /* ATTACH: 0 or -errno, from the endpoint's attach */
    uint32_t done;       /* futex word: 1 once the I/O thread has run it */
    struct fm_cmd *next;
} fm_cmd;

typedef struct {
    fm_mutex lock;
    fm_cmd *head; /* newest first; written under the lock, peeked at without it */
} fm_cmd_queue;

/* 0, or an errno value. */
int fm_cmd_queue_init(fm_cmd_queue *q);
void fm_cmd_queue_destroy(fm_cmd_queue *q);
void fm_cmd_queue_push(fm_cmd_queue *q, fm_cmd *cmd);
/* Empties the queue; returns its commands in the order they came. */
fm_cmd *fm_cmd_queue_take(fm_cmd_queue *q);
/* 1 if a command waits (no lock: the loop's test before it sleeps). */
int fm_cmd_queue_pending(fm_cmd_queue *q);

/* I/O thread: stores the result and wakes the sender. The command may be gone once this returns,
 * so read its `next` before. */
void fm_cmd_finish(fm_cmd *cmd, int result);
/* Sender: waits (without the GIL) until the command has run; returns its result. */
int fm_cmd_wait(fm_cmd *cmd);

#endif
