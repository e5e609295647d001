"""RingBuffer and Record: behaviour, bad input, a model-based test, and a two-thread stream."""

import struct
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import fastmsg
from fastmsg import Closed, Full, RingBuffer


def slot(n):
    """Bytes a record of n payload bytes takes: 8-byte header, payload padded to 8."""
    return 8 + (n + 7) // 8 * 8


def advance(rb, offset):
    """Moves an empty ring's positions `offset` bytes on, with records it accepts."""
    while offset:
        step = min(offset, rb.capacity // 2)
        assert rb.write(b"f" * (step - 8))
        rb.read().release()
        offset -= step


# ---------------------------------------------------------------------------------- basics


def test_round_trip_and_sizes():
    rb = RingBuffer(4096)
    payloads = [b"", b"a", b"1234567", b"12345678", b"123456789", bytes(range(256))]
    for p in payloads:
        assert rb.write(p) is True
    assert len(rb) == len(payloads)
    for p in payloads:
        rec = rb.read()
        assert isinstance(rec, fastmsg.Record)
        assert bytes(rec) == p and len(rec) == len(p) and rec.flags == 0
        assert memoryview(rec).tobytes() == p
        rec.release()
    assert rb.read() is None and len(rb) == 0
    assert rb.free == rb.capacity


def test_accepts_any_contiguous_buffer():
    rb = RingBuffer(1024)
    rb.write(bytearray(b"ba"))
    rb.write(memoryview(b"xxmvxx")[2:4])
    rb.write(np.arange(4, dtype=np.uint16))
    assert [bytes(r) for r in rb.read_many(10)] == [b"ba", b"mv", np.arange(4, dtype=np.uint16).tobytes()]
    with pytest.raises(TypeError):
        rb.write("text")
    with pytest.raises((BufferError, ValueError)):
        rb.write(np.arange(8)[::2])  # not contiguous


@pytest.mark.parametrize("asked, used", [(64, 64), (65, 128), (100, 128), (4096, 4096), (5000, 8192), (2**20 - 1, 2**20)])
def test_capacity_rounds_up_to_power_of_two(asked, used):
    assert RingBuffer(asked).capacity == used


@pytest.mark.parametrize("bad", [0, 1, 63, -64, 2**32 + 1, 2**64])
def test_bad_capacity_rejected(bad):
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(bad)


def test_capacity_type_checked():
    with pytest.raises(TypeError):
        RingBuffer("64")
    with pytest.raises(TypeError):
        RingBuffer(64.0)


def test_record_too_large_names_the_sizes():
    rb = RingBuffer(256)
    assert rb.max_record == 256 // 2 - 8
    assert rb.write(b"x" * rb.max_record)
    for call in (lambda: rb.write(b"x" * 121), lambda: rb.write_many([b"x" * 500]), lambda: rb.reserve(121)):
        with pytest.raises(ValueError, match=r"121|500") as info:
            call()
        assert "120" in str(info.value) and "256" in str(info.value)


def test_max_record_fits_an_empty_ring_at_every_offset():
    for offset in range(0, 256, 8):
        rb = RingBuffer(256)
        advance(rb, offset)
        assert rb.write(b"M" * rb.max_record), offset
        assert bytes(rb.read()) == b"M" * rb.max_record


def test_full_ring_refuses_then_accepts():
    rb = RingBuffer(128)
    assert rb.write(b"a" * 56) and rb.write(b"b" * 56)
    assert rb.free == 0 and rb.write(b"") is False
    with pytest.raises(Full):
        with rb.reserve(1):
            pass
    rb.read().release()
    assert rb.write(b"c" * 56)
    assert [bytes(r) for r in rb.read_many(5)] == [b"b" * 56, b"c" * 56]


def test_write_many_returns_how_many_fit():
    rb = RingBuffer(256)
    assert rb.write_many([b"x" * 24] * 10) == 8  # 32 bytes each
    assert rb.write_many(iter([b"y"])) == 0
    assert rb.write_many([]) == 0
    assert len(rb.read_many(100)) == 8
    assert rb.read_many(0) == []


def test_reserve_commits_on_exit_and_aborts_on_exception():
    rb = RingBuffer(256)
    with rb.reserve(5) as view:
        assert not view.readonly and len(view) == 5
        view[:] = b"hello"
    with pytest.raises(ZeroDivisionError):
        with rb.reserve(7) as view:
            view[:] = b"dropped"
            1 / 0
    with pytest.raises(ValueError):
        view[0] = 1  # the view handed to the with-block is released at its end
    assert [bytes(r) for r in rb.read_many(5)] == [b"hello"]
    free = rb.free
    assert free == rb.capacity - slot(5) or free == rb.capacity  # released records go back


def test_reserve_refuses_a_view_that_outlives_the_block():
    rb = RingBuffer(256)
    with pytest.raises(BufferError, match="still alive"):
        with rb.reserve(8) as view:
            kept = view[2:4]
    assert rb.read() is None  # the record was dropped, not published
    del kept
    with pytest.raises(ValueError):
        rb.reserve(-1)


def test_reserve_with_a_buffer_taken_from_the_view():
    rb = RingBuffer(256)
    with pytest.raises(BufferError, match="still alive"):
        with rb.reserve(8) as view:
            arr = np.frombuffer(view, dtype=np.uint8)
    assert rb.read() is None
    del arr
    with rb.reserve(2) as view:  # the ring is usable again
        view[:] = b"ok"
    assert bytes(rb.read()) == b"ok"


def test_bare_base_class_is_unusable():
    from fastmsg._core.ring import _Ring
    with pytest.raises(Closed):
        _Ring().write(b"x")


def test_record_release_and_use_after_release():
    rb = RingBuffer(256)
    rb.write(b"abc")
    rec = rb.read()
    with rec as r:
        assert bytes(r) == b"abc"
    assert rec.released
    for touch in (lambda: bytes(rec), lambda: len(rec), lambda: memoryview(rec), lambda: rec.flags):
        with pytest.raises(Closed, match="released"):
            touch()
    rec.release()  # idempotent
    with pytest.raises(TypeError):
        fastmsg.Record()


def test_records_are_read_only():
    rb = RingBuffer(256)
    rb.write(b"abc")
    rec = rb.read()
    assert memoryview(rec).readonly
    with pytest.raises(TypeError):
        memoryview(rec)[0] = 1
    assert not np.frombuffer(rec, dtype=np.uint8).flags.writeable


def test_view_keeps_the_slot_until_it_goes():
    rb = RingBuffer(128)
    rb.write(b"A" * 56)
    rec = rb.read()
    view = memoryview(rec)
    rec.release()
    assert rb.free == 64  # the slot is not given back while `view` lives
    for _ in range(10):
        if rb.write(b"B" * 56):
            rb.read().release()
    assert view.tobytes() == b"A" * 56
    view.release()
    assert rb.free == 128


def test_out_of_order_release_gives_space_back_in_order():
    rb = RingBuffer(256)
    rb.write_many([b"1" * 8, b"2" * 8, b"3" * 8])
    r1, r2, r3 = rb.read_many(3)
    r3.release()
    r2.release()
    assert rb.free == 256 - 48
    r1.release()
    assert rb.free == 256


def test_dropping_a_record_releases_it():
    rb = RingBuffer(128)
    rb.write(b"x" * 56)
    rb.read()  # dropped at once
    assert rb.free == 128


def test_views_keep_their_data_across_wraps():
    """A view held while the stream runs on: the ring fills up to its slot and never over it (space
    goes back in order), and the view reads its own bytes until it goes; then the stream wraps."""
    rb = RingBuffer(4096)
    seq = 0
    for round_ in range(40):
        view = expect = None
        for _ in range(1000):  # bounded: the ring is full after at most 4096 / 16 records
            data = struct.pack("<Q", seq) * (1 + seq % 9)
            if not rb.write(data):
                break
            seq += 1
            rec = rb.read()
            if view is None and seq % 7 == round_ % 7:
                view, expect = memoryview(rec), bytes(rec)
            rec.release()
        else:
            pytest.fail("the ring wrapped over a live view")
        assert view is not None and view.tobytes() == expect
        assert rb.free < 8 + 72  # full up to the held slot
        view.release()
        assert rb.free == rb.capacity


def test_close():
    rb = RingBuffer(256)
    rb.write(b"kept")
    rec = rb.read()
    rb.write(b"unread")
    with rb:
        pass
    assert rb.closed
    rb.close()  # idempotent
    for call in (lambda: rb.write(b"x"), rb.read, lambda: rb.read_many(1), lambda: rb.write_many([b"x"]),
                 lambda: rb.reserve(1), lambda: len(rb), lambda: rb.free):
        with pytest.raises(Closed):
            call()
    assert bytes(rec) == b"kept"  # memory stays valid while a record of it lives
    rec.release()


def test_timeouts():
    rb = RingBuffer(128)
    with pytest.raises(fastmsg.Timeout):
        rb.read(timeout=0.01)
    with pytest.raises(TimeoutError):  # fastmsg.Timeout is a TimeoutError
        rb.read_many(4, timeout=0.01)
    rb.write(b"a" * 56)
    rb.write(b"a" * 56)
    with pytest.raises(fastmsg.Timeout):
        rb.write(b"b", timeout=0.01)
    with pytest.raises(ValueError):
        rb.write(b"b", timeout=-1)


def test_blocking_read_is_woken_by_a_writer_thread():
    rb = RingBuffer(1024)
    got = []

    def consume():
        for _ in range(100):
            got.append(bytes(rb.read(timeout=10)))

    t = threading.Thread(target=consume)
    t.start()
    for i in range(100):
        assert rb.write(b"%d" % i, timeout=10)
    t.join(timeout=30)
    assert not t.is_alive()
    assert got == [b"%d" % i for i in range(100)]


# ------------------------------------------------------------------ ring slices on the wire


def parse_records(raw):
    """Parses records in the wire layout; checks alignment, zero padding and no PAD."""
    out, pos = [], 0
    while pos < len(raw):
        length, flags = struct.unpack_from("<II", raw, pos)
        assert flags == 0, "a PAD (or flags) went on the wire"
        end = pos + slot(length)
        assert raw[pos + 8 + length:end] == bytes(end - pos - 8 - length), "padding not zeroed"
        out.append(raw[pos + 8:pos + 8 + length])
        pos = end
    assert pos == len(raw)
    return out


@pytest.mark.parametrize("offset", range(0, 256, 24))
def test_readable_slices_are_whole_records_in_wire_layout(offset):
    rb = RingBuffer(256)
    advance(rb, offset)
    rb.write(b"\xff" * 100)  # dirty the ring so that zero padding is checked
    rb.read().release()
    advance(rb, offset)
    sent = [b"r%d" % i * (i % 4) for i in range(40)]
    got = []
    for _ in range(200):  # bounded; typically a few rounds
        if len(got) == len(sent):
            break
        rb.write_many(sent[len(got) + len(rb):])
        raw, n = rb._send_readable(64)
        assert len(raw) <= 64 and len(parse_records(raw)) == n
        got += parse_records(raw)
    assert got == sent


# ---------------------------------------------------------------- the wrap, at every offset


@pytest.mark.parametrize("capacity", [64, 128, 256])
def test_wrap_at_every_offset(capacity):
    """Every record size that fits, starting at every 8-byte offset of the ring."""
    for offset in range(0, capacity, 8):
        for size in range(0, capacity // 2 - 8 + 1):
            rb = RingBuffer(capacity)
            advance(rb, offset)
            model = RingModel(capacity)
            model.wpos = model.head = offset
            a = bytes((size + i) % 251 for i in range(size))
            assert rb.write(a) and model.write(a)
            assert rb.write(a[::-1]) == model.write(a[::-1])
            got = rb.read_many(3)
            assert [bytes(r) for r in got] == [p for _, _, p in model.unread]


# ---------------------------------------------------------------------- model-based test


class RingModel:
    """The ring in plain Python: positions, PAD at the wrap, in-order release."""

    def __init__(self, capacity):
        self.cap = capacity
        self.wpos = 0
        self.head = 0
        self.unread = []  # (start, end, payload) published, not read yet
        self.pending = {}

    def write(self, payload):
        need = slot(len(payload))
        if need > self.cap // 2:
            raise ValueError
        to_end = self.cap - self.wpos % self.cap
        pad = to_end if to_end < need else 0
        if self.wpos + pad + need > self.head + self.cap:
            return False
        self.unread.append((self.wpos, self.wpos + pad + need, payload))
        self.wpos += pad + need
        return True

    def give_back(self, start, end):
        if start != self.head:
            self.pending[start] = end
            return
        self.head = end
        while self.head in self.pending:
            self.head = self.pending.pop(self.head)

    @property
    def free(self):
        return self.head + self.cap - self.wpos


class RingMachine(RuleBasedStateMachine):
    @initialize(capacity=st.sampled_from([64, 128, 256, 1024, 1 << 20]))
    def setup(self, capacity):
        self.rb = RingBuffer(capacity)
        self.model = RingModel(capacity)
        self.held = []  # [record, start, end, payload, views]
        self.seq = 0

    def payload(self, size):
        self.seq += 1
        return (self.seq.to_bytes(8, "little") * (size // 8 + 1))[:size]

    @rule(size=st.one_of(st.integers(0, 130), st.integers(0, 600_000)))
    def write(self, size):
        data = self.payload(min(size, self.rb.max_record + 8))
        if slot(len(data)) > self.model.cap // 2:
            with pytest.raises(ValueError):
                self.rb.write(data)
            return
        assert self.rb.write(data) == self.model.write(data)

    @rule(sizes=st.lists(st.integers(0, 100), max_size=20))
    def write_many(self, sizes):
        datas = [self.payload(min(s, self.rb.max_record)) for s in sizes]
        n = 0
        for d in datas:
            if not self.model.write(d):
                break
            n += 1
        assert self.rb.write_many(datas) == n

    @rule(size=st.integers(0, 100), fail=st.booleans())
    def reserve(self, size, fail):
        size = min(size, self.rb.max_record)
        data = self.payload(size)
        saved = (self.model.wpos, list(self.model.unread))
        fits = self.model.write(data)
        if fail:  # the reservation is aborted: the model forgets the write
            self.model.wpos, self.model.unread = saved
        try:
            with self.rb.reserve(size) as view:
                assert fits
                view[:] = data
                if fail:
                    raise KeyError
        except Full:
            assert not fits
        except KeyError:
            pass

    @rule(n=st.integers(1, 5))
    def read(self, n):
        recs = self.rb.read_many(n) if n > 1 else [r for r in [self.rb.read()] if r is not None]
        expect = self.model.unread[: len(recs)]
        assert len(recs) == min(n, len(self.model.unread))
        del self.model.unread[: len(recs)]
        for rec, (start, end, payload) in zip(recs, expect):
            assert bytes(rec) == payload
            self.held.append([rec, start, end, payload, []])

    @precondition(lambda self: self.held)
    @rule(i=st.integers(0, 1000), view=st.booleans())
    def release(self, i, view):
        entry = self.held[i % len(self.held)]
        rec, start, end, payload, views = entry
        if rec.released:
            return
        if view:  # keep a view: the slot must outlive the release
            views.append(memoryview(rec))
        rec.release()
        if not views:
            self.held.remove(entry)
            self.model.give_back(start, end)

    @precondition(lambda self: any(e[4] for e in self.held))
    @rule(i=st.integers(0, 1000))
    def drop_view(self, i):
        with_views = [e for e in self.held if e[4]]
        entry = with_views[i % len(with_views)]
        rec, start, end, payload, views = entry
        assert views.pop().tobytes() == payload
        if not views and rec.released:
            self.held.remove(entry)
            self.model.give_back(start, end)

    @invariant()
    def agrees_with_model(self):
        assert len(self.rb) == len(self.model.unread)
        assert self.rb.free == self.model.free

    @invariant()
    def held_records_keep_their_bytes(self):
        for rec, _, _, payload, views in self.held:
            for v in views:
                assert v.tobytes() == payload
            if not rec.released:
                assert bytes(rec) == payload

    def teardown(self):
        for rec, *_rest, views in self.held:
            for v in views:
                v.release()
        self.held.clear()
        self.rb.close()


RingMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_ring_against_model = RingMachine.TestCase


# ------------------------------------------------------------- two threads, 10 M records


def test_two_threads_stream_10m_records_checked():
    """10 M records of 8..40 bytes through a 64 KiB ring, producer and consumer on two threads,
    both in batches. Every record starts with its sequence number and has a length derived from
    it; a CRC32C over the whole stream, computed on each side, must agree."""
    total, batch = 10_000_000, 4000
    rb = RingBuffer(1 << 16)
    index = np.arange(batch)
    sizes = 8 + (index % 5) * 8  # record i of a batch: seq (8 bytes LE) + (i % 5) * 8 filler bytes
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    seq_bytes = offsets[:-1, None] + np.arange(8)  # where each record's sequence number goes
    slices = [slice(int(a), int(b)) for a, b in zip(offsets[:-1], offsets[1:])]
    errors = []
    produced_crc = []

    def produce():
        crc = 0
        buf = np.full(offsets[-1], 0xA5, dtype=np.uint8)
        try:
            for first in range(0, total, batch):
                buf[seq_bytes] = np.arange(first, first + batch, dtype="<u8").view(np.uint8).reshape(-1, 8)
                raw = buf.tobytes()
                crc = fastmsg.crc32c(raw, crc)
                recs = list(map(memoryview(raw).__getitem__, slices))
                sent = rb.write_many(recs)
                while sent < batch:  # full: wait for room for one, then batch again
                    rb.write(recs[sent], timeout=30)
                    sent += 1
                    sent += rb.write_many(recs[sent:])
            produced_crc.append(crc)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    t = threading.Thread(target=produce)
    t.start()
    crc = 0
    expect = 0
    try:
        while expect < total:
            recs = rb.read_many(batch, timeout=30)
            raw = b"".join(recs)
            crc = fastmsg.crc32c(raw, crc)
            lens = np.array(list(map(len, recs)))
            del recs
            starts = np.concatenate([[0], np.cumsum(lens)[:-1]])
            seqs = np.frombuffer(raw, dtype=np.uint8)[starts[:, None] + np.arange(8)].view("<u8").reshape(-1)
            assert (seqs == np.arange(expect, expect + len(lens))).all(), f"sequence broken after {expect}"
            assert (lens == 8 + (seqs % batch % 5) * 8).all(), f"lengths broken after {expect}"
            expect += len(lens)
    finally:
        t.join(timeout=60)
    assert not errors, errors
    assert not t.is_alive()
    assert expect == total and produced_crc == [crc]
    assert rb.read() is None
