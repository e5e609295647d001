/* Checks every CRC32C kernel this CPU can run against the portable one, straight from C.
 * Built and run by tests/test_crc32c_native.py, natively and (where a cross compiler and qemu
 * are installed) for AArch64 under emulation. Exit status 0 means every case agreed. */
#include "crc32c/crc32c.h"
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    fastmsg_crc32c_init();
    if (fastmsg_crc32c(0, "123456789", 9) != 0xE3069283u) {
        printf("check value wrong with kernel %s\n", fastmsg_crc32c_name());
        return 1;
    }
    static uint8_t buf[300000 + 64];
    srand(1);
    for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rand();
    int failures = 0;
    for (const char *const *name = fastmsg_crc32c_kernel_names(); *name; name++) {
        fastmsg_crc32c_kernel kernel = fastmsg_crc32c_kernel_by_name(*name);
        if (!kernel) {
            printf("%s: not runnable here\n", *name);
            continue;
        }
        int cases = 0, bad = 0;
        for (size_t n = 0; n < 300000; n = n < 1100 ? n + 1 : n * 9 / 8)
            for (size_t off = 0; off < 64; off += 9, cases++)
                if (kernel(0x1234567u, buf + off, n) != fastmsg_crc32c_portable(0x1234567u, buf + off, n)) bad++;
        printf("%s: %d of %d cases disagree with portable\n", *name, bad, cases);
        failures += bad;
    }
    printf("selected: %s\n", fastmsg_crc32c_name());
    return failures != 0;
}
