"""Ring buffer benchmarks against the standard library's queues, side by side in one run.

    python -m pytest benchmarks/bench_ring.py --benchmark-group-by=group --benchmark-columns=median,ops

Each round moves ROUNDS records, so a benchmark's time divided by ROUNDS is the cost per record.
The cross-process benchmarks run a child process that echoes a count of records back: the time is
for the parent to send N records and the child to have read them all.
"""

import collections
import multiprocessing as mp
import queue
import uuid

import pytest

import fastmsg

ROUNDS = 10_000
CROSS = 20_000  # records per cross-process round

pytestmark = pytest.mark.benchmark(min_rounds=5, warmup=True)


def per_record(benchmark):
    benchmark.extra_info["records_per_round"] = ROUNDS


# ------------------------------------------------------------------------- in-process, one by one


def run_pairs(put, get, payload):
    for _ in range(ROUNDS):
        put(payload)
        get()


@pytest.mark.benchmark(group="in-process write+read, 64 B")
def test_ring_write_read_64(benchmark):
    rb = fastmsg.RingBuffer(1 << 16)
    per_record(benchmark)
    benchmark(run_pairs, rb.write, rb.read, b"x" * 64)


@pytest.mark.benchmark(group="in-process write+read, 64 B")
def test_deque_append_popleft_64(benchmark):
    d = collections.deque()
    per_record(benchmark)
    benchmark(run_pairs, d.append, d.popleft, b"x" * 64)


@pytest.mark.benchmark(group="in-process write+read, 64 B")
def test_simplequeue_put_get_64(benchmark):
    q = queue.SimpleQueue()
    per_record(benchmark)
    benchmark(run_pairs, q.put, q.get_nowait, b"x" * 64)


# ------------------------------------------------------------------------------- batches


BATCH = 1000


@pytest.mark.benchmark(group="in-process batches of 1000, 64 B")
def test_ring_write_many_read_many_64(benchmark):
    rb = fastmsg.RingBuffer(1 << 20)
    batch = [b"x" * 64] * BATCH

    def run():
        for _ in range(ROUNDS // BATCH):
            rb.write_many(batch)
            rb.read_many(BATCH)

    per_record(benchmark)
    benchmark(run)


@pytest.mark.benchmark(group="in-process batches of 1000, 64 B")
def test_deque_extend_pop_64(benchmark):
    d = collections.deque()
    batch = [b"x" * 64] * BATCH

    def run():
        for _ in range(ROUNDS // BATCH):
            d.extend(batch)
            [d.popleft() for _ in range(BATCH)]

    per_record(benchmark)
    benchmark(run)


# --------------------------------------------------------------------------- cross-process


def ring_child(name, rounds, size):
    ring = fastmsg.SharedRing.attach(name)
    back = fastmsg.SharedRing.attach(name + "-ack")
    for _ in range(rounds):
        got = 0
        while got < CROSS:
            recs = ring.read_many(4096, timeout=60)
            got += len(recs)
            del recs
        back.write(b"k", timeout=60)


def queue_child(q, ack, rounds):
    for _ in range(rounds):
        for _ in range(CROSS):
            q.get()
        ack.put(b"k")


def pipe_child(conn, ack, rounds):
    for _ in range(rounds):
        for _ in range(CROSS):
            conn.recv_bytes()
        ack.send_bytes(b"k")


ROUNDS_X = 5
SIZES = [64, 4096]


@pytest.mark.parametrize("size", SIZES)
def test_shared_ring_cross_process(benchmark, size):
    benchmark.group = f"cross-process {size} B, {CROSS} records"
    name = f"fastmsg-bench-{uuid.uuid4().hex[:12]}"
    ring = fastmsg.SharedRing.create(name, 1 << 22)
    back = fastmsg.SharedRing.create(name + "-ack", 4096)
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=ring_child, args=(name, ROUNDS_X + 1, size))
    proc.start()
    batch = [b"x" * size] * 256

    def run():
        sent = 0
        while sent < CROSS:
            n = ring.write_many(batch if CROSS - sent >= 256 else batch[: CROSS - sent])
            if n == 0:
                ring.write(batch[0], timeout=60)
                n = 1
            sent += n
        back.read(timeout=60).release()

    try:
        benchmark.pedantic(run, rounds=ROUNDS_X, warmup_rounds=1)
    finally:
        proc.join(timeout=60)
        ring.unlink()
        back.unlink()


@pytest.mark.parametrize("size", SIZES)
def test_mp_queue_cross_process(benchmark, size):
    benchmark.group = f"cross-process {size} B, {CROSS} records"
    ctx = mp.get_context("spawn")
    q, ack = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=queue_child, args=(q, ack, ROUNDS_X + 1))
    proc.start()
    payload = b"x" * size

    def run():
        for _ in range(CROSS):
            q.put(payload)
        ack.get(timeout=120)

    try:
        benchmark.pedantic(run, rounds=ROUNDS_X, warmup_rounds=1)
    finally:
        proc.join(timeout=60)


@pytest.mark.parametrize("size", SIZES)
def test_mp_pipe_cross_process(benchmark, size):
    benchmark.group = f"cross-process {size} B, {CROSS} records"
    ctx = mp.get_context("spawn")
    rx, tx = ctx.Pipe(duplex=False)
    ack_rx, ack_tx = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=pipe_child, args=(rx, ack_tx, ROUNDS_X + 1))
    proc.start()
    payload = b"x" * size

    def run():
        for _ in range(CROSS):
            tx.send_bytes(payload)
        assert ack_rx.poll(120)
        ack_rx.recv_bytes()

    try:
        benchmark.pedantic(run, rounds=ROUNDS_X, warmup_rounds=1)
    finally:
        proc.join(timeout=60)
