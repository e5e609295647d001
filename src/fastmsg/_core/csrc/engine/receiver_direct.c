/* Who reads a receiver's sockets: the I/O thread, or a thread blocked in recv that reads them
 * itself (fm_receiver_wait_direct), sparing the I/O thread's wake-up and the consumer's futex.
 * A token says who holds them now; after its wait a reader keeps them for a lease, and the I/O
 * thread takes them back when it runs out. Also the loop's operations on a receiver. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "engine/receiver_internal.h"

/* How long after a reader's wait the sockets stay with the reader (see fm_receiver.lent): long
 * against a round trip, short against a heartbeat. Each lease's end wakes the I/O thread, which
 * on one CPU lands in a round trip: 50 ms rather than 10 took one-CPU p99/p50 from 2.5-3.7 to
 * 1.7-3.0 (both sides' leases, docs/architecture.md). */
#define LEASE_NS (50 * FM_MS)
/* How long a reader that found the token taken waits on the ready queue before trying again. */
#define RETRY_NS (100 * 1000)
/* Events taken from the receiver's poller per wait. */
#define EVENTS_PER_WAIT 64
/* The longest single wait of a reader without a deadline; it then waits again. */
#define MAX_WAIT_MS (3600 * 1000)
/* A reader that answers requests sleeps in its sole connection's read (fm_rxconn_read_wait) for
 * this long at most: the listener and the waker wait meanwhile (a new connection, close(), a
 * reply queued by another thread). The timeout is counted in the kernel's ticks (it slept 4-12
 * ms for 2 on a 250 Hz kernel), so the wait's deadline must be this much further away, as a
 * requester's (sender_direct.c). */
#define READ_WAIT_NS (2 * FM_MS)
#define READ_WAIT_SLACK_NS (40 * FM_MS)
/* ... and looks at the listener and the waker, without sleeping, at least this often. */
#define NEST_LOOK_NS (1 * FM_MS)

/* Hands each event to the endpoint registered with its fd: the listener, a connection, or the
 * waker (`interrupted` says why it was signalled). */
static void dispatch(const fastmsg_poll_event *ev, int n, int64_t now) {
    for (int i = 0; i < n; i++) {
        fm_endpoint *ep = ev[i].data;
        ep->ops->event(ep, ev[i].events, now);
    }
}

/* The connections' timers, and reading again where the consumer released space (token held).
 * Heartbeat deadlines go to rx->hb_next_ns, and acknowledgement ones to *ack_next, not *next:
 * the I/O thread waits for them, a reader is woken for them and arms no timer. */
static void step_held(fm_receiver *rx, int64_t now, int64_t *next, int64_t *ack_next) {
    int64_t hb_next = INT64_MAX; /* heartbeat hook */
    fm_receiver_resume_accepting(rx, now, next);
    fm_replies_step(rx, now, ack_next); /* (first: an ACK due goes with a reply) */
    fm_acks_step(rx, now, ack_next);
    for (fm_rxconn *c = rx->conns, *n; c; c = n) {
        n = c->next;
        if (c->closing) {
            if (now >= c->deadline_ns) fm_rxconn_close(c);
            else if (c->deadline_ns < *next) *next = c->deadline_ns;
            continue;
        }
        if (!c->ready) {
            if (now >= c->deadline_ns) { /* no HELLO in time (or no TLS handshake) */
                FM_STAT_ADD(rx, c->tls_wait ? FM_TLS_FAILURES : FM_PROTOCOL_ERRORS, 1);
                fm_rxconn_close(c);
                continue;
            }
            if (c->deadline_ns < *next) *next = c->deadline_ns;
        }
        /* heartbeat hook: PINGs and the dead-peer timeout (receiver_heartbeat.c) */
        if (c->ready && fm_rxconn_hb_step(c, now, &hb_next) < 0) continue;
        if (fm_rxconn_reply_step(c, now, &hb_next) < 0) continue; /* (a reader is woken for it too) */
        int paid = fm_rxconn_rate_step(c, now, next); /* rate limit hook: a pause is over */
        int released = __atomic_load_n(&c->buf->resume, __ATOMIC_SEQ_CST);
        if (released) {
            __atomic_store_n(&c->buf->resume, 0, __ATOMIC_SEQ_CST);
            __atomic_store_n(&c->buf->blocked, 0, __ATOMIC_SEQ_CST);
        }
        if (paid || released) {
            fm_rxconn_set_interest(c, c->interest | FASTMSG_POLL_IN);
            if (paid && fm_rxconn_parse_read(c) < 0) continue;
            fm_rxconn_pump_in(c);
        }
    }
    __atomic_store_n(&rx->hb_next_ns, hb_next == INT64_MAX ? 0 : hb_next, __ATOMIC_RELAXED); /* heartbeat hook */
}

/* With busy_poll (busy_poll.h): until *look_end, looks at the sockets without sleeping; a
 * crowded CPU ends the looking for the rest of the wait (*look_end = 0). Events, or 0. */
static int busy_poll(fm_receiver *rx, fastmsg_poll_event *ev, int64_t now, int64_t *look_end) {
    if (now >= *look_end) return 0;
    for (;;) {
        int n = fastmsg_poller_wait(rx->poller, ev, EVENTS_PER_WAIT, 0);
        if (n != 0 || fastmsg_monotonic_ns() >= *look_end) return n;
        if (!fm_busy_poll_yield(&rx->busy)) {
            *look_end = 0;
            return 0;
        }
    }
}

/* An exchange: a reply was queued since the last wait (this thread, or another, answers
 * requests). Decided once a wait. */
static int exchange(fm_receiver *rx) {
    uint64_t replies = __atomic_load_n(&rx->replies_queued, __ATOMIC_RELAXED);
    int yes = replies != rx->busy_replies;
    rx->busy_replies = replies;
    return yes;
}

/* The connection whose read this wait may sleep in, or NULL (the poller's wait, which sees the
 * listener and the waker too): in an exchange that this thread answers, the request comes on it
 * next, and the read spares the poller's wait and wake-up (some 2-3 us of a one-CPU round trip).
 * The sole connection, plain, with nothing to write and nothing holding its reads back. */
static fm_rxconn *read_wait_conn(fm_receiver *rx, int64_t now, int64_t deadline_ns) {
    fm_rxconn *c = rx->conns;
    if (!c || c->next || (deadline_ns >= 0 && deadline_ns - now < READ_WAIT_NS + READ_WAIT_SLACK_NS)) return NULL;
    if (!c->ready || c->closing || c->retired || c->tls || c->tls_wait || c->big || c->big_done || c->rate_until_ns ||
        c->out_len || c->rout_len || c->read_waits < 0 || (c->interest & (FASTMSG_POLL_IN | FASTMSG_POLL_OUT)) != FASTMSG_POLL_IN)
        return NULL;
    if (!c->read_waits) c->read_waits = fastmsg_set_read_wait(c->fd, READ_WAIT_NS) == 0 ? 1 : -1;
    return c->read_waits > 0 ? c : NULL;
}

/* The connection this reader sleeps in the reads of leaves the receiver's poller (parked) until
 * a wait of the poller's needs it, or the lease ends: otherwise each request's arrival would also
 * run the poller's callback, and the nest's (some 2% of a one-CPU round trip). Token held. */
static void park(fm_receiver *rx, fm_rxconn *c) {
    if (rx->parked == c) return;
    if (fastmsg_poller_park(rx->poller, c->fd) == 0) rx->parked = c;
}

/* Back in the poller, or the connection goes: unwatched, it would stall (putting it back can fail
 * where leaving could not: no memory, or the user's epoll watches all taken). Its sender
 * reconnects and sends again what was not acknowledged. */
static void unpark(fm_receiver *rx) {
    fm_rxconn *c = rx->parked;
    if (!c) return;
    rx->parked = NULL;
    int rc = fastmsg_poller_unpark(rx->poller, c->fd, c->interest);
    if (rc) {
        fm_receiver_note_refusal(rx, FM_ACCEPT_ERRORS, "watching a connection again", strerror(-rc));
        fm_rxconn_close(c);
    }
}

int fm_receiver_wait_direct(fm_receiver *rx, int64_t deadline_ns) {
    fm_ctx *ctx = rx->ctx;
    if (rx->poller == ctx->poller) return fm_receiver_wait(rx, deadline_ns);
    while (!fm_token_take(&rx->token)) {
        /* The I/O thread holds it for a moment. It may leave the sockets lent (unwatched), so
         * wait for its records only briefly before trying again. */
        int64_t until = fastmsg_monotonic_ns() + RETRY_NS;
        if (deadline_ns >= 0 && deadline_ns <= until) return fm_receiver_wait(rx, deadline_ns);
        int rc = fm_receiver_wait(rx, until);
        if (rc != FASTMSG_WAIT_TIMEOUT) return rc;
    }
    if (!rx->lent) { /* the I/O thread stops watching these sockets */
        fastmsg_poller_rearm(ctx->poller, fastmsg_poller_fd(rx->poller), 0);
        rx->lent = 1;
    }
    fastmsg_poll_event ev[EVENTS_PER_WAIT];
    int rc = FASTMSG_WAIT_TIMEOUT;
    int answering = exchange(rx);
    int reads = answering && __atomic_load_n(&rx->last_replier, __ATOMIC_RELAXED) == (const void *)&fm_progress;
    int64_t now = fastmsg_monotonic_ns(), start = now;
    int64_t looking = fm_busy_poll_end(&rx->busy, now, deadline_ns, answering);
    for (;;) {
        /* No timer unless a deadline needs one: arming and cancelling one costs more than the
         * rest of the wait (a VM exit each, in a virtual machine). */
        int64_t next = INT64_MAX, ack_next = INT64_MAX;
        step_held(rx, now, &next, &ack_next);
        /* Acknowledgements not yet due arm no timer here either: the I/O thread, which looks in
         * every lease, wakes this wait through the waker once they are (receiver_step). */
        __atomic_store_n(&rx->ack_due_ns, ack_next, __ATOMIC_RELEASE);
        if (fm_receiver_has_ready(rx)) {
            rc = FASTMSG_WAIT_READY;
            break;
        }
        if (__atomic_load_n(&rx->interrupted, __ATOMIC_SEQ_CST)) {
            rc = FASTMSG_WAIT_INTERRUPTED;
            break;
        }
        if (deadline_ns >= 0) {
            if (now >= deadline_ns) break;
            if (deadline_ns < next) next = deadline_ns;
        }
        int64_t wait_ms = next == INT64_MAX ? -1 : (next - now + FM_MS - 1) / FM_MS;
        int timeout_ms = wait_ms > MAX_WAIT_MS ? MAX_WAIT_MS : (int)wait_ms;
        if (now < looking) unpark(rx); /* (the looks are the poller's) */
        int n = busy_poll(rx, ev, now, &looking);
        fm_rxconn *c = n == 0 && reads ? read_wait_conn(rx, now, deadline_ns) : NULL;
        if (c) park(rx, c);
        if (c && now - rx->nest_look_ns >= NEST_LOOK_NS) { /* the listener and the waker first */
            n = fastmsg_poller_wait(rx->poller, ev, EVENTS_PER_WAIT, 0);
            rx->nest_look_ns = now;
            if (n != 0) c = NULL;
        }
        if (c) {
            int got = fm_rxconn_read_wait(c, &now);
            if (got == -EINTR) {
                rc = FASTMSG_WAIT_INTERRUPTED;
                break;
            }
            reads = got; /* nothing came for a read's timeout: the rest of this wait is the poller's */
            /* A request came: back to the caller at once. The step's other work (ACKs due,
             * heartbeats, timers) is the next wait's, a round trip away in a request loop, or the
             * I/O thread's at the lease's end; replies queued by another thread go now. (The step
             * ran twice a round trip, some 330 instructions each.) */
            if (got > 0 && fm_receiver_has_ready(rx) && !__atomic_load_n(&rx->rq_len, __ATOMIC_SEQ_CST)) {
                rc = FASTMSG_WAIT_READY;
                break;
            }
            continue;
        }
        if (n == 0) {
            unpark(rx);
            n = fastmsg_poller_wait(rx->poller, ev, EVENTS_PER_WAIT, timeout_ms);
        }
        if (n == -EINTR) {
            rc = FASTMSG_WAIT_INTERRUPTED;
            break;
        }
        now = fastmsg_monotonic_ns();
        rx->nest_look_ns = now;
        dispatch(ev, n, now);
    }
    if (rc != FASTMSG_WAIT_INTERRUPTED) fm_busy_poll_learn(&rx->busy, rc == FASTMSG_WAIT_READY ? now - start : INT64_MAX);
    rx->lease_end_ns = now + LEASE_NS;
    __atomic_store_n(&rx->ack_due_ns, INT64_MAX, __ATOMIC_RELEASE);
    fm_token_give(&rx->token);
    return rc;
}

/* Writes what the calling thread made due, when it can take the sockets: the replies queued
 * (`replies`), then the acknowledgements due. 0 if done; -1 if the I/O thread (or a reader) has to
 * write them, or another ACK is due at once. */
static int write_held(fm_receiver *rx, int replies) {
    fm_ctx *ctx = rx->ctx;
    if (rx->poller == ctx->poller) return -1; /* poll(): the poller is the I/O thread's alone */
    if (!fm_token_take(&rx->token)) return -1; /* the I/O thread or a reader: it writes them */
    int lent = rx->lent;
    int64_t now = fastmsg_monotonic_ns(), next = INT64_MAX;
    if (replies) fm_replies_step(rx, now, &next);
    fm_acks_step(rx, now, &next);
    fm_token_give(&rx->token);
    /* The I/O thread may have found the token taken meanwhile and disarmed the nest, expecting a
     * reader's lease to arm it again (nest_event): restore what `lent` says, as it would have.
     * Only then: re-arming a nest with sockets ready wakes the I/O thread. */
    if (__atomic_exchange_n(&rx->nest_off, 0, __ATOMIC_SEQ_CST) && !lent)
        fastmsg_poller_rearm(ctx->poller, fastmsg_poller_fd(rx->poller), FASTMSG_POLL_IN);
    return next <= now ? -1 : 0; /* another ACK is due at once (more was released): the I/O thread */
}

int fm_receiver_write_acks(fm_receiver *rx) {
    /* The consumer's release made an ACK due. Kicking the I/O thread to write it cost more than
     * the write: on a CPU shared with the consumer (a process pinned to one), the woken thread
     * ran only once the consumer blocked, some 150 us later, by which time the sender had run
     * out of window and the receive ring had drained (Unix sockets, 1 KiB batches, split
     * pinning: -21% against no ACKs at all). So the releasing thread writes it, as a reader
     * holding the sockets would. */
    return write_held(rx, 0);
}

int fm_receiver_write_replies(fm_receiver *rx) {
    /* A reply handed to the I/O thread waited for it to be scheduled: on one CPU, until the
     * replier blocked in its next recv(); the replier writes it itself instead, with an ACK of
     * what it released in the same writev. */
    return write_held(rx, 1);
}

/* ---- the loop's operations (I/O thread) ---- */

static int receiver_attach(fm_endpoint *ep) {
    fm_receiver *rx = FM_CONTAINER_OF(ep, fm_receiver, ep);
    if (rx->poller == rx->ctx->poller) return fastmsg_poller_add(rx->poller, rx->lfd, FASTMSG_POLL_IN, &rx->listener);
    return fastmsg_poller_add(rx->ctx->poller, fastmsg_poller_fd(rx->poller), FASTMSG_POLL_IN, &rx->nest);
}

static void receiver_detach(fm_endpoint *ep) {
    fm_receiver *rx = FM_CONTAINER_OF(ep, fm_receiver, ep);
    /* Python closes a receiver only when no thread is in recv: a holder gives it back soon. */
    while (!fm_token_take(&rx->token)) fm_yield();
    int64_t next = INT64_MAX;
    __atomic_store_n(&rx->rq_held_ns, 0, __ATOMIC_SEQ_CST); /* (a batch's too) */
    fm_replies_step(rx, fastmsg_monotonic_ns(), &next); /* replies given before close() are written (the sockets linger) */
    fm_acks_flush(rx); /* what the application released before close() is acknowledged */
    while (rx->conns) fm_rxconn_close_as(rx->conns, 1);
    fastmsg_poller_remove(rx->poller, rx->lfd);
    if (rx->poller != rx->ctx->poller) fastmsg_poller_remove(rx->ctx->poller, fastmsg_poller_fd(rx->poller));
    fastmsg_close(rx->lfd);
    rx->lfd = -1;
}

/* Skipped while a reader holds the token: the reader runs the same timers itself, and this
 * thread looks again a lease later to take the sockets back. */
static void receiver_step(fm_endpoint *ep, int64_t now, int64_t *next) {
    fm_receiver *rx = FM_CONTAINER_OF(ep, fm_receiver, ep);
    if (!fm_token_take(&rx->token)) {
        /* A reader holds the sockets, and runs the timers itself, but arms none for
         * acknowledgements: wake it once they are due, at this thread's next look (a lease
         * later at the latest) rather than at the deadline itself. A reader answering requests
         * sends each ACK with the next reply, so the deadline it leaves moves on by a round trip
         * at a time: waking for it only to find it moved cost this thread a wake-up for about
         * every millisecond of requests, each landing in a round trip. An ACK that a reader
         * leaves when requests stop goes out up to a lease late; the sender, reading its socket
         * on a lease of the same length, mostly reads it no sooner, flush() asks for one at
         * once, and a quarter of the sender's window makes one due at once. */
        int64_t ack_due = __atomic_load_n(&rx->ack_due_ns, __ATOMIC_ACQUIRE);
        if (ack_due != INT64_MAX && now >= ack_due && rx->wake.wr >= 0) {
            __atomic_store_n(&rx->ack_due_ns, INT64_MAX, __ATOMIC_RELEASE);
            fm_waker_signal(&rx->wake);
        }
        if (now + LEASE_NS < *next) *next = now + LEASE_NS;
        fm_receiver_hb_nudge(rx, now); /* heartbeat hook: the reader runs the timers */
        /* Replies queued for a reader that missed reply()'s wake-up: it writes them. */
        if (fm_replies_due(rx, now, next) && rx->wake.wr >= 0) fm_waker_signal(&rx->wake);
        return;
    }
    if (rx->lent) {
        if (now >= rx->lease_end_ns) {
            rx->lent = 0;
            unpark(rx);
            fastmsg_poller_rearm(rx->ctx->poller, fastmsg_poller_fd(rx->poller), FASTMSG_POLL_IN);
        } else if (rx->lease_end_ns < *next) {
            *next = rx->lease_end_ns;
        }
    }
    /* On a lease, acknowledgement deadlines wait for its end, as above: the reader, back in its
     * next recv(), runs them itself (and with a reply, sends them). An ACK due at once is not
     * put off. */
    int64_t ack_next = INT64_MAX;
    step_held(rx, now, next, &ack_next);
    if (rx->lent && ack_next > now && ack_next < rx->lease_end_ns) ack_next = rx->lease_end_ns;
    if (ack_next < *next) *next = ack_next;
    if (rx->hb_next_ns) fm_hb_lower(next, rx->hb_next_ns); /* heartbeat hook */
    fm_token_give(&rx->token);
}

static int receiver_has_work(fm_endpoint *ep) {
    fm_receiver *rx = FM_CONTAINER_OF(ep, fm_receiver, ep);
    /* A reader holding the token resumes the connections itself (at the latest when its wait
     * slice ends). */
    if (!fm_token_take(&rx->token)) return 0;
    int64_t unused = INT64_MAX;
    int work = fm_replies_due(rx, fastmsg_monotonic_ns(), &unused); /* replies to write */
    for (fm_rxconn *c = rx->conns; c && !work; c = c->next)
        work = (int)__atomic_load_n(&c->buf->resume, __ATOMIC_SEQ_CST);
    fm_token_give(&rx->token);
    return work;
}

const fm_endpoint_ops fm_receiver_ops = {
    .attach = receiver_attach,
    .detach = receiver_detach,
    .step = receiver_step,
    .has_work = receiver_has_work,
};

/* The nested poller has ready fds: the I/O thread reads them, unless a reader holds the token. */
static void nest_event(fm_endpoint *ep, uint32_t events, int64_t now) {
    (void)events;
    fm_receiver *rx = FM_CONTAINER_OF(ep, fm_receiver, nest);
    int nest = fastmsg_poller_fd(rx->poller);
    if (!fm_token_take(&rx->token)) {
        /* A reader took it and is about to take the sockets on lease (the nest disarmed); do
         * that now, or the level-triggered nest would spin this thread while the reader is
         * preempted. receiver_step arms the nest again when the lease ends; if the token is
         * free again already, this thread restores what `lent` says at once. */
        __atomic_store_n(&rx->nest_off, 1, __ATOMIC_SEQ_CST);
        fastmsg_poller_rearm(rx->ctx->poller, nest, 0);
        if (!fm_token_take(&rx->token)) return;
        __atomic_store_n(&rx->nest_off, 0, __ATOMIC_SEQ_CST);
        if (!rx->lent) fastmsg_poller_rearm(rx->ctx->poller, nest, FASTMSG_POLL_IN);
    }
    fastmsg_poll_event ev[EVENTS_PER_WAIT];
    int n = fastmsg_poller_wait(rx->poller, ev, EVENTS_PER_WAIT, 0);
    dispatch(ev, n, now);
    fm_token_give(&rx->token);
}

const fm_endpoint_ops fm_nest_ops = {.event = nest_event};
