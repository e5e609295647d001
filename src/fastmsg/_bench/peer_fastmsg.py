"""fastmsg: Sender.send_many / Receiver.recv_many for throughput (Sender.send per message in
"single" mode); the round trip is Sender.request answered by Message.reply, on one connection,
and from asyncio fastmsg.asyncio's Sender.request."""

import os
import time

import fastmsg
from fastmsg._bench.payload import Check, batches, pool, time_round_trips, time_round_trips_async

NAME = "fastmsg"


def unavailable():
    if not (hasattr(fastmsg, "Sender") and hasattr(fastmsg, "Receiver")):
        return "not available in this build"
    return None


def unavailable_over(transport):
    return None  # (ipc:// wherever the system has Unix sockets, Windows included)


def _bind(spec, tag):
    if spec["transport"] == "ipc":
        return fastmsg.Receiver("ipc://" + os.path.join(spec["ipc_dir"], f"fastmsg-{tag}-{os.getpid()}-{time.monotonic_ns()}"))
    return fastmsg.Receiver("tcp://127.0.0.1:0")


def serve(spec, ready):
    rx = _bind(spec, "rx")
    try:
        ready(rx.endpoint)
        if spec["mode"] in ("pingpong", "apingpong"):
            return _echo(rx, spec)
        return _receive(rx, spec)
    finally:
        rx.close()


def drive(spec, endpoint):
    if spec["mode"] == "apingpong":
        return _aping(spec, endpoint)
    tx = fastmsg.Sender(endpoint)
    try:
        if spec["mode"] == "pingpong":
            return _ping(tx, spec)
        return _send(tx, spec)
    finally:
        tx.close()


def _send(tx, spec):
    count = spec["count"]
    one_by_one, send = spec["mode"] == "single", tx.send
    for batch in batches(pool(spec["size"]), count, NAME):
        if one_by_one:
            for p in batch:
                send(p)
        else:
            tx.send_many(batch)
    if not tx.flush(timeout=spec["timeout"]):
        raise AssertionError(f"flush() did not finish within {spec['timeout']} s")
    return {"sent": count}


def _receive(rx, spec):
    size, count = spec["size"], spec["count"]
    check = Check(size, count)
    try:
        while check.count < count:
            msgs = rx.recv_many(min(1024, count - check.count), timeout=spec["timeout"])
            check.add(msgs)
            del msgs
    except fastmsg.Timeout:
        raise check.missing(f"nothing arrived for {spec['timeout']} s") from None
    return check.result(pool(size))


def _echo(rx, spec):
    size, total, timeout = spec["size"], spec["count"] + spec["warmup"], spec["timeout"]
    for i in range(total):
        try:
            msg = rx.recv(timeout=timeout)
        except fastmsg.Timeout:
            raise AssertionError(f"round trip {i + 1} of {total}: nothing arrived for {timeout} s") from None
        with msg:
            if len(msg) != size:
                raise AssertionError(f"message {i + 1} has {len(msg)} bytes, expected {size}")
            msg.reply(msg)
    return {"received": total}


def _ping(tx, spec):
    timeout = spec["timeout"]

    def trip(i, p):
        with tx.request(p, timeout=timeout) as reply:
            return bytes(reply)

    return time_round_trips(spec, trip)


def _aping(spec, endpoint):
    import fastmsg.asyncio

    timeout, tx = spec["timeout"], None

    async def trip(i, p):
        nonlocal tx
        if tx is None:  # made on the loop that runs the round trips
            tx = fastmsg.asyncio.Sender(endpoint)
        with await tx.request(p, timeout=timeout) as reply:
            return bytes(reply)

    try:
        return time_round_trips_async(spec, trip)
    finally:
        if tx is not None:
            tx.close()
