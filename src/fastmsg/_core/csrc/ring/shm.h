/* A ring in a named shared-memory segment (POSIX shm, or a named file mapping on Windows):
 * create, attach (validating the header), unmap, unlink. Layout: this header (128 bytes), the ring's control block (fastmsg_ring_ctl, 384
 * bytes), then `capacity` bytes of records; see docs/architecture.md. */
#ifndef FASTMSG_SHM_H
#define FASTMSG_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "ring/ring.h"

#define FASTMSG_SHM_MAGIC "FMSGRING" /* 8 bytes, no terminator stored */
#define FASTMSG_SHM_VERSION 1u
#define FASTMSG_SHM_ENDIAN 0x01020304u

typedef struct fastmsg_shm_header {
    char magic[8];          /* FASTMSG_SHM_MAGIC */
    uint32_t version;       /* FASTMSG_SHM_VERSION: the layout of everything in the segment */
    uint32_t header_size;   /* offset of the records: sizeof header + sizeof fastmsg_ring_ctl */
    uint64_t capacity;      /* bytes of records, a power of two */
    uint32_t record_header; /* FASTMSG_REC_HDR */
    uint32_t line;          /* FASTMSG_RING_LINE */
    uint32_t endian;        /* FASTMSG_SHM_ENDIAN in the creator's byte order */
    uint32_t ready;         /* 0 while the creator fills this in, then 1 (release store); 2 once
                             * unlinked on Windows, where the name outlives unlink (shm_win.c) */
    uint8_t pad_[FASTMSG_RING_LINE - 40];
} fastmsg_shm_header;

#define FASTMSG_SHM_DATA_OFFSET (sizeof(fastmsg_shm_header) + sizeof(fastmsg_ring_ctl))

/* A mapping of a segment. */
typedef struct fastmsg_shm {
    void *base;             /* the mapping */
    size_t size;            /* its length */
    fastmsg_ring_ctl *ctl;  /* inside the mapping */
    uint8_t *data;          /* inside the mapping */
    uint64_t capacity;
    void *handle;           /* Windows: the mapping's handle, open while mapped (it keeps the name) */
} fastmsg_shm;

/* Errors that are not errno values (those are returned positive). */
enum {
    FASTMSG_SHM_OK = 0,
    FASTMSG_SHM_E_UNSUPPORTED = -1, /* no POSIX shared memory on this platform */
    FASTMSG_SHM_E_TRUNCATED = -2,   /* smaller than its header says, or than any header */
    FASTMSG_SHM_E_MAGIC = -3,       /* not a fastmsg ring (or still being created) */
    FASTMSG_SHM_E_VERSION = -4,     /* a fastmsg ring of another layout version */
    FASTMSG_SHM_E_LAYOUT = -5,      /* sizes, byte order or capacity this build cannot use */
};

/* Creates the segment `name` ("/name"), fails with EEXIST if it exists. On Windows the name
 * lives in the session's Local\ namespace, and only while some process has the segment mapped. */
int fastmsg_shm_create(const char *name, uint64_t capacity, fastmsg_shm *out);
/* Maps an existing segment after checking its header and size. */
int fastmsg_shm_attach(const char *name, fastmsg_shm *out);
/* Unmaps; the segment lives on until unlinked and unmapped everywhere. */
void fastmsg_shm_unmap(fastmsg_shm *s);
/* Removes the name; returns 0 or an errno value. Windows cannot take a name away from a
 * mapping that is open: the segment is marked instead, and attach fails on it with ENOENT. */
int fastmsg_shm_unlink(const char *name);

/* shm_layout.c, for the platform files: writes a fresh segment's header (ready last), points a
 * fastmsg_shm at a mapping, and checks the header of a mapping of `size` bytes. */
void fastmsg_shm_format(void *base, uint64_t capacity);
void fastmsg_shm_fill(fastmsg_shm *out, void *base, size_t size, uint64_t capacity);
int fastmsg_shm_check(const fastmsg_shm_header *h, size_t size);

#endif
