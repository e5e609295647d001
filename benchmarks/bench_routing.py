"""Key routing: fastmsg's seeded rendezvous hashing against jump consistent hashing (Lamping and
Veach) in pure Python and in numpy, side by side in one run.

    python -m pytest benchmarks/bench_routing.py --benchmark-group-by=group --benchmark-columns=median,ops

One key: each round routes KEYS distinct 16-byte keys one call at a time, so a round's time divided
by KEYS is the cost of one call (the Python loop around the calls is the same for every row).
Many keys: each round routes an array of 1 M uint64 keys. The peers are not seeded (an attacker
who knows the hash can aim keys at one member); fastmsg's scores are keyed by SipHash-1-3.
"""

import os

import pytest

from fastmsg._core import routing
from fastmsg._core.routing import Router, member_id

np = pytest.importorskip("numpy")

MEMBERS = 8
KEYS = 1000
MANY = 1_000_000
JUMP_MULT = 2862933555777941757

pytestmark = pytest.mark.benchmark(min_rounds=5, warmup=True)


def hash_router(weights=None):
    seed = os.urandom(16)
    r = Router("hash", seed=seed)
    ids = [member_id(f"tcp://10.0.0.{i}:5555", seed) for i in range(MEMBERS)]
    r.set_members(ids, weights or [1.0] * MEMBERS, [0] * MEMBERS)
    return r


def jump_python(key, buckets):
    """Jump consistent hash of a 64-bit key, as the paper gives it."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * JUMP_MULT + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def jump_numpy_masked(keys, buckets):
    """Jump hash over a whole array: every iteration updates the keys still jumping (a mask)."""
    key = keys.copy()
    b = np.full(keys.shape, -1, dtype=np.int64)
    j = np.zeros(keys.shape, dtype=np.int64)
    active = np.ones(keys.shape, dtype=bool)
    while active.any():
        b = np.where(active, j, b)
        key = np.where(active, key * np.uint64(JUMP_MULT) + np.uint64(1), key)
        step = ((b + 1) * (float(1 << 31) / ((key >> np.uint64(33)).astype(np.float64) + 1.0))).astype(np.int64)
        j = np.where(active, step, j)
        active &= j < buckets
    return b.astype(np.int32)


def jump_numpy_compacting(keys, buckets):
    """The same, iterating only over the indices still jumping (fewer elements per step)."""
    key = keys.copy()
    b = np.full(keys.shape, -1, dtype=np.int64)
    j = np.zeros(keys.shape, dtype=np.int64)
    idx = np.arange(keys.shape[0])
    while idx.size:
        b[idx] = j[idx]
        k = key[idx] * np.uint64(JUMP_MULT) + np.uint64(1)
        key[idx] = k
        j[idx] = ((b[idx] + 1) * (float(1 << 31) / ((k >> np.uint64(33)).astype(np.float64) + 1.0))).astype(np.int64)
        idx = idx[j[idx] < buckets]
    return b.astype(np.int32)


# ------------------------------------------------------------------------------ one key at a time


@pytest.fixture(scope="module")
def keys16():
    return [os.urandom(16) for _ in range(KEYS)]


def route_all(route, keys):
    for k in keys:
        route(k)


@pytest.mark.benchmark(group="route one 16-byte key, 8 members")
def test_route_fastmsg(benchmark, keys16):
    benchmark.extra_info["keys_per_round"] = KEYS
    benchmark(route_all, hash_router().route, keys16)


@pytest.mark.benchmark(group="route one 16-byte key, 8 members")
def test_route_fastmsg_weighted(benchmark, keys16):
    benchmark.extra_info["keys_per_round"] = KEYS
    benchmark(route_all, hash_router([float(i + 1) for i in range(MEMBERS)]).route, keys16)


@pytest.mark.benchmark(group="route one 16-byte key, 8 members")
def test_route_xxh3_jump_python(benchmark, keys16):
    xxhash = pytest.importorskip("xxhash")
    digest = xxhash.xxh3_64_intdigest
    benchmark.extra_info["keys_per_round"] = KEYS
    benchmark(route_all, lambda k: jump_python(digest(k), MEMBERS), keys16)


# ------------------------------------------------------------------------------ 1 M keys at once


@pytest.fixture(scope="module")
def keys_many():
    keys = np.random.default_rng(1).integers(0, 2**64 - 1, MANY, dtype=np.uint64, endpoint=True)
    sample = keys[:2000]
    for peer in (jump_numpy_masked, jump_numpy_compacting):
        assert peer(sample, MEMBERS).tolist() == [jump_python(int(k), MEMBERS) for k in sample]
    return keys


@pytest.mark.benchmark(group="route 1 M uint64 keys, 8 members")
def test_route_many_fastmsg(benchmark, keys_many):
    r = hash_router()
    out = benchmark(r.route_many, keys_many)
    assert out.shape == (MANY,) and out.min() >= 0


@pytest.mark.benchmark(group="route 1 M uint64 keys, 8 members")
def test_route_many_fastmsg_portable(benchmark, keys_many):
    """The same with the portable key-hashing kernel (no SIMD)."""
    r = hash_router()
    before = routing._use_hash_kernel("portable")
    try:
        benchmark(r.route_many, keys_many)
    finally:
        routing._use_hash_kernel(before)


@pytest.mark.benchmark(group="route 1 M uint64 keys, 8 members")
def test_route_many_fastmsg_weighted(benchmark, keys_many):
    r = hash_router([float(i + 1) for i in range(MEMBERS)])
    benchmark(r.route_many, keys_many)


@pytest.mark.benchmark(group="route 1 M uint64 keys, 8 members")
def test_route_many_jump_numpy_masked(benchmark, keys_many):
    benchmark(jump_numpy_masked, keys_many, MEMBERS)


@pytest.mark.benchmark(group="route 1 M uint64 keys, 8 members")
def test_route_many_jump_numpy_compacting(benchmark, keys_many):
    benchmark(jump_numpy_compacting, keys_many, MEMBERS)
