/* The ring from C: a producer thread and a consumer thread stream records of every length from 0
 * to 60 (or the most the ring takes) through a small ring, in single and batched form, with blocking waits on both sides.
 * Each record's bytes are derived from its sequence number, so a torn, reordered, lost or
 * repeated record fails. Usage: ring_selftest CAPACITY RECORDS. Prints "N records, 0 failures". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "ring/ring.h"

static fastmsg_ring ring;
static uint64_t total, max_len;
static unsigned long failures;

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

int main(int argc, char **argv) {
    uint64_t capacity = argc > 1 ? strtoull(argv[1], NULL, 10) : 4096;
    fastmsg_ring_ctl *ctl = calloc(1, sizeof *ctl);
    uint8_t *data = calloc(1, capacity);
    pthread_t p, c;
    total = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    if (!ctl || !data)
        return 1;
    fastmsg_ring_init(&ring, ctl, data, capacity);
    max_len = fastmsg_ring_max_payload(capacity) < 60 ? fastmsg_ring_max_payload(capacity) : 60;
    pthread_create(&c, NULL, consume, NULL);
    pthread_create(&p, NULL, produce, NULL);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    if (fastmsg_load_acquire64(&ctl->head) != fastmsg_load_acquire64(&ctl->tail))
        failures++;
    printf("%llu records, %lu failures\n", (unsigned long long)total, failures);
    free(ctl);
    free(data);
    return failures != 0;
}
