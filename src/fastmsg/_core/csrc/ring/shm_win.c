/* shm.h on Windows: a named file mapping backed by the paging file, "Local\<name>" for the
 * segment "/<name>". A name exists while a handle to the mapping is open, so each fastmsg_shm
 * keeps its handle until unmapped, and unlink can only mark the segment (ready = 2). */
#ifdef _WIN32
#include "ring/shm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#define SHM_UNLINKED 2u /* the header's `ready` after unlink */

static int win_errno(DWORD e) {
    switch (e) {
    case ERROR_FILE_NOT_FOUND: return ENOENT;
    case ERROR_ALREADY_EXISTS: return EEXIST;
    case ERROR_ACCESS_DENIED: return EACCES;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_COMMITMENT_LIMIT: return ENOMEM;
    case ERROR_INVALID_NAME:
    case ERROR_FILENAME_EXCED_RANGE: return EINVAL;
    default: return EIO;
    }
}

/* The object name of segment "/name"; 0 or an errno value. */
static int object_name(const char *name, char *out, size_t cap) {
    if (name[0] != '/' || !name[1] || strchr(name, '\\')) return EINVAL;
    return snprintf(out, cap, "Local\\%s", name + 1) < (int)cap ? 0 : ENAMETOOLONG;
}

int fastmsg_shm_create(const char *name, uint64_t capacity, fastmsg_shm *out) {
    char obj[MAX_PATH];
    uint64_t size = FASTMSG_SHM_DATA_OFFSET + capacity;
    int err = object_name(name, obj, sizeof obj);
    if (err) return err;
    /* Paging-file pages start zeroed: positions and counters start at 0. */
    HANDLE h = CreateFileMappingA(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, (DWORD)(size >> 32), (DWORD)size, obj);
    if (!h) return win_errno(GetLastError());
    if (GetLastError() == ERROR_ALREADY_EXISTS) { /* (an existing one is opened instead) */
        CloseHandle(h);
        return EEXIST;
    }
    void *base = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, (SIZE_T)size);
    if (!base) {
        err = win_errno(GetLastError());
        CloseHandle(h);
        return err;
    }
    fastmsg_shm_format(base, capacity);
    fastmsg_shm_fill(out, base, (size_t)size, capacity);
    out->handle = h;
    return FASTMSG_SHM_OK;
}

/* Maps all of an open segment: 0 with *base and *size set, or an errno value. */
static int map_all(HANDLE h, void **base, size_t *size) {
    MEMORY_BASIC_INFORMATION info;
    *base = MapViewOfFile(h, FILE_MAP_ALL_ACCESS, 0, 0, 0);
    if (!*base) return win_errno(GetLastError());
    /* The view's size is the segment's, rounded up to whole pages (which read as zeros). */
    if (!VirtualQuery(*base, &info, sizeof info)) {
        UnmapViewOfFile(*base);
        return EIO;
    }
    *size = info.RegionSize;
    return 0;
}

/* Opens the existing mapping named `name` and maps all of it: 0 with *h open and mapped at *base,
 * or an errno-style code with nothing left open. */
static int open_mapped(const char *name, HANDLE *h, void **base, size_t *size) {
    char obj[MAX_PATH];
    int err = object_name(name, obj, sizeof obj);
    if (err) return err;
    *h = OpenFileMappingA(FILE_MAP_ALL_ACCESS, FALSE, obj);
    if (!*h) return win_errno(GetLastError());
    if ((err = map_all(*h, base, size))) CloseHandle(*h);
    return err;
}

int fastmsg_shm_attach(const char *name, fastmsg_shm *out) {
    HANDLE h;
    void *base;
    size_t size;
    int err = open_mapped(name, &h, &base, &size);
    if (err) return err;
    if (size < sizeof(fastmsg_shm_header))
        err = FASTMSG_SHM_E_TRUNCATED;
    else if (fastmsg_load_acquire32(&((const fastmsg_shm_header *)base)->ready) == SHM_UNLINKED)
        err = ENOENT;
    else
        err = fastmsg_shm_check((const fastmsg_shm_header *)base, size);
    if (err != FASTMSG_SHM_OK) {
        UnmapViewOfFile(base);
        CloseHandle(h);
        return err;
    }
    fastmsg_shm_fill(out, base, size, ((const fastmsg_shm_header *)base)->capacity);
    out->handle = h;
    return FASTMSG_SHM_OK;
}

void fastmsg_shm_unmap(fastmsg_shm *s) {
    if (s->base) {
        UnmapViewOfFile(s->base);
        CloseHandle(s->handle);
    }
    s->base = s->handle = NULL;
}

int fastmsg_shm_unlink(const char *name) {
    HANDLE h;
    void *base;
    size_t size;
    int err = open_mapped(name, &h, &base, &size);
    if (err) return err;
    fastmsg_shm_header *hdr = base;
    if (size < sizeof *hdr || fastmsg_load_acquire32(&hdr->ready) == SHM_UNLINKED)
        err = ENOENT; /* (not a segment of ours, or unlinked already) */
    else
        fastmsg_store_release32(&hdr->ready, SHM_UNLINKED);
    UnmapViewOfFile(base);
    CloseHandle(h);
    return err;
}

#endif
