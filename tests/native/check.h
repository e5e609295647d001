/* What the C self-tests share: CHECK counts a condition that failed and prints where; each test
 * ends by printing its count ("..., N failures") and exiting non-zero if it is not 0. */
#ifndef FASTMSG_SELFTEST_CHECK_H
#define FASTMSG_SELFTEST_CHECK_H

#include <stdio.h>

static unsigned long failures;

#define CHECK(cond)                                                                                    \
    do {                                                                                               \
        if (!(cond)) {                                                                                 \
            printf("line %d: check failed: %s\n", __LINE__, #cond);                                    \
            failures++;                                                                                \
        }                                                                                              \
    } while (0)

#endif
