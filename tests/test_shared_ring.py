"""SharedRing: create/attach/unlink, header validation, blocking, and real producer processes."""

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from multiprocessing import shared_memory

import pytest

import fastmsg
from fastmsg import Closed, ProtocolError, SharedRing

WINDOWS = sys.platform == "win32"  # (a named file mapping there, "Local\\<name>": shm_win.c)
HEADER = 128 + 384  # segment header + control block; records follow


@pytest.fixture
def name():
    n = f"fastmsg-test-{uuid.uuid4().hex[:16]}"
    yield n
    try:
        SharedRing.attach(n).unlink()
    except (FileNotFoundError, ProtocolError):
        try:
            shared_memory.SharedMemory(n).unlink()
        except FileNotFoundError:
            pass


def child(code, *args):
    """A Python child process running `code` with sys.argv[1:] = args, stdout piped."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_create_attach_round_trip(name):
    with SharedRing.create(name, 1000) as w, SharedRing.attach(name) as r:
        assert w.capacity == r.capacity == 1024 and w.name == r.name == "/" + name
        assert w.write(b"one") and w.write_many([b"two", b"three"]) == 2
        assert len(r) == 3
        assert [bytes(x) for x in r.read_many(10)] == [b"one", b"two", b"three"]
        with w.reserve(4) as view:
            view[:] = b"four"
        rec = r.read(timeout=1)
        assert bytes(rec) == b"four"
        rec.release()
        assert w.free == 1024
        w.unlink()
    with pytest.raises(FileNotFoundError):
        SharedRing.attach(name)


def test_create_twice_and_attach_missing(name):
    ring = SharedRing.create(name, 64)
    with pytest.raises(FileExistsError):
        SharedRing.create(name, 64)
    ring.unlink()
    ring.close()
    with pytest.raises(FileNotFoundError):
        SharedRing.attach(name)


@pytest.mark.parametrize("bad", ["", "/", "a/b", "x" * 300, "nul\0"])
def test_bad_names(bad):
    with pytest.raises(ValueError):
        SharedRing.create(bad, 64)
    with pytest.raises(TypeError):
        SharedRing.create(b"bytes", 64)
    with pytest.raises(TypeError):
        SharedRing()


def test_bad_capacity(name):
    for bad in (0, 63, 2**33):
        with pytest.raises(ValueError, match="capacity"):
            SharedRing.create(name, bad)


def test_record_too_large(name):
    with SharedRing.create(name, 128) as ring:
        with pytest.raises(ValueError, match=r"65-byte.*at most 56 bytes.*capacity 128"):
            ring.write(b"x" * 65)


def copy_header(name):
    with SharedRing.create(name, 4096):
        seg = shared_memory.SharedMemory(name)
        head = bytes(seg.buf[:HEADER])
        seg.close()
        seg.unlink()
    return head


@pytest.mark.parametrize("damage, message", [
    (lambda h: b"NOTARING" + h[8:], "not a fastmsg ring"),
    (lambda h: h[:8] + (99).to_bytes(4, "little") + h[12:], "incompatible fastmsg version"),
    (lambda h: h[:16] + (1000).to_bytes(8, "little") + h[24:], "layout"),  # capacity not a power of 2
    (lambda h: h[:24] + (16).to_bytes(4, "little") + h[28:], "layout"),  # record header size
    (lambda h: h, "truncated"),  # a valid header, but no room for the records it promises
    pytest.param(lambda h: h[:40], "truncated",  # shorter than any header
                 marks=pytest.mark.skipif(WINDOWS, reason="a mapping is whole pages on Windows: none is this short")),
])
def test_foreign_or_damaged_segment(name, damage, message):
    head = damage(copy_header(name))
    seg = shared_memory.SharedMemory(name, create=True, size=max(len(head), 1) + (0 if len(head) < 128 else 64))
    seg.buf[:len(head)] = head
    try:
        if len(head) < 128:  # make the segment exactly this short
            os.ftruncate(seg._fd, len(head))
        with pytest.raises(ProtocolError, match=message):
            SharedRing.attach(name)
    finally:
        seg.close()


def test_use_after_close(name):
    ring = SharedRing.create(name, 256)
    ring.write(b"x")
    rec = SharedRing.attach(name).read()
    ring.close()
    ring.close()
    for call in (lambda: ring.write(b"x"), ring.read, lambda: len(ring), lambda: ring.read_many(1)):
        with pytest.raises(Closed):
            call()
    assert bytes(rec) == b"x"  # its own handle's mapping lives while the record does
    ring.unlink()  # the name can still be removed through a closed handle


def test_blocked_reader_in_another_process_is_woken(name):
    with SharedRing.create(name, 128) as ring:
        with pytest.raises(fastmsg.Timeout):
            ring.read(timeout=0.02)
        proc = child("""
            import sys, fastmsg
            ring = fastmsg.SharedRing.attach(sys.argv[1])
            print("waiting", flush=True)
            sys.exit(0 if bytes(ring.read(timeout=30)) == b"ping" else 3)
        """, name)
        try:
            assert proc.stdout.readline().strip() == b"waiting"
            assert ring.write(b"ping", timeout=10)
        finally:
            assert proc.wait(timeout=60) == 0, proc.stderr.read()


def test_blocked_writer_is_woken_by_a_reader_process(name):
    with SharedRing.create(name, 128) as ring:
        assert ring.write(b"a" * 56) and ring.write(b"b" * 56)
        assert ring.write(b"c" * 56, timeout=0) is False
        proc = child("""
            import sys, fastmsg
            ring = fastmsg.SharedRing.attach(sys.argv[1])
            sys.exit(0 if bytes(ring.read(timeout=30)) == b"a" * 56 else 3)
        """, name)
        try:
            assert ring.write(b"c" * 56, timeout=30)  # sleeps until the child frees a slot
        finally:
            assert proc.wait(timeout=60) == 0, proc.stderr.read()


def test_write_timeout_when_full(name):
    with SharedRing.create(name, 128) as ring:
        assert ring.write(b"a" * 56) and ring.write(b"b" * 56)
        with pytest.raises(fastmsg.Timeout):
            ring.write(b"c", timeout=0.02)
        assert ring.write(b"c", timeout=0) is False


PRODUCER = """
    import sys, struct, fastmsg
    ring = fastmsg.SharedRing.attach(sys.argv[1])
    total, batch = int(sys.argv[2]), 1000
    crc = 0
    for first in range(0, total, batch):
        recs = [struct.pack("<QI", s, s * 2654435761 % 2**32) * (1 + s % 3) for s in range(first, first + batch)]
        for r in recs:
            crc = fastmsg.crc32c(r, crc)
        sent = ring.write_many(recs)
        while sent < batch:
            ring.write(recs[sent], timeout=30)
            sent += 1 + ring.write_many(recs[sent + 1:])
    print(crc)
"""


def test_producer_process_streams_1m_records(name):
    import struct
    total = 1_000_000
    with SharedRing.create(name, 1 << 16) as ring:
        proc = child(PRODUCER, name, total)
        try:
            crc = 0
            expect = 0
            while expect < total:
                for rec in ring.read_many(4096, timeout=30):
                    data = bytes(rec)
                    rec.release()
                    seq, check = struct.unpack_from("<QI", data)
                    assert seq == expect and check == seq * 2654435761 % 2**32, f"record {expect}"
                    assert len(data) == 12 * (1 + seq % 3)
                    crc = fastmsg.crc32c(data, crc)
                    expect += 1
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            assert int(out) == crc
            assert ring.read() is None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def test_writer_killed_mid_record_leaves_only_complete_records(name):
    """A writer process is killed with a reservation half filled: the reader sees exactly the
    records it committed, each intact, and a new writer can carry on after it."""
    with SharedRing.create(name, 4096) as ring:
        proc = child("""
            import sys, time, fastmsg
            ring = fastmsg.SharedRing.attach(sys.argv[1])
            for i in range(20):
                ring.write(b"complete-%03d" % i * 4)
            with ring.reserve(600) as view:
                view[:300] = b"P" * 300        # half a record, never committed
                print("ready", flush=True)
                time.sleep(60)                  # killed long before this ends
        """, name)
        try:
            assert proc.stdout.readline().strip() == b"ready"
            proc.kill()  # SIGKILL (TerminateProcess on Windows): no handler, no unwinding
            assert proc.wait(timeout=30) == (1 if WINDOWS else -signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
        got = [bytes(r) for r in ring.read_many(100)]
        assert got == [b"complete-%03d" % i * 4 for i in range(20)]
        assert ring.read() is None and len(ring) == 0
        successor = SharedRing.attach(name)  # resumes at the published position
        assert successor.write(b"after")
        assert bytes(ring.read(timeout=5)) == b"after"
        successor.close()
