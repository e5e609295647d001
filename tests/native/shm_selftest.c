/* A SharedRing segment on Windows (a named file mapping): create, attach, their errors, unlink,
 * and records streamed from this process to a child that attaches by name. Across processes a
 * waiter is not woken (WaitOnAddress is per process) and finds the data when its bounded wait
 * ends (base/futex_win.c): the stream checks that this still arrives, complete and in order.
 * Usage: shm_selftest RECORDS (the child: shm_selftest child NAME RECORDS). Built and run under
 * wine by tests/test_windows_native.py; elsewhere it compiles to nothing (a Windows-only test). */
#ifndef _WIN32
typedef int fm_shm_selftest_is_windows_only;
#else
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ring/shm.h"

#define WIN32_LEAN_AND_MEAN
#include <windows.h>


static uint32_t len_of(uint64_t seq) { return (uint32_t)(seq % 61); }
static uint8_t byte_of(uint64_t seq, uint32_t j) { return (uint8_t)(seq * 131 + j); }
static int64_t deadline(void) { return fastmsg_monotonic_ns() + (int64_t)30 * 1000000000; }

static int child(const char *name, uint64_t total) {
    fastmsg_shm s;
    fastmsg_ring r;
    fastmsg_ring_rec rec;
    if (fastmsg_shm_attach(name, &s) != FASTMSG_SHM_OK) {
        printf("child: cannot attach %s\n", name);
        return 2;
    }
    fastmsg_ring_init(&r, s.ctl, s.data, s.capacity);
    for (uint64_t seq = 0; seq < total;) {
        int got = fastmsg_ring_next(&r, &rec);
        if (got < 0) {
            printf("child: layout broken at %llu\n", (unsigned long long)seq);
            return 3;
        }
        if (got == 0) {
            if (fastmsg_ring_wait_data(&r, deadline()) == FASTMSG_WAIT_TIMEOUT) {
                printf("child: nothing for 30 s at %llu\n", (unsigned long long)seq);
                return 2;
            }
            continue;
        }
        int bad = rec.len != len_of(seq);
        for (uint32_t j = 0; !bad && j < rec.len; j++) bad = rec.data[j] != byte_of(seq, j);
        if (bad && failures++ < 5) printf("child: record %llu is wrong\n", (unsigned long long)seq);
        fastmsg_ring_release(&r, rec.end);
        seq++;
    }
    fastmsg_shm_unmap(&s);
    return failures != 0;
}

static void produce(fastmsg_shm *s, uint64_t total) {
    fastmsg_ring r;
    fastmsg_ring_init(&r, s->ctl, s->data, s->capacity);
    for (uint64_t seq = 0; seq < total; seq++) {
        uint32_t len = len_of(seq);
        uint8_t *p;
        while ((p = fastmsg_ring_reserve(&r, len, 0)) == NULL) {
            if (fastmsg_ring_wait_space(&r, fastmsg_ring_space_target(&r, len), deadline()) == FASTMSG_WAIT_TIMEOUT) {
                printf("producer: no space for 30 s at %llu\n", (unsigned long long)seq);
                failures++;
                return;
            }
        }
        for (uint32_t j = 0; j < len; j++) p[j] = byte_of(seq, j);
        fastmsg_ring_commit(&r, len);
    }
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "child") == 0) return child(argv[2], strtoull(argv[3], NULL, 10));
    uint64_t total = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000;
    char name[64], missing[64], cmd[MAX_PATH + 128];
    snprintf(name, sizeof name, "/fastmsg-selftest-%lu", (unsigned long)GetCurrentProcessId());
    snprintf(missing, sizeof missing, "/fastmsg-missing-%lu", (unsigned long)GetCurrentProcessId());
    fastmsg_shm s, view;

    /* Create, and the errors around it. */
    CHECK(fastmsg_shm_create(name, 4096, &s) == FASTMSG_SHM_OK);
    CHECK(fastmsg_shm_create(name, 4096, &view) == EEXIST);
    CHECK(fastmsg_shm_attach(missing, &view) == ENOENT);
    CHECK(fastmsg_shm_attach("no-slash", &view) == EINVAL);
    CHECK(fastmsg_shm_attach("/back\\slash", &view) == EINVAL);
    /* A second view in this process sees the same header and ring. */
    CHECK(fastmsg_shm_attach(name, &view) == FASTMSG_SHM_OK);
    CHECK(view.capacity == 4096 && view.size >= FASTMSG_SHM_DATA_OFFSET + 4096 && view.base != s.base);
    s.ctl->records = 7;
    CHECK(view.ctl->records == 7);
    s.ctl->records = 0;
    fastmsg_shm_unmap(&view);
    CHECK(view.base == NULL);

    /* A child process attaches by name and reads what this one writes. */
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;
    DWORD code = 1;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    snprintf(cmd, sizeof cmd, "\"%s\" child %s %llu", argv[0], name, (unsigned long long)total);
    CHECK(CreateProcessA(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi));
    if (pi.hProcess) {
        produce(&s, total);
        CHECK(WaitForSingleObject(pi.hProcess, 60000) == WAIT_OBJECT_0);
        CHECK(GetExitCodeProcess(pi.hProcess, &code) && code == 0);
        CloseHandle(pi.hProcess);
        CloseHandle(pi.hThread);
    }

    /* Unlink: attaching fails from then on, though the mapping lives on. */
    CHECK(fastmsg_shm_unlink(name) == 0);
    CHECK(fastmsg_shm_attach(name, &view) == ENOENT);
    CHECK(fastmsg_shm_unlink(name) == ENOENT);
    CHECK(fastmsg_shm_unlink(missing) == ENOENT);
    fastmsg_shm_unmap(&s);
    /* With the last handle closed the name is gone: it can be created afresh. */
    CHECK(fastmsg_shm_create(name, 4096, &s) == FASTMSG_SHM_OK);
    fastmsg_shm_unmap(&s);

    printf("%llu records across processes, %lu failures\n", (unsigned long long)total, failures);
    return failures != 0;
}
#endif
