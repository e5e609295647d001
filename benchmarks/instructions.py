"""Instructions per message, counted by valgrind's callgrind: a cost that a shared, noisy machine
does not blur, where the wall-clock rates of `fastmsg bench` can move by more than the change
being measured. Callgrind runs each process's threads one at a time, so the batching (and with it
the count) is not the one a free run would see: compare builds with this, not with the peers.

A Sender streams messages with send_many (1,024 a call), or with --single one send() each, to a
Receiver in a child process that takes them with recv_many (with --requests: one request() at a
time, each answered by reply() inside a `with` block, counted per round trip; with --socket-echo,
for scale, the plain socket echo of round_trip_interleaved.py instead, driven as it drives it).
Each side is counted twice, for MESSAGES and a third of them, and the difference divided by the
messages between (start-up, imports and the handshake cancel out).
Per function, with --functions, the functions whose count per message is largest.

Run: python benchmarks/instructions.py [--size 64] [--transport ipc|tcp] [--messages 300000]
     [--ack released|received] [--single | --requests | --socket-echo] [--functions 15]
Needs valgrind (callgrind_annotate comes with it).
"""

import argparse
import collections
import multiprocessing
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile


def _receive(pipe, endpoint, count, ack, how):
    import fastmsg

    rx = fastmsg.Receiver(endpoint, **({"ack": ack} if ack != "released" else {}))  # (builds before acks)
    pipe.send(rx.endpoint)
    if how == "requests":
        for _ in range(count):
            with rx.recv(timeout=120) as m:
                m.reply(m)
        rx.close()
        return
    got = 0
    while got < count:
        batch = rx.recv_many(1024, timeout=120)
        got += len(batch)
        del batch
    rx.close()


def _socket_replier(pipe, count, size):
    from round_trip_interleaved import echo

    listener = socket.create_server(("127.0.0.1", 0))
    pipe.send(listener.getsockname())
    peer, _ = listener.accept()
    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    echo(peer, count, size)
    peer.close()


def socket_echo(count, size):
    """The measured program of --socket-echo: round_trip_interleaved.py's socket trips over TCP."""
    from round_trip_interleaved import HDR, read_frame

    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.Process(target=_socket_replier, args=(theirs, count, size))
    child.start()
    if not ours.poll(120):
        raise SystemExit("the replier did not start")
    sock = socket.create_connection(ours.recv())
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    frame = HDR.pack(size) + b"x" * size
    buf = bytearray(4 + size)
    view = memoryview(buf)
    for _ in range(count):
        sock.sendall(frame)
        bytes(read_frame(sock, buf, view))
    child.join(120)
    sock.close()
    print(f"sender {os.getpid()} receiver {child.pid}")


def stream(count, size, transport, ack, how):
    """The measured program: run under callgrind, it prints the pids of both sides."""
    multiprocessing.set_start_method("fork")
    if how == "socket_echo":
        return socket_echo(count, size)
    import fastmsg

    where = tempfile.mkdtemp()
    endpoint = f"ipc://{where}/rx" if transport == "ipc" else "tcp://127.0.0.1:0"
    ours, theirs = multiprocessing.Pipe()
    child = multiprocessing.Process(target=_receive, args=(theirs, endpoint, count, ack, how))
    child.start()
    if not ours.poll(120):
        raise SystemExit("the receiver did not start")
    tx = fastmsg.Sender(ours.recv())
    if how == "requests":
        payload = b"x" * size
        for _ in range(count):
            with tx.request(payload, timeout=120):
                pass
    elif how == "single":
        send, payload = tx.send, b"x" * size
        for _ in range(count):
            send(payload)
    else:
        batch = [b"x" * size] * 1024
        for _ in range(count // 1024):
            tx.send_many(batch)
        if count % 1024:
            tx.send_many(batch[: count % 1024])
    if not tx.flush(timeout=120):
        raise SystemExit("flush() did not finish")
    child.join(120)
    tx.close()
    print(f"sender {os.getpid()} receiver {child.pid}")


def _counts(path):
    """{function: instructions} and the total, from one callgrind output file."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path], capture_output=True, text=True,
                         check=True).stdout
    per, total = collections.Counter(), 0
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([ \d.]+%\)\s+(.*)", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            total = n
        else:  # "file:function [object]" (not the annotated source lines, not the calls "=>")
            f = re.fullmatch(r"(\S+):([A-Za-z_][\w@.']*)( \[.*\])?", m.group(2).strip())
            if f:
                per[f.group(2)] += n
    return per, total


def _how(args):
    return "requests" if args.requests else "single" if args.single else "socket_echo" if args.socket_echo else "many"


def _run(count, args, out_dir):
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", "-q",
           f"--callgrind-out-file={out_dir}/cg.{count}.%p", sys.executable, __file__, "--child",
           str(count), str(args.size), args.transport, args.ack, _how(args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    m = re.search(r"sender (\d+) receiver (\d+)", done.stdout)
    if done.returncode != 0 or not m:
        raise SystemExit(f"the measured run failed:\n{done.stdout}{done.stderr}")
    return {side: _counts(f"{out_dir}/cg.{count}.{pid}") for side, pid in zip(("sender", "receiver"), m.groups())}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        count, size, transport, ack, how = sys.argv[2:7]
        return stream(int(count), int(size), transport, ack, how)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--transport", choices=["ipc", "tcp"], default="ipc")
    p.add_argument("--messages", type=int, default=300_000)
    p.add_argument("--ack", choices=["released", "received"], default="released")
    one = p.add_mutually_exclusive_group()
    one.add_argument("--single", action="store_true", help="one send() per message, not send_many")
    one.add_argument("--requests", action="store_true",
                     help="request() answered by reply(), one at a time: instructions per round trip")
    one.add_argument("--socket-echo", action="store_true",
                     help="for scale: the plain socket echo of round_trip_interleaved.py (TCP), per round trip")
    p.add_argument("--functions", type=int, default=0, help="also list this many functions per side")
    args = p.parse_args()
    if not (shutil.which("valgrind") and shutil.which("callgrind_annotate")):
        raise SystemExit("valgrind is not installed (it brings callgrind_annotate)")
    small = max(1, args.messages // 3)
    with tempfile.TemporaryDirectory() as out_dir:
        big, little = _run(args.messages, args, out_dir), _run(small, args, out_dir)
    between = args.messages - small
    unit = "round trip" if args.requests or args.socket_echo else "message"
    if args.socket_echo:
        over = "tcp by the plain socket echo"
    else:
        how = {"requests": "request/reply", "single": "send() each", "many": "send_many"}[_how(args)]
        over = f"{args.transport} by {how}, ack={args.ack}"
    print(f"{args.size} B over {over}: instructions per {unit} ({small:,} to {args.messages:,} {unit}s)")
    for side in ("sender", "receiver"):
        (per_big, total_big), (per_small, total_small) = big[side], little[side]
        print(f"  {side:8} {(total_big - total_small) / between:8.1f}")
        if args.functions:
            cost = {f: (n - per_small.get(f, 0)) / between for f, n in per_big.items()}
            for f, c in sorted(cost.items(), key=lambda kv: -kv[1])[: args.functions]:
                print(f"      {c:8.1f}  {f[:90]}")


if __name__ == "__main__":
    main()
