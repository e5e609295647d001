"""One-way stream with a Sender option varied: how the window (hwm_bytes) moves the rate.

The shape of `fastmsg bench`'s batched cell, with the processes on two CPUs: a Receiver on CPU 0
takes recv_many(1024) and checks each batch as the bench does (joined, one CRC32C); a Sender on
CPU 1 queues send_many() calls of 61 messages (the bench's cycle of payloads). The rate is the
receiver's, first message to last. Each round runs every option set once, in turn, so that the
machine's drift falls on all of them alike; prints each set's median and runs.

Run: python benchmarks/stream_window.py [--size 1024] [--messages 1000000] [--rounds 6]
     [--transport ipc|tcp] [--hwm 4194304,1048576]
(Linux: it pins the processes with sched_setaffinity.)
"""

import argparse
import multiprocessing
import os
import random
import statistics
import tempfile
import time

import fastmsg


def _receive(pipe, endpoint, count):
    os.sched_setaffinity(0, {0})
    rx = fastmsg.Receiver(endpoint)
    pipe.send(rx.endpoint)
    got, crc, first, start = 0, 0, 0, None
    while got < count:
        msgs = rx.recv_many(min(1024, count - got), timeout=30)
        if start is None:
            start, first = time.perf_counter(), len(msgs)
        crc = fastmsg.crc32c(b"".join(msgs), crc)
        got += len(msgs)
        del msgs
    pipe.send((count - first) / (time.perf_counter() - start))
    rx.close()


def run(size, count, transport, hwm):
    where = tempfile.mkdtemp()
    endpoint = f"ipc://{where}/rx" if transport == "ipc" else "tcp://127.0.0.1:0"
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.Process(target=_receive, args=(theirs, endpoint, count))
    child.start()
    payloads = [random.Random(size).randbytes(size) for _ in range(61)]
    tx = fastmsg.Sender(ours.recv(), hwm_bytes=hwm)
    sent = 0
    while sent < count:
        take = min(61, count - sent)
        tx.send_many(payloads[:take])
        sent += take
    if not tx.flush(timeout=60):
        raise SystemExit("flush() did not finish within 60 s")
    tx.close()
    rate = ours.recv()
    child.join(30)
    return rate


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--transport", choices=["ipc", "tcp"], default="ipc")
    p.add_argument("--hwm", default=f"{4 << 20},{1 << 20}", help="hwm_bytes values, comma-separated")
    args = p.parse_args()
    multiprocessing.set_start_method("fork")
    os.sched_setaffinity(0, {1})
    hwms = [int(h) for h in args.hwm.split(",")]
    rates = {h: [] for h in hwms}
    for _ in range(args.rounds):
        for h in hwms:
            rates[h].append(run(args.size, args.messages, args.transport, h))
    print(f"{args.size} B over {args.transport}, receiver on CPU 0, sender on CPU 1, {args.rounds} rounds:")
    for h, r in rates.items():
        print(f"  hwm_bytes {h:>9}: median {statistics.median(r) / 1e6:.2f} M msg/s  "
              f"(runs {', '.join(f'{x / 1e6:.2f}' for x in r)})")


if __name__ == "__main__":
    main()
