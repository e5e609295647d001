"""The `fastmsg` command: what this build is and how fast its kernels run here."""

import argparse
import os
import sys
import time

import fastmsg
from fastmsg._core import crc as _crc

_SIZES = [(64, "64 B"), (1 << 10, "1 KiB"), (64 << 10, "64 KiB"), (1 << 20, "1 MiB")]


def _time_per_call(fn, data, budget_s):
    """Median seconds per call over several timed batches, together taking about budget_s."""
    calls = 1
    while True:  # grow the batch until one takes at least a millisecond
        start = time.perf_counter()
        for _ in range(calls):
            fn(data)
        elapsed = time.perf_counter() - start
        if elapsed >= 1e-3 or calls >= 1 << 24:
            break
        calls *= 4
    batches = max(3, min(25, int(budget_s / max(elapsed, 1e-9))))
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            fn(data)
        samples.append((time.perf_counter() - start) / calls)
    samples.sort()
    return samples[len(samples) // 2]


def _crc_table(budget_s, out):
    kernels = [name for name, runs in _crc.kernels() if runs]
    columns = ["fastmsg.crc32c"] + [f"{k}" for k in kernels]
    out.write(f"\nCRC32C throughput, median of timed batches (GB/s; ns per call at 64 B)\n")
    out.write(f"{'size':>8}  " + "  ".join(f"{c:>14}" for c in columns) + "\n")
    for size, label in _SIZES:
        data = os.urandom(size)
        cells = []
        fns = [fastmsg.crc32c] + [lambda d, k=k: _crc.crc32c_using(k, d) for k in kernels]
        for fn in fns:
            t = _time_per_call(fn, data, budget_s)
            cells.append(f"{t * 1e9:11.0f} ns" if size == 64 else f"{size / t / 1e9:9.2f} GB/s")
        out.write(f"{label:>8}  " + "  ".join(f"{c:>14}" for c in cells) + "\n")
        out.flush()


def _info(args, out):
    kernels = ", ".join(f"{n}{'' if runs else ' (not on this CPU)'}" for n, runs in _crc.kernels())
    out.write(f"fastmsg {fastmsg.__version__} (Python {sys.version.split()[0]})\n")
    out.write(f"CRC32C kernel: {fastmsg.crc32c_implementation} (compiled: {kernels})\n")
    if not args.quick:
        _crc_table(0.05, out)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastmsg", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="print the build information only")
    args = parser.parse_args(argv)
    return _info(args, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
