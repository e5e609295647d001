"""Helpers for tests/test_stress_stall.py: the two sides of a one-send()-per-message stream, each
run in a spawned child process (multiprocessing "spawn": they must be importable by name), and
the parent's driver, which runs one transfer with a bound on every wait.

Each side reports through its Pipe. The receiver names a stall (no message for `stall_s` while
some are outstanding) with its stats; the sender answers a "stats" request at any time, even
while its send() or flush() waits, from a thread of its own."""

import os
import struct
import tempfile
import threading
import time

import fastmsg

SEQ = struct.Struct("<Q")
SIZE = 1024


def payload(seq):
    """Message `seq`: 1 KiB carrying its sequence number at both ends, so that a misplaced or
    truncated message shows."""
    head = SEQ.pack(seq)
    return head + bytes(SIZE - 2 * SEQ.size) + head


def _pin(cpu):
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def _context(poller):
    return fastmsg.Context(poller=poller) if poller else None


# ---- child-process entry points ----

def receive_stream(endpoint, count, conn, cpu, poller, stall_s):
    """Binds, reports its endpoint, then receives `count` messages one recv() at a time, checking
    each; reports ("done", stats), ("stall", received, stats) when none came for `stall_s`, or
    ("bad", text, stats)."""
    _pin(cpu)
    ctx = _context(poller)
    rx = fastmsg.Receiver(endpoint, context=ctx) if ctx else fastmsg.Receiver(endpoint)
    conn.send(("endpoint", rx.endpoint))
    got = 0
    try:
        while got < count:
            try:
                # (the first message waits for the sender's process to start)
                with rx.recv(timeout=stall_s if got else 60.0) as m:
                    view = memoryview(m)
                    if len(view) != SIZE or SEQ.unpack_from(view)[0] != got or SEQ.unpack_from(view, SIZE - SEQ.size)[0] != got:
                        conn.send(("bad", f"message {got}: {len(view)} bytes, starts {bytes(view[:8]).hex()}", rx.stats()))
                        return
                    view.release()
                got += 1
            except fastmsg.Timeout:
                conn.send(("stall", got, rx.stats()))
                return
        conn.send(("done", rx.stats()))
    finally:
        rx.close()
        if ctx:
            ctx.close()


def send_stream(endpoint, count, conn, cpu, poller, flush_s):
    """Sends `count` messages with one send() each, then flush(); reports ("done", flushed,
    stats). Until then a thread answers each "stats" request with ("stats", stats)."""
    _pin(cpu)
    ctx = _context(poller)
    tx = fastmsg.Sender(endpoint, context=ctx) if ctx else fastmsg.Sender(endpoint)
    lock = threading.Lock()  # one writer on the pipe at a time

    def answer():
        try:
            while conn.recv() == "stats":
                with lock:
                    conn.send(("stats", tx.stats()))
        except (EOFError, OSError):
            pass

    threading.Thread(target=answer, daemon=True).start()
    for i in range(count):
        tx.send(payload(i))
    flushed = tx.flush(flush_s)
    with lock:
        conn.send(("done", flushed, tx.stats()))
    tx.close(linger=0)


# ---- the parent's side ----

def _endpoint(transport, tmpdir):
    if transport == "ipc":
        return f"ipc://{os.path.join(tmpdir, 'stall.sock')}"
    return "tcp://127.0.0.1:0"


def _reply(conn, timeout):
    return conn.recv() if conn.poll(timeout) else None


def transfer(spawn, transport, count, poller=None, stall_s=10.0, limit_s=120.0):
    """One transfer of `count` messages between two fresh processes, the sender pinned to CPU 0
    and the receiver to CPU 1 where there are two. Returns None if every message arrived in order
    and flush() returned True; otherwise a text that says what happened, with both sides' stats."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    tx_cpu, rx_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    procs = []
    with tempfile.TemporaryDirectory(prefix="fmstall") as tmpdir:
        try:
            rx_conn, rx_end = spawn.Pipe()
            rx = spawn.Process(target=receive_stream, daemon=True,
                               args=(_endpoint(transport, tmpdir), count, rx_end, rx_cpu, poller, stall_s))
            rx.start()
            procs.append(rx)
            hello = _reply(rx_conn, 30)
            if not hello or hello[0] != "endpoint":
                return f"the receiver did not start: {hello!r}"
            tx_conn, tx_end = spawn.Pipe()
            tx = spawn.Process(target=send_stream, daemon=True, args=(hello[1], count, tx_end, tx_cpu, poller, limit_s))
            tx.start()
            procs.append(tx)
            deadline = time.monotonic() + limit_s
            report = None
            while report is None and time.monotonic() < deadline:
                report = _reply(rx_conn, 1.0)
                if report is None and not rx.is_alive():
                    report = _reply(rx_conn, 1.0) or ("died", f"exit code {rx.exitcode}")
            if report and report[0] == "done":
                sent = _reply(tx_conn, limit_s)
                if sent and sent[0] == "done" and sent[1]:
                    return None
                return f"every message arrived, but the sender's flush() did not end well: {sent!r}"
            if report is None:
                report = ("slow", f"the transfer took longer than {limit_s} s")
            tx_stats = None
            if tx.is_alive():
                tx_conn.send("stats")
                tx_stats = _reply(tx_conn, 5)
            return (f"{transport} transfer of {count} messages (poller {poller or 'default'}) failed: "
                    f"receiver {report!r}; sender {tx_stats!r} (exit code {tx.exitcode})")
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                p.join(10)
