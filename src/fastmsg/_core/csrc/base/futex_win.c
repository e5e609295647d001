/* futex.h on Windows: WaitOnAddress, bounded by the portable fallback's step.
 *
 * WaitOnAddress and WakeByAddressAll work between threads of one process only: a wake-up from
 * another process (a SharedRing's peer) never arrives. The word does not say which kind of ring
 * it belongs to, so every wait ends after the fallback's step at the latest (1 ms here, the
 * timeout's unit), and the caller re-checks: immediate wake-ups in process, the fallback's
 * latency across processes. */
#ifdef _WIN32
#include "base/futex.h"

#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#if defined(_MSC_VER)
#pragma comment(lib, "synchronization.lib") /* WaitOnAddress; mingw links -lsynchronization */
#endif

/* The longest sleep without a wake-up, in ms: the step after which a waiter re-checks a word a
 * wake-up cannot reach. Grows with `attempt`, as the fallback's does. */
static DWORD step_ms(unsigned attempt) { return attempt < 4 ? 1 : attempt < 8 ? 2 : 4; }

int fastmsg_futex_wait(uint32_t *word, uint32_t expected, int64_t timeout_ns, unsigned attempt) {
    DWORD ms = step_ms(attempt);
    if (timeout_ns >= 0 && timeout_ns < (int64_t)ms * 1000000)
        ms = (DWORD)((timeout_ns + 999999) / 1000000);
    WaitOnAddress(word, &expected, sizeof expected, ms);
    return 0; /* woken, timed out or spurious: the caller re-checks (no signals interrupt it) */
}

void fastmsg_futex_wake_all(uint32_t *word) { WakeByAddressAll(word); }

#endif
