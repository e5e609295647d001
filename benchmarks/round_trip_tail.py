"""The shape of a blocking round trip's tail with both processes on one CPU, and what a waiting
call's timer costs there: 64 B request/reply over loopback TCP, one at a time, for

  fastmsg       Sender.request answered by Message.reply (the defaults);
  socket        a plain blocking socket echo (recv, then sendall);
  socket-poll   the same echo, but each side polls with a 2 ms timeout before each recv (what
                fastmsg's requester did before it slept in the read itself);
  socket-rcvto  the same echo with a 2 ms SO_RCVTIMEO on each blocking socket (what it does now).

On a virtual machine a poll() whose timeout falls before the kernel's next tick programs the
CPU's timer each time it sleeps, and the round trips that sleep there take about twice the others:
p99/p50 tells. Prints each kind's percentiles (us) and p99/p50.

Run: python benchmarks/round_trip_tail.py [ROUND_TRIPS] [--kinds fastmsg,socket,...] [--cpu N]
(Linux: it pins both processes with sched_setaffinity.)
"""

import argparse
import multiprocessing
import os
import select
import socket
import struct
import time

import fastmsg

WARMUP = 1000
KINDS = ("fastmsg", "socket", "socket-poll", "socket-rcvto")
PAYLOAD = b"x" * 64
TIMEOUT_MS = 2


def _tune(sock, kind):
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if kind == "socket-rcvto":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, TIMEOUT_MS * 1000))


def _recv_fn(sock, kind):
    """A recv of one 64 B message, as `kind` waits for it."""
    if kind != "socket-poll":
        return lambda: sock.recv(64)
    p = select.poll()
    p.register(sock, select.POLLIN)

    def recv():
        while not p.poll(TIMEOUT_MS):
            pass
        return sock.recv(64)

    return recv


def _retrying(recv):
    """recv, again after a timeout (SO_RCVTIMEO ends a quiet wait with BlockingIOError)."""
    def call():
        while True:
            try:
                return recv()
            except BlockingIOError:
                continue
    return call


def _replier(pipe, kind, cpu, total):
    os.sched_setaffinity(0, {cpu})
    if kind == "fastmsg":
        with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
            pipe.send(rx.endpoint)
            for _ in range(total):
                with rx.recv(timeout=30) as m:
                    m.reply(PAYLOAD)
        return
    with socket.create_server(("127.0.0.1", 0)) as ls:
        pipe.send(ls.getsockname()[1])
        conn, _ = ls.accept()
        _tune(conn, kind)
        recv = _retrying(_recv_fn(conn, kind))
        for _ in range(total):
            recv()
            conn.sendall(PAYLOAD)
        conn.close()


def run(kind, trips, cpu):
    """Sorted round trip times (ns) of `trips` requests after a warm-up."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    p = ctx.Process(target=_replier, args=(theirs, kind, cpu, WARMUP + trips))
    p.start()
    os.sched_setaffinity(0, {cpu})
    where = ours.recv()
    if kind == "fastmsg":
        tx = fastmsg.Sender(where)
        def trip():
            tx.request(PAYLOAD, timeout=30).release()
    else:
        tx = socket.create_connection(("127.0.0.1", where))
        _tune(tx, kind)
        recv = _retrying(_recv_fn(tx, kind))
        def trip():
            tx.sendall(PAYLOAD)
            recv()
    clock = time.perf_counter_ns
    for _ in range(WARMUP):
        trip()
    times = []
    for _ in range(trips):
        t0 = clock()
        trip()
        times.append(clock() - t0)
    tx.close()
    p.join(30)
    return sorted(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trips", nargs="?", type=int, default=50_000)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--cpu", type=int, default=0)
    args = ap.parse_args()
    quantiles = (0.10, 0.50, 0.75, 0.90, 0.95, 0.99, 0.999)
    print(f"{args.trips} round trips of 64 B over TCP, both processes on CPU {args.cpu}; us at "
          + " ".join(f"p{q * 100:g}" for q in quantiles))
    for kind in args.kinds.split(","):
        if kind not in KINDS:
            raise SystemExit(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
        t = run(kind, args.trips, args.cpu)
        at = [t[min(len(t) - 1, int(len(t) * q))] / 1e3 for q in quantiles]
        print(f"{kind:13} " + " ".join(f"{v:6.1f}" for v in at) + f"   p99/p50 {at[5] / at[1]:.2f}")


if __name__ == "__main__":
    main()
