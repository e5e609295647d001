"""What holding a window of sent messages costs the writer of a ring.

A Sender keeps what it wrote out until the receiver acknowledges it, so the room its next message
goes into was last touched a whole window ago. Without acknowledgements, a full ring's room came
back just after the I/O thread had read it out, still in the caches. This writes 1 KiB records
into a RingBuffer and reads each one (a CRC, as the I/O thread does) either at once, releasing it
a window later, or only just before releasing it, and times the writes alone: the first is the
pattern of a Sender under acknowledgements, the second that of one without, over a full socket.

    python benchmarks/ring_reuse.py [--rounds 5] [--window 3145728] [--size 1024]

Pin it to one CPU (taskset -c 1) on a busy machine. Prints ns per record written, medians."""

import argparse
import collections
import statistics
import time

import fastmsg

BATCH = 61


def writes_ns(touch_before_release, window, size, total, capacity):
    """Nanoseconds per record spent in write_many."""
    ring = fastmsg.RingBuffer(capacity)
    pool = [bytes([i]) * size for i in range(BATCH)]
    held = collections.deque()
    held_bytes = spent = written = crc = 0
    clock = time.perf_counter_ns
    while written < total:
        t0 = clock()
        n = ring.write_many(pool)
        spent += clock() - t0
        records = ring.read_many(n)
        if not touch_before_release:
            for rec in records:  # written out at once, held until acknowledged
                crc = fastmsg.crc32c(rec, crc)
        held.extend(records)
        held_bytes += n * size
        while held_bytes > window:
            rec = held.popleft()
            if touch_before_release:  # written out only now (a full socket), then released
                crc = fastmsg.crc32c(rec, crc)
            rec.release()
            held_bytes -= size
        written += n
    return spent / written


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--window", type=int, default=3 << 20, help="bytes held after they are read")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--count", type=int, default=400_000)
    ap.add_argument("--capacity", type=int, default=4 << 20)
    args = ap.parse_args()
    if args.window + BATCH * (args.size + 64) > args.capacity:
        ap.error("--window leaves no room for a batch in --capacity")
    late, early = [], []
    for i in range(args.rounds):
        late.append(writes_ns(True, args.window, args.size, args.count, args.capacity))
        early.append(writes_ns(False, args.window, args.size, args.count, args.capacity))
        print(f"round {i}: read just before release {late[-1]:6.1f} ns/record, "
              f"read a window before release {early[-1]:6.1f} ns/record", flush=True)
    print(f"median: read just before release {statistics.median(late):.1f}, "
          f"a window before {statistics.median(early):.1f} ns/record "
          f"(ratio {statistics.median(e / l for e, l in zip(early, late)):.2f})")


if __name__ == "__main__":
    main()
