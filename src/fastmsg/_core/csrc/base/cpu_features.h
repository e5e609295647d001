/* Which optional instruction sets this CPU (and OS) can run; probed once. */
#ifndef FASTMSG_CPU_FEATURES_H
#define FASTMSG_CPU_FEATURES_H

typedef struct {
    unsigned sse42 : 1;     /* crc32 instruction */
    unsigned pclmul : 1;    /* 64x64 carry-less multiply on xmm */
    unsigned avx2 : 1;      /* 256-bit integer ops, with OS support for ymm state */
    unsigned vpclmul : 1;   /* carry-less multiply on ymm */
    unsigned arm_crc32 : 1; /* ARMv8 CRC32 extension */
    unsigned arm_pmull : 1; /* ARMv8 64-bit polynomial multiply */
} fastmsg_cpu_features;

/* Probes on first call; later calls return the same result. */
const fastmsg_cpu_features *fastmsg_cpu(void);

#endif
