"""Helpers for tests/test_transport.py: message layout, bounded waits, raw peers, and functions
run in spawned child processes (they must be importable by name, hence this module)."""

import os
import socket
import struct
import sys
import time

import fastmsg
from fastmsg._core import protocol as proto

HEAD = struct.Struct("<IQ")  # sender id, sequence number


def payload(sender_id, seq):
    """A message carrying (sender id, seq) and a filler of varying size derived from both."""
    fill = (seq * 7 + sender_id * 13) % 61
    return HEAD.pack(sender_id, seq) + bytes([(seq + sender_id) & 0xFF]) * fill


def check_payload(buf):
    """(sender_id, seq) of a message built by payload(); AssertionError if its bytes are wrong."""
    sender_id, seq = HEAD.unpack_from(buf)
    expected = payload(sender_id, seq)
    assert bytes(buf) == expected, f"message {sender_id}/{seq} corrupted: {bytes(buf)[:32]!r}"
    return sender_id, seq


def wait_for(predicate, timeout=10.0, what="condition"):
    """Polls predicate() until it is true; AssertionError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.005)  # polling interval only: the condition is what synchronises


def recv_n(rx, n, timeout=20.0):
    """n messages as bytes, each Message released at once."""
    deadline = time.monotonic() + timeout
    out = []
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"only {len(out)} of {n} messages arrived within {timeout} s")
        try:
            batch = rx.recv_many(n - len(out), timeout=min(left, 1.0))
        except fastmsg.Timeout:
            continue
        for m in batch:
            out.append(bytes(m))
            m.release()
    return out


def tcp_address(endpoint):
    """(host, port) of a tcp:// endpoint as Receiver.endpoint reports it."""
    rest = endpoint[len("tcp://"):]
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port)


def free_port(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def raw_connect(endpoint, timeout=5.0):
    host, port = tcp_address(endpoint)
    return socket.create_connection((host, port), timeout=timeout)


def read_until_eof(sock, timeout=5.0):
    """Every byte the peer sends until it closes; AssertionError if it does not close in time."""
    deadline = time.monotonic() + timeout
    out = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"peer did not close within {timeout} s (got {bytes(out)!r})")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except ConnectionResetError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def split_frames(data):
    """Decoded frames (kind name, fields) of a byte string holding whole frames."""
    frames = []
    pos = 0
    while pos < len(data):
        assert len(data) - pos >= 8, f"trailing partial header {data[pos:]!r}"
        length = int.from_bytes(data[pos:pos + 4], "little")
        size = 8 + ((length + 7) & ~7)
        assert len(data) - pos >= size, f"truncated frame {data[pos:]!r}"
        frames.append(proto.decode(data[pos:pos + size]))
        pos += size
    return frames


def read_frame(sock):
    """The next frame on sock, decoded (kind name, fields); AssertionError if the peer closes first."""
    head = b""
    while len(head) < 8:
        chunk = sock.recv(8 - len(head))
        assert chunk, "the peer closed the connection"
        head += chunk
    length = int.from_bytes(head[:4], "little")
    size = 8 + ((length + 7) & ~7)
    body = b""
    while len(body) < size - 8:
        chunk = sock.recv(size - 8 - len(body))
        assert chunk, "the peer closed mid-frame"
        body += chunk
    return split_frames(head + body)[0]


def hello(session_id=0x1234, seq=0, major=proto.VERSION[0], magic=None):
    frame = bytearray(proto.encode_hello(proto.KINDS["HELLO"], session_id=session_id, seq=seq,
                                         max_message=1 << 20, max_batch=1 << 16, major=major))
    if magic is not None:
        frame[8:16] = magic
    return bytes(frame)


# ---- child-process entry points (multiprocessing "spawn") ----

def send_sequence(endpoint, sender_id, count, hwm_bytes=4 << 20):
    """Sends `count` payload() messages, one send() call each, flushes and closes. Exit code 0
    on success."""
    with fastmsg.Sender(endpoint, hwm_bytes=hwm_bytes) as tx:
        for i in range(count):
            tx.send(payload(sender_id, i))
        if not tx.flush(60):
            sys.exit(3)
        stats = tx.stats()
        # (acknowledged, not sent_messages: a reconnect, e.g. a dead-peer timeout on a slow
        # machine, writes some again, and those count as sent twice)
        if stats["acknowledged"] != count:
            print("STATS", stats, file=sys.stderr)
            sys.exit(4)
    sys.exit(0)


def serve_forever(port, ready):
    """A Receiver on 127.0.0.1:port that drains messages until killed."""
    rx = fastmsg.Receiver(f"tcp://127.0.0.1:{port}")
    ready.set()
    while True:
        try:
            rx.recv(timeout=1).release()
        except fastmsg.Timeout:
            pass


def fixed_payload(seq, size=1000):
    """A `size`-byte message carrying seq (fixed size: the byte accounting stays simple)."""
    return HEAD.pack(0, seq) + bytes([seq & 0xFF]) * (size - HEAD.size)


def fill_ring_and_report(endpoint, hwm_bytes, conn):
    """Backpressure child: queues messages until Full, reports what it saw, then waits for the
    order to flush and reports its peak RSS."""
    import resource  # (POSIX: the child is spawned only where its test runs)

    tx = fastmsg.Sender(endpoint, hwm_bytes=hwm_bytes)
    sent = 0
    full = False
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    max_queued = 0
    for _ in range(200_000):
        try:
            tx.send(fixed_payload(sent), timeout=0)
        except fastmsg.Full:
            full = True
            break
        sent += 1
        if sent % 64 == 0:
            max_queued = max(max_queued, tx.stats()["queued_bytes"])
    timeout_raised = False
    if full:
        # the I/O thread may still find room in the socket: keep going until a wait times out
        for _ in range(200_000):
            t0 = time.monotonic()
            try:
                tx.send(fixed_payload(sent), timeout=0.2)
            except fastmsg.Timeout as e:
                timeout_raised = isinstance(e, TimeoutError) and time.monotonic() - t0 >= 0.19
                break
            sent += 1
    conn.send(dict(sent=sent, full=full, timeout_raised=timeout_raised, max_queued=max_queued))
    conn.recv()  # the parent starts reading
    flushed = tx.flush(30)
    rss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    conn.send(dict(flushed=flushed, stats=tx.stats(), rss_growth_kb=rss_end - rss_start))
    tx.close()
    os._exit(0)


def rss_bytes():
    """Resident set size of this process now (Linux), or None where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return None


def stream_and_report_rss(endpoint, total, batch, report):
    """Child: sends `total` 64-byte messages in send_many batches; reports its RSS after the
    first tenth and at the end, so the parent can see that memory stays flat."""
    import fastmsg

    tx = fastmsg.Sender(endpoint)
    msgs = [i.to_bytes(8, "little") * 8 for i in range(batch)]
    early = None
    for n in range(0, total, batch):
        tx.send_many(msgs)
        if early is None and n >= total // 10:
            early = rss_bytes()
    tx.flush(timeout=60)
    report.put((early, rss_bytes()))
    tx.close()
