"""Where a blocking round trip's slow ones may come from: how often each thread of the requester
and of the replier was switched out per 1,000 round trips (from /proc, Linux), beside the round
trip's median and 99th percentile. Both processes run on one CPU, where every wake-up of an I/O
thread that lands inside a round trip makes it slower: the main threads switch once per round
trip each, as with plain blocking sockets; the I/O threads' count is what a change to their
timers should lower.

Run: python benchmarks/round_trip_wakeups.py [ROUND_TRIPS] [--cpu N]
(64 B requests over loopback TCP, Sender.request answered by Message.reply.)
"""

import argparse
import multiprocessing
import os
import time

import fastmsg

WARMUP = 500


def _switches():
    """{thread name and id: context switches so far} for this process's threads."""
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/status") as f:
                fields = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        except OSError:
            continue  # (a thread that ended meanwhile)
        name = "main" if int(tid) == os.getpid() else f"thread {tid}"
        out[name] = int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
    return out


def _per_thousand(before, after, trips):
    return {k: round((v - before.get(k, 0)) * 1000 / trips, 1) for k, v in after.items()}


def _replier(pipe, cpu, trips):
    os.sched_setaffinity(0, {cpu})
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        pipe.send(rx.endpoint)
        before = None
        for i in range(WARMUP + trips):
            if i == WARMUP:
                before = _switches()
            with rx.recv(timeout=60) as m:
                m.reply(m)
        pipe.send(_per_thousand(before, _switches(), trips))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trips", nargs="?", type=int, default=30_000)
    p.add_argument("--cpu", type=int, default=0, help="the CPU both processes run on")
    args = p.parse_args()
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.Process(target=_replier, args=(theirs, args.cpu, args.trips))
    child.start()
    os.sched_setaffinity(0, {args.cpu})
    payload, samples = b"x" * 64, []
    with fastmsg.Sender(ours.recv()) as tx:
        for _ in range(WARMUP):
            tx.request(payload, timeout=60).release()
        before = _switches()
        for _ in range(args.trips):
            t0 = time.perf_counter_ns()
            tx.request(payload, timeout=60).release()
            samples.append(time.perf_counter_ns() - t0)
        requester = _per_thousand(before, _switches(), args.trips)
    replier = ours.recv()
    child.join(60)
    samples.sort()
    p50, p99 = samples[len(samples) // 2] / 1e3, samples[int(len(samples) * 0.99)] / 1e3
    print(f"{args.trips:,} round trips on CPU {args.cpu}: p50 {p50:.1f} us, p99 {p99:.1f} us ({p99 / p50:.2f}x)")
    print("context switches per 1,000 round trips:")
    for side, counts in (("requester", requester), ("replier", replier)):
        print(f"  {side:9} " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
