"""One-way stream with a Sender option varied: how the window (hwm_bytes) moves the rate.

The shape of `fastmsg bench`'s batched cell, with the processes on two CPUs: a Receiver on CPU 0
takes recv_many(1024) and checks each batch as the bench does (joined, one CRC32C); a Sender on
CPU 1 queues send_many() calls of 61 messages (the bench's cycle of payloads). The rate is the
receiver's, first message to last. Each round runs every option set once, in turn, so that the
machine's drift falls on all of them alike; prints each set's median and runs. With --threads,
also each side's CPU time during the stream, its application thread apart from the rest (the I/O
thread), medians in ms: where a build spends what another does not.

Run: python benchmarks/stream_window.py [--size 1024] [--messages 1000000] [--rounds 6]
     [--transport ipc|tcp] [--hwm 4194304,1048576] [--threads]
(Linux: it pins the processes with sched_setaffinity.)
"""

import argparse
import multiprocessing
import os
import random
import statistics
import tempfile
import threading
import time

import fastmsg


def thread_cpu_ns():
    """(this thread's CPU time, the other threads' of the process), in ns, from Linux's
    schedstat; (0, 0) where there is none."""
    me, others = 0, 0
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                ran = int(f.read().split()[0])
            if int(tid) == threading.get_native_id():
                me = ran
            else:
                others += ran
    except OSError:
        pass
    return me, others


def _spent(before, after):
    return tuple(a - b for a, b in zip(after, before))


def _receive(pipe, endpoint, count):
    os.sched_setaffinity(0, {0})
    rx = fastmsg.Receiver(endpoint)
    pipe.send(rx.endpoint)
    got, crc, first, start = 0, 0, 0, None
    while got < count:
        msgs = rx.recv_many(min(1024, count - got), timeout=30)
        if start is None:
            start, first, cpu = time.perf_counter(), len(msgs), thread_cpu_ns()
        crc = fastmsg.crc32c(b"".join(msgs), crc)
        got += len(msgs)
        del msgs
    pipe.send(((count - first) / (time.perf_counter() - start), _spent(cpu, thread_cpu_ns())))
    rx.close()


def run(size, count, transport, hwm):
    where = tempfile.mkdtemp()
    endpoint = f"ipc://{where}/rx" if transport == "ipc" else "tcp://127.0.0.1:0"
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.Process(target=_receive, args=(theirs, endpoint, count))
    child.start()
    payloads = [random.Random(size).randbytes(size) for _ in range(61)]
    tx = fastmsg.Sender(ours.recv(), hwm_bytes=hwm)
    sent, cpu = 0, thread_cpu_ns()
    while sent < count:
        take = min(61, count - sent)
        tx.send_many(payloads[:take])
        sent += take
    if not tx.flush(timeout=60):
        raise SystemExit("flush() did not finish within 60 s")
    tx_cpu = _spent(cpu, thread_cpu_ns())
    tx.close()
    rate, rx_cpu = ours.recv()
    child.join(30)
    return rate, tx_cpu + rx_cpu


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--messages", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--transport", choices=["ipc", "tcp"], default="ipc")
    p.add_argument("--hwm", default=f"{4 << 20},{1 << 20}", help="hwm_bytes values, comma-separated")
    p.add_argument("--threads", action="store_true", help="also the CPU time of each side's threads")
    args = p.parse_args()
    multiprocessing.set_start_method("fork")
    os.sched_setaffinity(0, {1})
    hwms = [int(h) for h in args.hwm.split(",")]
    rates, cpus = {h: [] for h in hwms}, {h: [] for h in hwms}
    for _ in range(args.rounds):
        for h in hwms:
            rate, cpu = run(args.size, args.messages, args.transport, h)
            rates[h].append(rate)
            cpus[h].append(cpu)
    print(f"{args.size} B over {args.transport}, receiver on CPU 0, sender on CPU 1, {args.rounds} rounds:")
    for h, r in rates.items():
        print(f"  hwm_bytes {h:>9}: median {statistics.median(r):,.0f} msg/s, "
              f"{statistics.median(r) * args.size / 1e6:,.0f} MB/s  (runs {', '.join(f'{x:,.0f}' for x in r)})")
        if args.threads:
            ms = [statistics.median(c[i] for c in cpus[h]) / 1e6 for i in range(4)]
            print(f"      CPU ms: sender application {ms[0]:.0f}, its other threads {ms[1]:.0f}; "
                  f"receiver application {ms[2]:.0f}, its other threads {ms[3]:.0f}")


if __name__ == "__main__":
    main()
