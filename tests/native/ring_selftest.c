/* The ring from C: a producer thread and a consumer thread stream records of every length from 0
 * to 60 (or the most the ring takes) through a small ring, in single and batched form, with blocking waits on both sides.
 * Each record's bytes are derived from its sequence number, so a torn, reordered, lost or
 * repeated record fails. Usage: ring_selftest CAPACITY RECORDS. Prints "N records, 0 failures". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "base/thread.h"
#include "ring/ring.h"

static fastmsg_ring ring;
static uint64_t total, max_len;

static uint32_t len_of(uint64_t seq) { return (uint32_t)(seq % (max_len + 1)); }
static uint8_t byte_of(uint64_t seq, uint32_t j) { return (uint8_t)(seq * 131 + j); }

static int64_t deadline(void) { return fastmsg_monotonic_ns() + (int64_t)30 * 1000000000; }

static void *produce(void *arg) {
    int aborted = 0;
    (void)arg;
    for (uint64_t seq = 0; seq < total; seq++) {
        uint32_t len = len_of(seq);
        uint8_t *p;
        while ((p = fastmsg_ring_reserve(&ring, len, (uint32_t)(seq & 0xffff))) == NULL) {
            fastmsg_ring_publish(&ring); /* anything staged must be visible before we wait */
            if (fastmsg_ring_wait_space(&ring, fastmsg_ring_space_target(&ring, len), deadline()) ==
                FASTMSG_WAIT_TIMEOUT) {
                fprintf(stderr, "producer: no space for 30 s at %llu\n", (unsigned long long)seq);
                exit(2);
            }
        }
        for (uint32_t j = 0; j < len; j++)
            p[j] = byte_of(seq, j);
        if (seq % 7 == 3 && !aborted) { /* now and then a reservation that is dropped, then redone */
            fastmsg_ring_abort(&ring);
            aborted = 1;
            seq--;
            continue;
        }
        aborted = 0;
        if (seq % 16 < 8)
            fastmsg_ring_commit(&ring, len);
        else /* batches of 8 published with one store */
            fastmsg_ring_stage(&ring, len), (seq % 16 == 15 ? fastmsg_ring_publish(&ring) : (void)0);
    }
    fastmsg_ring_publish(&ring);
    return NULL;
}

static void *consume(void *arg) {
    fastmsg_ring_rec recs[5];
    uint64_t seq = 0;
    (void)arg;
    while (seq < total) {
        ptrdiff_t n = fastmsg_ring_next_many(&ring, recs, 1 + seq % 5);
        if (n < 0) {
            fprintf(stderr, "consumer: layout broken at %llu\n", (unsigned long long)seq);
            exit(3);
        }
        if (n == 0) {
            if (fastmsg_ring_wait_data(&ring, deadline()) == FASTMSG_WAIT_TIMEOUT) {
                fprintf(stderr, "consumer: nothing for 30 s at %llu\n", (unsigned long long)seq);
                exit(2);
            }
            continue;
        }
        for (ptrdiff_t i = 0; i < n; i++, seq++) {
            int bad = recs[i].len != len_of(seq) || recs[i].flags != (uint32_t)(seq & 0xffff);
            for (uint32_t j = 0; !bad && j < recs[i].len; j++)
                bad = recs[i].data[j] != byte_of(seq, j);
            if (bad && failures++ < 5)
                fprintf(stderr, "record %llu is wrong\n", (unsigned long long)seq);
        }
        fastmsg_ring_release(&ring, recs[n - 1].end);
    }
    return NULL;
}

#define EXPECT(cond)                                                                                   \
    do {                                                                                               \
        if (!(cond)) {                                                                                 \
            fprintf(stderr, "line %d: %s\n", __LINE__, #cond);                                        \
            failures++;                                                                                \
        }                                                                                              \
    } while (0)

static void put(fastmsg_ring *r, uint32_t len, uint32_t flags) {
    uint8_t *p = fastmsg_ring_reserve(r, len, flags);
    if (!p) {
        fprintf(stderr, "no room for %u bytes\n", len);
        exit(4);
    }
    memset(p, 0x5a, len);
    fastmsg_ring_commit(r, len);
}

/* Takes the run and moves the cursor past it, as the I/O engine does once it is written. */
static size_t take(fastmsg_ring *r, uint64_t max_bytes, uint32_t max_len, uint32_t stop_flags, fastmsg_ring_run *run) {
    size_t n = fastmsg_ring_readable_run(r, max_bytes, max_len, stop_flags, run);
    r->rpos = run->end;
    r->rcount += n;
    fastmsg_ring_release(r, run->end);
    return n;
}

/* fastmsg_ring_readable_run, single-threaded: each of its stops, and a PAD at the cursor. */
static void check_runs(void) {
    enum { CAP = 256, STOP = 0x40000000 };
    static fastmsg_ring_ctl ctl;
    static uint8_t data[CAP];
    fastmsg_ring r;
    fastmsg_ring_run run;
    fastmsg_ring_init(&r, &ctl, data, CAP);
    EXPECT(take(&r, 1000, UINT32_MAX, 0, &run) == 0 && run.end == run.start);
    put(&r, 8, 0), put(&r, 3, 0), put(&r, 16, STOP), put(&r, 1, 0);
    EXPECT(take(&r, 1000, UINT32_MAX, STOP, &run) == 2 && run.payload == 11 && run.end - run.start == 32);
    EXPECT(take(&r, 1000, UINT32_MAX, STOP, &run) == 0 && fastmsg_rec_flags(run.data) == STOP); /* stops before it */
    EXPECT(take(&r, 1000, UINT32_MAX, 0, &run) == 2 && run.payload == 17);
    put(&r, 40, 0), put(&r, 40, 0), put(&r, 41, 0), put(&r, 8, 0);
    EXPECT(take(&r, 100, 40, 0, &run) == 2); /* the 41-byte record is over max_len */
    EXPECT(take(&r, 10, UINT32_MAX, 0, &run) == 1 && run.payload == 41); /* the first goes even past max_bytes */
    EXPECT(take(&r, 10, UINT32_MAX, 0, &run) == 1 && run.payload == 8);
    /* The cursor is at offset 240: a 24-byte record takes a PAD to the end and starts at 0. */
    put(&r, 24, 0);
    EXPECT(take(&r, 1000, UINT32_MAX, 0, &run) == 1 && run.start % CAP == 0 && run.payload == 24);
    /* From offset 32: two records, then a PAD at 232 before the third: the run stops there. */
    put(&r, 100, 0), put(&r, 80, 0), put(&r, 24, 0);
    EXPECT(take(&r, 1000, UINT32_MAX, 0, &run) == 2 && run.payload == 180 && run.end % CAP == 232);
    EXPECT(fastmsg_rec_flags(data + 232) & FASTMSG_REC_PAD);
    EXPECT(take(&r, 1000, UINT32_MAX, 0, &run) == 1 && run.start % CAP == 0 && run.payload == 24);
    EXPECT(fastmsg_ring_pending_records(&r) == 0 && r.rpos == fastmsg_load_acquire64(&ctl.tail));
}

int main(int argc, char **argv) {
    uint64_t capacity = argc > 1 ? strtoull(argv[1], NULL, 10) : 4096;
    fastmsg_ring_ctl *ctl = calloc(1, sizeof *ctl);
    uint8_t *data = calloc(1, capacity);
    fm_thread p, c;
    total = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    if (!ctl || !data)
        return 1;
    check_runs();
    fastmsg_ring_init(&ring, ctl, data, capacity);
    max_len = fastmsg_ring_max_payload(capacity) < 60 ? fastmsg_ring_max_payload(capacity) : 60;
    if (fm_thread_start(&c, consume, NULL) || fm_thread_start(&p, produce, NULL))
        return 1;
    fm_thread_join(p);
    fm_thread_join(c);
    if (fastmsg_load_acquire64(&ctl->head) != fastmsg_load_acquire64(&ctl->tail))
        failures++;
    printf("%llu records, %lu failures\n", (unsigned long long)total, failures);
    free(ctl);
    free(data);
    return failures != 0;
}
