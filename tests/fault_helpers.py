"""Helpers for the fault tests (test_faults.py, test_netns.py): messages of mixed sizes whose
every byte can be checked, and the functions child processes run (multiprocessing "spawn": they
must be importable by name; one also runs as a script)."""

import json
import os
import random
import struct
import sys
import threading
import time

import fastmsg

SEQ = struct.Struct("<Q")
# Message bodies are slices of one fixed random block, so that a flipped or misplaced byte
# anywhere in a message shows, and making a 100 KB message costs one slice.
_BLOCK = random.Random(0xFA17).randbytes(1 << 18)
LARGE = 100_000  # the few large messages: outside the ring, and often cut by a reset


def mixed_size(seq, large_every=0):
    """The size of message `seq`: mostly 8 B..2 KB, one in 16 from 2 KB to 20 KB (from 16 KiB they
    go outside the sender's ring when max_batch_bytes is 16 KiB), and, if large_every, one in
    that many of LARGE bytes."""
    r = (seq * 0x9E3779B97F4A7C15 >> 17) & 0xFFFFFFFF
    if large_every and seq % large_every == large_every // 2:
        return LARGE
    if r % 16 == 0:
        return 2_000 + r % 18_001
    return 8 + r % 1_993


def mixed_payload(seq, large_every=0):
    """Message `seq`: its sequence number (8 bytes) and a slice of the random block picked by seq."""
    size = mixed_size(seq, large_every)
    start = (seq * 7919) % (len(_BLOCK) - LARGE)
    return SEQ.pack(seq) + _BLOCK[start:start + size - SEQ.size]


def check_mixed(buf, large_every=0):
    """The seq of a message built by mixed_payload(); AssertionError if any of its bytes is wrong."""
    assert len(buf) >= SEQ.size, f"a {len(buf)}-byte message is shorter than any sent"
    seq = SEQ.unpack_from(buf)[0]
    expected = mixed_payload(seq, large_every)
    if bytes(buf) != expected:
        diff = next((i for i, (a, b) in enumerate(zip(bytes(buf), expected)) if a != b), min(len(buf), len(expected)))
        raise AssertionError(f"message {seq} corrupted: {len(buf)} bytes (expected {len(expected)}), "
                             f"first difference at byte {diff}")
    return seq


# ---- child-process entry points ----

def stream_mixed(endpoint, count, conn, large_every=0, max_batch_bytes=16 << 10, hwm_bytes=1 << 20,
                 chunk=256, flush_timeout=60, first=0):
    """Sends mixed_payload(first..first+count-1) in send_many chunks, then flush(); reports through
    `conn` whether flush() returned True, and the sender's stats."""
    tx = fastmsg.Sender(endpoint, max_batch_bytes=max_batch_bytes, hwm_bytes=hwm_bytes)
    for start in range(first, first + count, chunk):
        tx.send_many([mixed_payload(i, large_every) for i in range(start, min(first + count, start + chunk))])
    flushed = tx.flush(flush_timeout)
    conn.send(dict(flushed=flushed, stats=tx.stats()))
    tx.close(linger=0)
    conn.close()


def stream_killing_once(tx, count, record_path, kill, seconds=60):
    """Sends mixed_payload(0..count-1) through tx, 256 a call; once the receiver has recorded a
    third of them in record_path (receive_and_record's file), calls kill(), which kills that
    receiver and starts the next. Returns tx's acknowledged count just before the kill."""
    sent, acked_before_kill = 0, None
    deadline = time.monotonic() + seconds
    while sent < count:
        assert time.monotonic() < deadline, f"stuck at {sent} sent: {tx.stats()}"
        n = min(256, count - sent)
        try:
            # (a timeout: with the first receiver dead, the ring fills until the second is up)
            sent += tx.send_many([mixed_payload(i) for i in range(sent, sent + n)], timeout=0.2)
        except fastmsg.Timeout as e:
            sent += e.queued
        if acked_before_kill is None and os.path.getsize(record_path) >= count // 3 * 8:
            acked_before_kill = tx.stats()["acknowledged"]
            kill()
    assert acked_before_kill is not None, "the stream ended before the kill"
    return acked_before_kill


def receive_and_record(port, path, ready, ack="released"):
    """A Receiver on 127.0.0.1:port that checks every message and writes its seq to `path` (one
    write() each, so a SIGKILL loses none written) before releasing it; runs until killed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # (there once ready is set)
    rx = fastmsg.Receiver(f"tcp://127.0.0.1:{port}", ack=ack)
    ready.set()
    _record(rx, fd, threading.Event())


def _record(rx, fd, stop, pace=None):
    """`pace`: a one-item list, the seconds to spend on each message (a slow application)."""
    while not stop.is_set():
        seconds = pace[0] if pace else 0
        try:
            batch = rx.recv_many(64 if seconds else 1024, timeout=0.2)
        except fastmsg.Timeout:
            continue
        for m in batch:
            os.write(fd, SEQ.pack(check_mixed(m)))
        if seconds:
            time.sleep(seconds * len(batch))  # (the work a slow application does on them)
        for m in batch:
            m.release()
    os.close(fd)


def read_record(path):
    """The seqs receive_and_record() wrote, in order."""
    with open(path, "rb") as f:
        data = f.read()
    return [s for (s,) in SEQ.iter_unpack(data[:len(data) - len(data) % SEQ.size])]


def receive_and_hold(port, ack, conn):
    """A Receiver on 127.0.0.1:port driven through `conn`: ("until", last, keep) receives messages
    until the one numbered `last`, processes (releases) all but the last `keep` and holds those, and
    answers with the seqs received; runs until killed."""
    rx = fastmsg.Receiver(f"tcp://127.0.0.1:{port}", ack=ack)
    conn.send("ready")
    held = []
    while True:
        _, last, keep = conn.recv()
        seqs = []
        for _ in range(30):  # bounded: each round waits at most 1 s
            if seqs and seqs[-1] >= last:
                break
            try:
                batch = rx.recv_many(4096, timeout=1)
            except fastmsg.Timeout:
                continue
            for m in batch:
                seqs.append(check_mixed(m))
                held.append(m)
        while len(held) > keep:
            held.pop(0).release()
        conn.send(seqs)


def record_until_stdin_closes(endpoint, path, options):
    """receive_and_record() as a plain script, for a receiver that cannot be a multiprocessing
    child (one started inside another network namespace): prints the endpoint it is bound to,
    records until its stdin closes, then prints its stats as JSON. A line "pace S" on its stdin
    makes it spend S seconds on each message from then on."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    rx = fastmsg.Receiver(endpoint, **options)
    stop = threading.Event()
    pace = [0.0]

    def commands():
        for line in sys.stdin:
            if line.startswith("pace "):
                pace[0] = float(line.split()[1])
        stop.set()

    threading.Thread(target=commands, daemon=True).start()
    print(rx.endpoint, flush=True)
    _record(rx, fd, stop, pace)
    print(json.dumps(rx.stats()), flush=True)
    rx.close()


if __name__ == "__main__":
    record_until_stdin_closes(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
