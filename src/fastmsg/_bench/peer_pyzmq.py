"""pyzmq: PUSH/PULL for throughput (copy=False from 64 KiB), REQ/REP for the round trip (zmq.asyncio's
from asyncio).

pyzmq has no call that takes a batch of messages, so the sender makes one send() per message in
both throughput modes (libzmq batches the writes itself)."""

import os
import time

from fastmsg._bench.payload import Check, batches, pool, time_round_trips, time_round_trips_async

NAME = "pyzmq"
_ZERO_COPY_FROM = 64 << 10


def unavailable():
    try:
        import zmq  # noqa: F401
    except ImportError:
        return "not installed (pip install pyzmq)"
    return None


def unavailable_over(transport):
    import zmq

    if transport == "ipc" and not zmq.has("ipc"):
        return f"this libzmq ({zmq.zmq_version()}) has no ipc://"
    return None


def _socket(kind, spec):
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(kind)
    ms = int(spec["timeout"] * 1000)
    sock.setsockopt(zmq.RCVTIMEO, ms)
    sock.setsockopt(zmq.SNDTIMEO, ms)
    sock.setsockopt(zmq.LINGER, ms)
    return ctx, sock


_held = []  # a PUSH socket kept open after its run: see drive()


def _close(ctx, sock):
    sock.close()
    ctx.term()


def _release_held():
    while _held:
        _close(*_held.pop())


def serve(spec, ready):
    import zmq

    _release_held()
    pingpong = spec["mode"] in ("pingpong", "apingpong")
    ctx, sock = _socket(zmq.REP if pingpong else zmq.PULL, spec)
    try:
        if spec["transport"] == "ipc":
            sock.bind("ipc://" + os.path.join(spec["ipc_dir"], f"zmq-{os.getpid()}-{time.monotonic_ns()}"))
        else:
            sock.bind("tcp://127.0.0.1:*")
        ready(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        return _echo(sock, spec) if pingpong else _receive(sock, spec)
    finally:
        _close(ctx, sock)


def drive(spec, endpoint):
    import zmq

    _release_held()
    if spec["mode"] == "apingpong":
        return _aping(spec, endpoint)
    pingpong = spec["mode"] == "pingpong"
    ctx, sock = _socket(zmq.REQ if pingpong else zmq.PUSH, spec)
    try:
        sock.connect(endpoint)
        result = _ping(sock, spec) if pingpong else _send(sock, spec)
    except BaseException:
        _close(ctx, sock)
        raise
    if pingpong:
        _close(ctx, sock)
    else:
        # libzmq 4.3.5 was seen to drop the last few hundred queued PUSH messages when the socket
        # is closed right after sending (over ipc, processes on two CPUs), whatever the linger.
        # So the socket stays open until the next command, when the receiver has had them all.
        _held.append((ctx, sock))
    return result


def _send(sock, spec):
    size, count = spec["size"], spec["count"]
    copy = size < _ZERO_COPY_FROM
    send = sock.send
    for batch in batches(pool(size), count, NAME):
        for p in batch:
            send(p, copy=copy)
    return {"sent": count}


def _receive(sock, spec):
    import zmq

    size, count = spec["size"], spec["count"]
    check = Check(size, count)
    copy = size < _ZERO_COPY_FROM
    recv = sock.recv
    try:
        while check.count < count:
            msgs = [recv(copy=copy)]
            take = min(255, count - check.count - 1)
            try:
                for _ in range(take):  # drain what is queued without waiting
                    msgs.append(recv(zmq.NOBLOCK, copy=copy))
            except zmq.Again:
                pass
            check.add(msgs if copy else [m.buffer for m in msgs])
    except zmq.Again:
        raise check.missing(f"nothing arrived for {spec['timeout']} s") from None
    return check.result(pool(size))


def _echo(sock, spec):
    import zmq

    size, total = spec["size"], spec["count"] + spec["warmup"]
    for i in range(total):
        try:
            msg = sock.recv()
        except zmq.Again:
            raise AssertionError(f"round trip {i + 1} of {total}: nothing arrived for {spec['timeout']} s") from None
        if len(msg) != size:
            raise AssertionError(f"message {i + 1} has {len(msg)} bytes, expected {size}")
        sock.send(msg)
    return {"received": total}


def _ping(sock, spec):
    def trip(i, p):
        sock.send(p)
        return sock.recv()

    return time_round_trips(spec, trip)


def _aping(spec, endpoint):
    import zmq
    import zmq.asyncio

    ctx = zmq.asyncio.Context()
    sock = None

    async def trip(i, p):
        nonlocal sock
        if sock is None:  # made on the loop that runs the round trips
            sock = ctx.socket(zmq.REQ)
            ms = int(spec["timeout"] * 1000)
            for opt in (zmq.RCVTIMEO, zmq.SNDTIMEO, zmq.LINGER):
                sock.setsockopt(opt, ms)
            sock.connect(endpoint)
        await sock.send(p)
        return await sock.recv()

    try:
        return time_round_trips_async(spec, trip)
    finally:
        if sock is not None:
            sock.close()
        ctx.term()
