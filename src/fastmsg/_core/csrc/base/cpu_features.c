#include "base/cpu_features.h"
#include "base/common.h"

#if defined(FASTMSG_X86_64)
#if defined(_MSC_VER)
#include <intrin.h>
static void cpuid(int leaf, int sub, unsigned r[4]) {
    int out[4];
    __cpuidex(out, leaf, sub);
    for (int i = 0; i < 4; i++) r[i] = (unsigned)out[i];
}
static unsigned long long xgetbv0(void) { return _xgetbv(0); }
#else
#include <cpuid.h>
static void cpuid(int leaf, int sub, unsigned r[4]) {
    if (!__get_cpuid_count((unsigned)leaf, (unsigned)sub, &r[0], &r[1], &r[2], &r[3]))
        r[0] = r[1] = r[2] = r[3] = 0;
}
static unsigned long long xgetbv0(void) {
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static void probe(fastmsg_cpu_features *f) {
    unsigned r[4];
    cpuid(0, 0, r);
    unsigned max_leaf = r[0];
    cpuid(1, 0, r);
    f->sse42 = (r[2] >> 20) & 1;
    f->pclmul = (r[2] >> 1) & 1;
    int osxsave = (r[2] >> 27) & 1;
    /* ymm registers are usable only if the OS saves their state (XCR0 bits 1 and 2). */
    int ymm_ok = osxsave && (xgetbv0() & 6) == 6;
    if (max_leaf >= 7 && ymm_ok) {
        cpuid(7, 0, r);
        f->avx2 = (r[1] >> 5) & 1;
        f->vpclmul = f->avx2 && ((r[2] >> 10) & 1);
    }
}

#elif defined(FASTMSG_AARCH64)
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_PMULL
#define HWCAP_PMULL (1 << 4)
#endif
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif
static void probe(fastmsg_cpu_features *f) {
    unsigned long hw = getauxval(AT_HWCAP);
    f->arm_crc32 = (hw & HWCAP_CRC32) != 0;
    f->arm_pmull = (hw & HWCAP_PMULL) != 0;
}
#elif defined(__APPLE__)
#include <sys/sysctl.h>
static int sysctl_flag(const char *name) {
    int v = 0;
    size_t n = sizeof v;
    return sysctlbyname(name, &v, &n, NULL, 0) == 0 && v;
}
static void probe(fastmsg_cpu_features *f) {
    f->arm_crc32 = sysctl_flag("hw.optional.armv8_crc32");
    f->arm_pmull = sysctl_flag("hw.optional.arm.FEAT_PMULL");
}
#elif defined(_WIN32)
#include <windows.h>
static void probe(fastmsg_cpu_features *f) {
    f->arm_crc32 = IsProcessorFeaturePresent(PF_ARM_V8_CRC32_INSTRUCTIONS_AVAILABLE) != 0;
    f->arm_pmull = IsProcessorFeaturePresent(PF_ARM_V8_CRYPTO_INSTRUCTIONS_AVAILABLE) != 0;
}
#else
static void probe(fastmsg_cpu_features *f) { (void)f; }
#endif

#else
static void probe(fastmsg_cpu_features *f) { (void)f; }
#endif

const fastmsg_cpu_features *fastmsg_cpu(void) {
    /* Probing is idempotent, so a race between two first callers only repeats the work. */
    static fastmsg_cpu_features features;
    static volatile int probed = 0;
    if (!probed) {
        fastmsg_cpu_features f = {0};
        probe(&f);
        features = f;
        probed = 1;
    }
    return &features;
}
