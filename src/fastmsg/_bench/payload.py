"""Sizes, the messages a run sends, and how the receiving side checks them."""

import os
import random
import re
import time

from fastmsg import crc32c, crc32c_combine

MAX_SIZE = 16 << 20
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20}


def parse_size(text):
    """'64', '1k', '64KiB', '1m' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"invalid size {text!r} (examples: 64, 1k, 64k, 1m)")
    size = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if not 1 <= size <= MAX_SIZE:
        raise ValueError(f"size {text!r} out of range 1 B .. {MAX_SIZE >> 20} MiB")
    return size


def size_label(size):
    for shift, unit in ((20, "MiB"), (10, "KiB")):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} B"


def pool(size):
    """Distinct payloads of `size` bytes, sent in turn so that reordering changes the checksum."""
    count = max(2, min(61, (16 << 20) // size))
    rng = random.Random(size)
    return [rng.randbytes(size) for _ in range(count)]


def expected_crc(payloads, count):
    """CRC32C of the first `count` messages of the cycle over `payloads`, all concatenated."""
    size = len(payloads[0])
    cycle = 0
    for p in payloads:
        cycle = crc32c(p, cycle)
    full, rest = divmod(count, len(payloads))
    crc, cycle_len = 0, size * len(payloads)
    while full:  # square-and-multiply over whole cycles
        if full & 1:
            crc = crc32c_combine(crc, cycle, cycle_len)
        cycle = crc32c_combine(cycle, cycle, cycle_len)
        cycle_len *= 2
        full >>= 1
    for p in payloads[:rest]:
        crc = crc32c(p, crc)
    return crc


def batches(payloads, count, peer, limit=1024):
    """Lists of payloads to send, `count` in all, at most `limit` per list.

    Test hook: FASTMSG_BENCH_FAULT=<peer>:<fault> spoils the message in the middle of the run
    (the sender still claims all `count`): drop leaves it out, corrupt flips one of its bytes,
    truncate cuts its last byte, swap exchanges it with a neighbour in its list. Each must make
    the run fail."""
    fault = None
    spec = os.environ.get("FASTMSG_BENCH_FAULT", "")
    if spec.partition(":")[0] == peer:
        fault = spec.partition(":")[2]
    victim = count // 2
    n, sent = len(payloads), 0
    while sent < count:
        start = sent % n
        take = min(limit, count - sent, n - start)
        batch = payloads[start:start + take]
        if fault and sent <= victim < sent + take:
            batch = _spoil(batch, victim - sent, fault)
        sent += take
        yield batch


def _spoil(batch, i, fault):
    """`batch` (a list of its own, not the pool) with `fault` done to its message i."""
    if fault == "drop":
        del batch[i]
    elif fault == "corrupt":
        bad = bytearray(batch[i])
        bad[len(bad) // 2] ^= 1
        batch[i] = bytes(bad)
    elif fault == "truncate":
        batch[i] = batch[i][:-1]
    elif fault == "swap":
        if len(batch) < 2:  # a list of one (sockets from 64 KiB) has no neighbour to swap with
            raise ValueError("FASTMSG_BENCH_FAULT: swap needs lists of two or more messages")
        j = i + 1 if i + 1 < len(batch) else i - 1
        batch[i], batch[j] = batch[j], batch[i]
    else:
        raise ValueError(f"FASTMSG_BENCH_FAULT: unknown fault {fault!r} (drop, corrupt, truncate, swap)")
    return batch


# Calling crc32c once per message costs more than moving a small message (the bench then timed
# the check, not the transport), so messages up to this size are joined and checked a batch at a
# time; larger ones one by one, where the copy would cost more than the call.
_JOINED_UP_TO = 8 << 10


class Check:
    """What a receiving side saw: count, length of every message, CRC32C over all the payloads in
    the order received (so it catches loss, reordering, truncation and corruption anywhere)."""

    def __init__(self, size, count):
        self.size, self.expected = size, count
        self.count = 0
        self.crc = 0
        self.first_ns = self.last_ns = 0
        self.untimed = 0  # messages of the first batch: they arrive before the clock starts

    def add(self, messages):
        """Check a batch of received messages; the clock runs from the first batch to the last."""
        now = time.perf_counter_ns()
        if not self.first_ns:
            self.first_ns, self.untimed = now, len(messages)
        self.last_ns = now
        size = self.size
        if size <= _JOINED_UP_TO:
            data = b"".join(messages)
            if len(data) != size * len(messages):
                self._wrong_length(messages)
            self.crc = crc32c(data, self.crc)
        else:
            crc = self.crc
            for m in messages:
                if len(m) != size:
                    self._wrong_length(messages)
                crc = crc32c(m, crc)
            self.crc = crc
        self.count += len(messages)
        if self.count > self.expected:
            raise AssertionError(f"received {self.count} messages, more than the {self.expected} sent")

    def _wrong_length(self, messages):
        n, length = next((i, len(m)) for i, m in enumerate(messages) if len(m) != self.size)
        raise AssertionError(f"message {self.count + n + 1} has {length} bytes, expected {self.size}")

    def missing(self, why):
        return AssertionError(f"received {self.count} of {self.expected} messages, "
                              f"{self.expected - self.count} missing ({why})")

    def result(self, payloads):
        want = expected_crc(payloads, self.expected)
        if self.crc != want:
            raise AssertionError(f"all {self.count} messages arrived but their content differs from what "
                                 f"was sent (CRC32C {self.crc:08x}, expected {want:08x})")
        return {"received": self.count, "timed": self.count - self.untimed,
                "elapsed_ns": self.last_ns - self.first_ns}


def time_round_trips(spec, trip):
    """Times spec's warm-up plus counted round trips. trip(i, payload) sends the payload and
    returns the reply, which must equal it; the same clock and check serve every peer."""
    payloads, warmup, count = pool(spec["size"]), spec["warmup"], spec["count"]
    samples = []
    clock = time.perf_counter_ns
    for i in range(warmup + count):
        p = payloads[i % len(payloads)]
        t0 = clock()
        reply = trip(i, p)
        t1 = clock()
        if reply != p:
            raise AssertionError(f"round trip {i + 1}: the reply differs from the message sent")
        if i >= warmup:
            samples.append(t1 - t0)
    return {"sent": warmup + count, **percentiles(samples)}


def event_loop():
    """The event loop the asyncio round trips run on: uvloop where installed, else asyncio's."""
    try:
        import uvloop
        return "uvloop", uvloop.new_event_loop
    except ImportError:
        import asyncio
        return "asyncio", asyncio.new_event_loop


def time_round_trips_async(spec, trip):
    """time_round_trips on an event loop: trip(i, payload) is a coroutine (made by `setup`, which
    the loop awaits first)."""
    import asyncio

    payloads, warmup, count = pool(spec["size"]), spec["warmup"], spec["count"]
    samples = []
    clock = time.perf_counter_ns

    async def main():
        for i in range(warmup + count):
            p = payloads[i % len(payloads)]
            t0 = clock()
            reply = await trip(i, p)
            t1 = clock()
            if reply != p:
                raise AssertionError(f"round trip {i + 1}: the reply differs from the message sent")
            if i >= warmup:
                samples.append(t1 - t0)

    with asyncio.Runner(loop_factory=event_loop()[1]) as runner:
        runner.run(main())
    return {"sent": warmup + count, **percentiles(samples)}


# The round-trip distribution a run reports (`fastmsg bench --json` and `--plot`): quantile -> name.
QUANTILES = ((0.0, "min"), (0.01, "p1"), (0.10, "p10"), (0.25, "p25"), (0.50, "p50"), (0.75, "p75"),
             (0.90, "p90"), (0.99, "p99"), (0.999, "p99.9"), (1.0, "max"))


def percentiles(samples_ns):
    """Round-trip times (ns) as the table has them (p50_ns, p99_ns) and their distribution
    ("quantiles_ns": {name: ns} at QUANTILES, the nearest sample below each rank)."""
    s = sorted(samples_ns)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]
    return {"trips": len(s), "p50_ns": pick(0.50), "p99_ns": pick(0.99),
            "quantiles_ns": {name: pick(q) for q, name in QUANTILES}}
