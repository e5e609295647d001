/* shm.h: named shared-memory segments holding a ring. */
/* syscall, ftruncate, clock_gettime, shm_open are POSIX/GNU, hidden by -std=c11 otherwise. */
#define _GNU_SOURCE
#include "ring/shm.h"

#include <errno.h>
#include <string.h>

#ifndef _WIN32 /* shm_win.c */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* On Linux shm_open is open() under /dev/shm; doing that here spares manylinux builds (glibc
 * before 2.34) a link against librt. Elsewhere shm_open is in libc. */
#if defined(__linux__)
#include <limits.h>
#include <stdio.h>
static int seg_open(const char *name, int oflag, mode_t mode) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "/dev/shm%s", name) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return open(path, oflag | O_NOFOLLOW | O_CLOEXEC, mode);
}
static int seg_unlink(const char *name) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "/dev/shm%s", name) >= (int)sizeof path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return unlink(path);
}
#else
#define seg_open shm_open
#define seg_unlink shm_unlink
#endif

int fastmsg_shm_create(const char *name, uint64_t capacity, fastmsg_shm *out) {
    size_t size = (size_t)(FASTMSG_SHM_DATA_OFFSET + capacity);
    void *base;
    int fd = seg_open(name, O_RDWR | O_CREAT | O_EXCL, 0600), err;
    if (fd < 0)
        return errno;
    if (ftruncate(fd, (off_t)size) != 0) { /* fresh pages are zero: positions and counters start at 0 */
        err = errno;
        close(fd);
        seg_unlink(name);
        return err;
    }
    base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    err = errno;
    close(fd);
    if (base == MAP_FAILED) {
        seg_unlink(name);
        return err;
    }
    fastmsg_shm_format(base, capacity);
    fastmsg_shm_fill(out, base, size, capacity);
    return FASTMSG_SHM_OK;
}

int fastmsg_shm_attach(const char *name, fastmsg_shm *out) {
    struct stat st;
    void *base;
    int err, fd = seg_open(name, O_RDWR, 0);
    if (fd < 0)
        return errno;
    if (fstat(fd, &st) != 0) {
        err = errno;
        close(fd);
        return err;
    }
    if ((uint64_t)st.st_size < sizeof(fastmsg_shm_header)) {
        close(fd);
        return FASTMSG_SHM_E_TRUNCATED;
    }
    /* Map only what the file holds: touching pages past its end would raise SIGBUS. */
    base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    err = errno;
    close(fd);
    if (base == MAP_FAILED)
        return err;
    err = fastmsg_shm_check((const fastmsg_shm_header *)base, (size_t)st.st_size);
    if (err != FASTMSG_SHM_OK) {
        munmap(base, (size_t)st.st_size);
        return err;
    }
    fastmsg_shm_fill(out, base, (size_t)st.st_size, ((const fastmsg_shm_header *)base)->capacity);
    return FASTMSG_SHM_OK;
}

void fastmsg_shm_unmap(fastmsg_shm *s) {
    if (s->base)
        munmap(s->base, s->size);
    s->base = NULL;
}

int fastmsg_shm_unlink(const char *name) { return seg_unlink(name) == 0 ? 0 : errno; }

#endif
