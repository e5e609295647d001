/* See command.h. */
#include "engine/command.h"

#include <stddef.h>

#include "base/futex.h"

/* A waiter re-checks its command this often even without a wake-up. */
#define WAIT_SLICE_NS (10 * 1000000LL)

int fm_cmd_queue_init(fm_cmd_queue *q) {
    q->head = NULL;
    return fm_mutex_init(&q->lock);
}

void fm_cmd_queue_destroy(fm_cmd_queue *q) { fm_mutex_destroy(&q->lock); }

void fm_cmd_queue_push(fm_cmd_queue *q, fm_cmd *cmd) {
    cmd->done = 0;
    fm_mutex_lock(&q->lock);
    cmd->next = q->head;
    __atomic_store_n(&q->head, cmd, __ATOMIC_SEQ_CST);
    fm_mutex_unlock(&q->lock);
}

fm_cmd *fm_cmd_queue_take(fm_cmd_queue *q) {
    fm_mutex_lock(&q->lock);
    fm_cmd *list = q->head;
    __atomic_store_n(&q->head, NULL, __ATOMIC_SEQ_CST);
    fm_mutex_unlock(&q->lock);
    fm_cmd *ordered = NULL;
    while (list) {
        fm_cmd *next = list->next;
        list->next = ordered;
        ordered = list;
        list = next;
    }
    return ordered;
}

int fm_cmd_queue_pending(fm_cmd_queue *q) { return __atomic_load_n(&q->head, __ATOMIC_SEQ_CST) != NULL; }

void fm_cmd_finish(fm_cmd *cmd, int result) {
    cmd->result = result;
    __atomic_store_n(&cmd->done, 1, __ATOMIC_RELEASE);
    fastmsg_futex_wake_all(&cmd->done);
}

int fm_cmd_wait(fm_cmd *cmd) {
    while (!__atomic_load_n(&cmd->done, __ATOMIC_ACQUIRE)) fastmsg_futex_wait(&cmd->done, 0, WAIT_SLICE_NS, 0);
    return cmd->result;
}
