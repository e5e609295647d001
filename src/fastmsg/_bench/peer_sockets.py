"""Plain sockets: 4-byte little-endian length prefix + payload, over TCP or a Unix socket.

Throughput: the sender joins small frames into ~64 KiB writes (frames from 4 KiB go out as one
sendmsg each), or in "single" mode makes one sendall() per framed message; the receiver reads
into a large buffer and splits frames. Round trip: one write per message (from asyncio: an
asyncio Protocol over the same framing). Sockets stay in
blocking mode (no poll() before each call, as a plain program does); SO_RCVTIMEO / SO_SNDTIMEO
bound every wait instead."""

import os
import socket
import struct
import time

from fastmsg._bench.payload import Check, batches, pool, time_round_trips, time_round_trips_async

NAME = "sockets"
_HDR = struct.Struct("<I")


def unavailable():
    return None


def unavailable_over(transport):
    if transport == "ipc" and not hasattr(socket, "AF_UNIX"):
        return "Python's socket module has no Unix sockets here"
    return None


def _bounded(sock, timeout):
    tv = struct.pack("@ll", int(timeout), int((timeout % 1) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
    if sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _listen(spec):
    if spec["transport"] == "ipc":
        path = os.path.join(spec["ipc_dir"], f"sockets-{os.getpid()}-{time.monotonic_ns()}")
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(path)
        endpoint = "ipc://" + path
    else:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.bind(("127.0.0.1", 0))
        endpoint = "tcp://127.0.0.1:%d" % ls.getsockname()[1]
    ls.listen(1)
    ls.settimeout(spec["timeout"])
    return ls, endpoint


def _connect(spec, endpoint):
    from fastmsg.endpoint import parse

    ep = parse(endpoint)
    sock = socket.socket(ep.socket_family(), socket.SOCK_STREAM)
    sock.settimeout(spec["timeout"])
    sock.connect(ep.sockaddr())
    sock.settimeout(None)
    return _bounded(sock, spec["timeout"])


def _accept(ls, spec):
    try:
        conn, _ = ls.accept()
    finally:
        ls.close()
    conn.settimeout(None)
    return _bounded(conn, spec["timeout"])


def _sendmsg_all(sock, bufs):
    views = [memoryview(b) for b in bufs]
    while views:
        n = sock.sendmsg(views)
        while views and n >= len(views[0]):
            n -= len(views.pop(0))
        if n:
            views[0] = views[0][n:]


def serve(spec, ready):
    ls, endpoint = _listen(spec)
    ready(endpoint)
    with _accept(ls, spec) as conn:
        if spec["mode"] in ("pingpong", "apingpong"):
            return _echo(conn, spec)
        return _receive(conn, spec)


def drive(spec, endpoint):
    if spec["mode"] == "apingpong":
        return _aping(spec, endpoint)
    with _connect(spec, endpoint) as sock:
        if spec["mode"] == "pingpong":
            return _ping(sock, spec)
        return _send(sock, spec)


def _send(sock, spec):
    payloads, count, size = pool(spec["size"]), spec["count"], spec["size"]
    pack, one_by_one = _HDR.pack, spec["mode"] == "single"
    for batch in batches(payloads, count, NAME, limit=max(1, (64 << 10) // (size + 4))):
        if one_by_one:
            for p in batch:
                sock.sendall(pack(len(p)) + p)
        elif size >= 4096:
            for p in batch:
                _sendmsg_all(sock, [pack(len(p)), p])
        else:
            parts = []
            for p in batch:
                parts.append(pack(len(p)))
                parts.append(p)
            sock.sendall(b"".join(parts))
    sock.shutdown(socket.SHUT_WR)
    return {"sent": count}


def _receive(conn, spec):
    size, count = spec["size"], spec["count"]
    check = Check(size, count)
    buf = bytearray(max(4 << 20, 2 * (size + 4)))
    view = memoryview(buf)
    start = end = 0
    unpack = _HDR.unpack_from
    while check.count < count:
        if len(buf) - end < size + 4:  # move the partial frame to the front
            view[:end - start] = view[start:end]
            start, end = 0, end - start
        try:
            n = conn.recv_into(view[end:])
        except (BlockingIOError, TimeoutError):
            raise check.missing(f"nothing arrived for {spec['timeout']} s") from None
        if not n:
            raise check.missing("the sender closed the connection")
        end += n
        frames = []
        while end - start >= 4:
            (length,) = unpack(buf, start)
            if end - start < 4 + length:
                if length > len(buf) - 4:
                    raise AssertionError(f"frame of {length} bytes, expected {size}")
                break
            frames.append(view[start + 4:start + 4 + length])
            start += 4 + length
        if frames:
            check.add(frames)
            del frames
    return check.result(pool(size))


def _read_frame(sock, buf, view):
    have = 0
    while True:
        if have >= 4:
            (length,) = _HDR.unpack_from(buf, 0)
            if length > len(buf) - 4:
                raise AssertionError(f"frame of {length} bytes, expected {len(buf) - 4}")
            if have >= 4 + length:
                return view[4:4 + length]
        n = sock.recv_into(view[have:])
        if not n:
            raise AssertionError("the peer closed the connection mid-run")
        have += n


def _echo(conn, spec):
    size, total = spec["size"], spec["count"] + spec["warmup"]
    buf = bytearray(4 + size)
    view = memoryview(buf)
    for i in range(total):
        try:
            msg = _read_frame(conn, buf, view)
        except (BlockingIOError, TimeoutError):
            raise AssertionError(f"round trip {i + 1} of {total}: nothing arrived for {spec['timeout']} s") from None
        if len(msg) != size:
            raise AssertionError(f"message {i + 1} has {len(msg)} bytes, expected {size}")
        conn.sendall(view[:4 + size])
    return {"received": total}


def _ping(sock, spec):
    size = spec["size"]
    frames = [_HDR.pack(size) + p for p in pool(size)]
    buf = bytearray(4 + size)
    view = memoryview(buf)

    def trip(i, p):
        sock.sendall(frames[i % len(frames)])
        return _read_frame(sock, buf, view)

    return time_round_trips(spec, trip)


def _aping(spec, endpoint):
    import asyncio

    size = spec["size"]
    frames = [_HDR.pack(size) + p for p in pool(size)]
    state = {}

    class Framed(asyncio.Protocol):
        """Collects one framed reply at a time into `buf`, and resolves `done` once it is whole."""

        def __init__(self):
            self.buf, self.done = bytearray(), None

        def data_received(self, data):
            self.buf += data
            if len(self.buf) >= 4 + size and self.done is not None and not self.done.done():
                self.done.set_result(bytes(self.buf[4:4 + size]))
                del self.buf[:4 + size]

    async def trip(i, p):
        loop = asyncio.get_running_loop()
        if not state:  # connected on the loop that runs the round trips
            sock = _connect(spec, endpoint)
            sock.setblocking(False)
            state["t"], state["p"] = await loop.connect_accepted_socket(Framed, sock)
        transport, proto = state["t"], state["p"]
        proto.done = loop.create_future()
        transport.write(frames[i % len(frames)])
        return await asyncio.wait_for(proto.done, spec["timeout"])

    try:
        return time_round_trips_async(spec, trip)
    finally:
        if state:
            state["t"].close()
