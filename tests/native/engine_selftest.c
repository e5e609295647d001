/* The I/O engine from its C API (engine/engine.h), as the Python layer drives it: a Sender and a
 * Receiver in one process over loopback TCP, each message checked byte by byte and in order, then
 * both sides' counters. The sender's ring is small, so the producer keeps waiting for room that
 * only the receiver's acknowledgements give back: the whole path (poller, waker, sockets, rings,
 * handshake, DATA, ACK) works or the run stalls. Then the receiver is closed and made again on
 * its port: the sender notices, reconnects (refused until it is back) and carries on. Usage:
 * engine_selftest MESSAGES. Built and run under wine by tests/test_windows_native.py (the poller
 * there: WSAPoll). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/thread.h"
#include "engine/engine.h"
#include "engine/waker.h"
#include "net/netio.h"


static uint64_t first, total; /* the messages [first, total) of the current round */
static uint32_t len_of(uint64_t seq) { return (uint32_t)(seq * 7 % 301); }
static uint8_t byte_of(uint64_t seq, uint32_t j) { return (uint8_t)(seq * 131 + j * 7); }
static int64_t deadline(void) { return fastmsg_monotonic_ns() + (int64_t)30 * 1000000000; }

static void *produce(void *arg) {
    fm_sender *s = arg;
    fastmsg_ring *ring = fm_sender_ring(s);
    for (uint64_t seq = first; seq < total; seq++) {
        uint32_t len = len_of(seq);
        uint8_t *p;
        while ((p = fastmsg_ring_reserve(ring, len, 0)) == NULL) {
            uint64_t target = fastmsg_ring_space_target(ring, len);
            if (fastmsg_ring_wait_space(ring, target, deadline()) == FASTMSG_WAIT_TIMEOUT) {
                printf("producer: no room for 30 s at %llu\n", (unsigned long long)seq);
                failures++;
                return NULL;
            }
        }
        for (uint32_t j = 0; j < len; j++) p[j] = byte_of(seq, j);
        fastmsg_ring_commit(ring, len);
        fm_sender_kick(s);
    }
    return NULL;
}

/* Checks the messages of one DATA frame; returns the next sequence number expected. */
static uint64_t check_frame(const uint8_t *body, uint64_t seq) {
    uint32_t skip = fastmsg_data_skip(body), count = fastmsg_data_count(body);
    const uint8_t *p = fastmsg_data_records(body);
    for (uint32_t i = 0; i < count; i++, p += fastmsg_ring_slot(fastmsg_rec_len(p))) {
        if (i < skip) continue; /* (resent after a reconnect: none here) */
        uint32_t len = fastmsg_rec_len(p);
        int bad = len != len_of(seq) || fastmsg_rec_flags(p) != 0;
        for (uint32_t j = 0; !bad && j < len; j++) bad = p[FASTMSG_REC_HDR + j] != byte_of(seq, j);
        if (bad && failures++ < 5) printf("message %llu is wrong\n", (unsigned long long)seq);
        seq++;
    }
    return seq;
}

static void consume(fm_receiver *rx) {
    fastmsg_ring r;
    fastmsg_ring_rec rec;
    for (uint64_t seq = first; seq < total;) {
        fm_rxbuf *b = fm_receiver_next_ready(rx);
        if (!b) {
            if (fm_receiver_wait(rx, deadline()) != FASTMSG_WAIT_READY) {
                printf("consumer: nothing for 30 s at %llu\n", (unsigned long long)seq);
                failures++;
                return;
            }
            continue;
        }
        fastmsg_ring_init(&r, fm_rxbuf_ctl(b), fm_rxbuf_data(b), fm_rxbuf_capacity(b));
        int got;
        while ((got = fastmsg_ring_next(&r, &rec)) > 0) {
            if (rec.flags == FASTMSG_DATA) seq = check_frame(rec.data, seq);
            CHECK(rec.flags != FM_RX_EXTERNAL); /* (no frame here outgrows the ring) */
            /* Frames go back in order, each once read (control frames too: the I/O thread has
             * acted on them); an acknowledgement due goes out from here, or the I/O thread's. */
            fastmsg_ring_release(&r, rec.end);
            if (fm_rxbuf_space_released(b) && fm_receiver_write_acks(rx) != 0) fm_rxbuf_ack_kick(b);
        }
        CHECK(got == 0);
        fm_receiver_done(rx, b, r.rpos);
    }
}

/* The waker alone (the loop would still progress without it, on its idle timeout): a signal
 * makes the read end readable, a drain empties it. */
static void check_waker(void) {
    fm_waker w = {.rd = -1, .wr = -1};
    CHECK(fm_waker_open(&w) == 0);
    CHECK(fastmsg_wait_readable(w.rd, 0) == 0);
    fm_waker_signal(&w);
    CHECK(fastmsg_wait_readable(w.rd, 5000000000LL) == 1);
    fm_waker_drain(&w);
    CHECK(fastmsg_wait_readable(w.rd, 0) == 0);
    fm_waker_close(&w);
    CHECK(w.rd == -1 && w.wr == -1);
}

/* The end of a round whose producer thread is sending [first, total): each message checked here
 * as it arrives, then every one acknowledged (the sender's ring released up to what it wrote). */
static void finish_round(fm_sender *s, fm_receiver *rx, fm_thread producer) {
    consume(rx);
    fm_thread_join(producer);
    fm_sender_ask_ack(s);
    CHECK(fastmsg_ring_wait_space(fm_sender_ring(s), fm_sender_ring(s)->wpos, deadline()) == FASTMSG_WAIT_READY);
    CHECK(fm_sender_unacked(s) == 0);
}

static fm_receiver *new_receiver(fm_ctx *ctx, struct sockaddr_storage *addr, socklen_t len) {
    fm_error err = {0};
    fm_receiver_config rc;
    memset(&rc, 0, sizeof rc);
    rc.conn_ring_capacity = 1 << 16;
    rc.max_message = 1 << 12;
    rc.max_batch = 1 << 14;
    rc.max_connections = 4;
    rc.max_sessions = 4;
    rc.handshake_timeout_ms = 5000;
    rc.reply_hwm_bytes = 1 << 20;
    fm_receiver *rx = fm_receiver_new(ctx, (struct sockaddr *)addr, len, &rc, &err);
    if (!rx) printf("fm_receiver_new: %s\n", err.text);
    return rx;
}

int main(int argc, char **argv) {
    total = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000;
    check_waker();
    struct sockaddr_storage addr;
    socklen_t len;
    fm_error err = {0};
    uint64_t sent[FM_STAT_COUNT], recvd[FM_STAT_COUNT];

    fm_ctx *ctx = fm_ctx_new(FASTMSG_POLLER_AUTO, &err);
    if (!ctx) {
        printf("fm_ctx_new: %s\n", err.text);
        return 1;
    }
    printf("poller: %s\n", fm_ctx_poller_name(ctx));
    CHECK(fastmsg_make_sockaddr(AF_INET, "127.0.0.1", 0, 0, NULL, &addr, &len) == 0);

    fm_receiver *rx = new_receiver(ctx, &addr, len);
    if (!rx) return 1;
    CHECK(fm_receiver_local_addr(rx, &addr, &len) == 0);

    fm_sender_config sc;
    memset(&sc, 0, sizeof sc);
    sc.ring_capacity = 1 << 13; /* a few dozen messages: the producer waits for acknowledgements */
    sc.hwm_bytes = 1 << 13;
    sc.max_message = 1 << 12;
    sc.max_batch = 1 << 14;
    sc.session_id = 0x5eed5eed5eed5eedull;
    sc.handshake_timeout_ms = 5000;
    fm_sender *s = fm_sender_new(ctx, (struct sockaddr *)&addr, len, &sc, &err);
    if (!s) {
        printf("fm_sender_new: %s\n", err.text);
        return 1;
    }

    uint64_t n = total;
    fm_thread producer;
    CHECK(fm_thread_start(&producer, produce, s) == 0);
    finish_round(s, rx, producer);
    CHECK(fm_sender_connected(s));
    fm_sender_stats(s, sent);
    fm_receiver_stats(rx, recvd);
    CHECK(sent[FM_SENT_MESSAGES] == n && recvd[FM_RECV_MESSAGES] == n && sent[FM_ACKED] == n);
    CHECK(sent[FM_CONNECTS] == 1 && recvd[FM_ACCEPTS] == 1 && recvd[FM_CRC_ERRORS] == 0);
    CHECK(recvd[FM_ACKS] > 0);

    /* The receiver goes; messages are queued meanwhile; it comes back on the same port, and the
     * sender reconnects and goes on (what it wrote to the dead connection, it writes again). */
    fm_receiver_close(rx);
    first = n, total = n + n / 4;
    CHECK(fm_thread_start(&producer, produce, s) == 0);
    if (!(rx = new_receiver(ctx, &addr, len))) return 1;
    finish_round(s, rx, producer);
    fm_sender_stats(s, sent);
    fm_receiver_stats(rx, recvd);
    CHECK(sent[FM_CONNECTS] == 2 && sent[FM_SENT_MESSAGES] - sent[FM_RESENT] == total);
    CHECK(recvd[FM_RECV_MESSAGES] == total - n && recvd[FM_ACCEPTS] == 1);

    fm_sender_close(s);
    fm_receiver_close(rx);
    fm_ctx_free(ctx);
    printf("%llu + %llu messages over loopback TCP, a reconnect between, %lu failures\n", (unsigned long long)n,
           (unsigned long long)(total - n), failures);
    return failures != 0;
}
