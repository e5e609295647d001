"""Round trips of fastmsg and of a plain socket echo, interleaved in time, over TCP.

`fastmsg bench --compare` runs one peer after the other, each for a second or so; on a shared
machine the time a round trip takes can move by a third between two such seconds, which is more
than the difference to be judged. Here both repliers run all along and one requester alternates
between them in blocks of a few hundred trips, so that both see the same moments of the machine.
The trips are those of the bench: `Sender.request` against `Message.reply`, and a blocking
socket's `sendall` of a 4-byte length and the payload against a replier that reads the frame
with `recv_into` and sends it back; each trip here ends with the reply as bytes, for both peers
(the bench's socket trip keeps a view).

    python benchmarks/round_trip_interleaved.py [--pin same|split] [--blocks 100] [--block 200]

Prints each peer's p50 and p99 over all its trips and its CPU time per trip (user and system,
of the requesting process in that peer's blocks and of the replier's whole process), the ratio
of the p50s, and the median of the per-block ratios (fastmsg's p50 over the socket's, blocks
taken in pairs)."""

import argparse
import multiprocessing
import os
import resource
import socket
import statistics
import struct
import time

import fastmsg

SIZE = 64
WARMUP = 2000
HDR = struct.Struct("<I")


def cpu_s():
    """(user, system) CPU seconds of this process so far, all its threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def per_trip_us(before, after, trips):
    return tuple((a - b) / trips * 1e6 for a, b in zip(after, before))


def pin(cpu):
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def fastmsg_replier(conn, cpu, total):
    pin(cpu)
    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    conn.send(rx.endpoint)
    for i in range(total):
        if i == WARMUP:
            start = cpu_s()
        with rx.recv(timeout=60) as msg:
            msg.reply(msg)
    conn.send(per_trip_us(start, cpu_s(), total - WARMUP))
    conn.recv()  # (the requester is done: close after it)
    rx.close()


def read_frame(sock, buf, view):
    have = 0
    while have < 4 or have < 4 + HDR.unpack_from(buf, 0)[0]:
        n = sock.recv_into(view[have:])
        if not n:
            raise ConnectionError("the peer closed the connection mid-run")
        have += n
    return view[4:have]


def echo(peer, count, size=SIZE):
    """The socket replier's work: reads `count` frames of `size` bytes and sends each back."""
    buf = bytearray(4 + size)
    view = memoryview(buf)
    for _ in range(count):
        read_frame(peer, buf, view)
        peer.sendall(view[:4 + size])


def socket_replier(conn, cpu, total):
    pin(cpu)
    listener = socket.create_server(("127.0.0.1", 0))
    conn.send(listener.getsockname())
    peer, _ = listener.accept()
    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    echo(peer, WARMUP)
    start = cpu_s()
    echo(peer, total - WARMUP)
    conn.send(per_trip_us(start, cpu_s(), total - WARMUP))
    conn.recv()
    peer.close()


def quantile(sorted_ns, q):
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pin", choices=("same", "split"), default="same",
                    help="same: all on CPU 0; split: repliers on CPU 0, requester on CPU 1")
    ap.add_argument("--blocks", type=int, default=100, help="blocks per peer")
    ap.add_argument("--block", type=int, default=200, help="round trips per block")
    args = ap.parse_args()
    if args.blocks < 1 or args.block < 1:
        ap.error("--blocks and --block must be at least 1")
    if args.pin == "split" and hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) < 2:
        ap.error("--pin split needs two CPUs this process may run on")
    total = WARMUP + args.blocks * args.block
    requester_cpu = 0 if args.pin == "same" else 1
    ctx = multiprocessing.get_context("fork")
    pipes, procs = [], []
    for target in (fastmsg_replier, socket_replier):
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=target, args=(theirs, 0, total), daemon=True)
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    pin(requester_cpu)
    tx = fastmsg.Sender(pipes[0].recv())
    sock = socket.create_connection(pipes[1].recv())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = bytes(range(SIZE))
    frame = HDR.pack(SIZE) + payload
    buf = bytearray(4 + SIZE)
    view = memoryview(buf)

    def fastmsg_trip():
        with tx.request(payload, timeout=60) as reply:
            return bytes(reply)

    def socket_trip():
        sock.sendall(frame)
        return bytes(read_frame(sock, buf, view))

    trips = {"fastmsg": fastmsg_trip, "socket": socket_trip}
    for trip in trips.values():
        for _ in range(WARMUP):
            if trip() != payload:
                raise AssertionError("a reply differs from its request")
    clock = time.perf_counter_ns
    samples = {name: [] for name in trips}
    spent = {name: [0.0, 0.0] for name in trips}
    block_ratios = []
    for b in range(args.blocks):
        order = ("fastmsg", "socket") if b % 2 == 0 else ("socket", "fastmsg")
        p50 = {}
        for name in order:
            trip, lat = trips[name], []
            before = cpu_s()
            for _ in range(args.block):
                t0 = clock()
                trip()
                lat.append(clock() - t0)
            after = cpu_s()
            spent[name][0] += after[0] - before[0]
            spent[name][1] += after[1] - before[1]
            p50[name] = statistics.median(lat)
            samples[name].extend(lat)
        block_ratios.append(p50["fastmsg"] / p50["socket"])
    replier_cpu = dict(zip(trips, (pipe.recv() for pipe in pipes)))
    for pipe in pipes:
        pipe.send("done")
    tx.close()
    sock.close()
    for proc in procs:
        proc.join(timeout=30)
    print(f"64 B round trips over TCP, pin {args.pin}, {args.blocks} blocks of {args.block} each, interleaved")
    p50s = {}
    for name, lat in samples.items():
        lat.sort()
        p50s[name] = quantile(lat, 0.5)
        print(f"  {name:8} p50 {p50s[name]:6.1f} us  p99 {quantile(lat, 0.99):6.1f} us  "
              f"p99/p50 {quantile(lat, 0.99) / p50s[name]:.2f}")
        user, system = (t / len(lat) * 1e6 for t in spent[name])
        print(f"           CPU per trip: requester user {user:.1f} sys {system:.1f} us, "
              f"replier user {replier_cpu[name][0]:.1f} sys {replier_cpu[name][1]:.1f} us")
    print(f"  fastmsg/socket p50 {p50s['fastmsg'] / p50s['socket']:.2f}; "
          f"median of the blocks' ratios {statistics.median(block_ratios):.2f} "
          f"(quartiles {statistics.quantiles(block_ratios, n=4)[0]:.2f}-{statistics.quantiles(block_ratios, n=4)[2]:.2f})")


if __name__ == "__main__":
    main()
