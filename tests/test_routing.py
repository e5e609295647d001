"""Routing core: the keyed hash, rendezvous rankings against an independent Python model, minimal
movement, distribution (chi-square), and the stateful strategies' guarantees."""

import math
import os
import random
import subprocess
import sys
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmsg._core import routing
from fastmsg._core.routing import Router, member_id

M64 = (1 << 64) - 1
KERNELS = [name for name, runs in routing.hash_kernels() if runs]
SEED = bytes(range(100, 116))  # fixed, so every statistical test below is reproducible

# ---------------------------------------------------------------------- an independent model


def _rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & M64


def _sipround(v):
    v0, v1, v2, v3 = v
    v0 = (v0 + v1) & M64; v1 = _rotl(v1, 13) ^ v0; v0 = _rotl(v0, 32)  # noqa: E702
    v2 = (v2 + v3) & M64; v3 = _rotl(v3, 16) ^ v2  # noqa: E702
    v0 = (v0 + v3) & M64; v3 = _rotl(v3, 21) ^ v0  # noqa: E702
    v2 = (v2 + v1) & M64; v1 = _rotl(v1, 17) ^ v2; v2 = _rotl(v2, 32)  # noqa: E702
    return [v0, v1, v2, v3]


def py_siphash(key, data, c=1, d=3):
    """SipHash-c-d as the specification states it, word by word."""
    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]
    whole = len(data) - len(data) % 8
    words = [int.from_bytes(data[i:i + 8], "little") for i in range(0, whole, 8)]
    words.append(int.from_bytes(data[whole:], "little") | ((len(data) & 0xFF) << 56))
    for m in words:
        v[3] ^= m
        for _ in range(c):
            v = _sipround(v)
        v[0] ^= m
    v[2] ^= 0xFF
    for _ in range(d):
        v = _sipround(v)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def model_scores(seed, ids, key):
    """(score hash s) per member, as docs/architecture.md "Routing" defines it."""
    k = routing._sip_key(seed)
    kh = py_siphash(k, key)
    out = []
    for i in ids:
        le = i.to_bytes(8, "little")
        a = py_siphash(k, le + b"member\0\0")
        b = py_siphash(k, le + b"member\0\1") | 1
        p = (kh ^ a) * b
        out.append((p >> 64) ^ (p & M64))
    return out


def model_rank(seed, ids, weights, key):
    s = model_scores(seed, ids, key)
    if len(set(weights)) <= 1:
        return sorted(range(len(ids)), key=lambda i: (-s[i], i))
    cost = [-math.log(((x >> 11) | 1) / 2.0**53) / w for x, w in zip(s, weights)]
    return sorted(range(len(ids)), key=lambda i: (cost[i], -s[i], i))


def hash_router(n, weights=None, seed=SEED, up=None):
    r = Router("hash", seed=seed)
    ids = [member_id(f"tcp://10.0.0.{i}:5555", seed) for i in range(n)]
    r.set_members(ids, weights or [1.0] * n, [0] * n)
    for i, u in enumerate(up or []):
        r.set_up(i, u)
    return r, ids


# ---------------------------------------------------------------------- SipHash and ids

# The SipHash-2-4 reference vectors: key 00..0f, message 00..(len-1), for the lengths given.
SIPHASH24 = {0: 0x726FDB47DD0E0E31, 1: 0x74F839C593DC67FD, 7: 0xAB0200F58B01D137,
             8: 0x93F5F5799A932462, 15: 0xA129CA6149BE45E5, 63: 0x958A324CEB064572}


@pytest.mark.parametrize("length", sorted(SIPHASH24))
def test_siphash24_reference_vectors(length):
    assert routing._siphash(bytes(range(16)), bytes(range(length)), 2, 4) == SIPHASH24[length]
    assert py_siphash(bytes(range(16)), bytes(range(length)), 2, 4) == SIPHASH24[length]


@given(st.binary(min_size=16, max_size=16), st.binary(max_size=80))
def test_siphash13_matches_the_model(key, data):
    assert routing._siphash(key, data) == py_siphash(key, data, 1, 3)


def test_seed_key_is_the_seed_or_its_hash():
    assert routing._sip_key(SEED) == SEED
    k = routing._sip_key(b"short")
    assert k == py_siphash(bytes(16), b"short").to_bytes(8, "little") + py_siphash(
        (1).to_bytes(16, "little"), b"short").to_bytes(8, "little")


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40), st.binary(max_size=24))
def test_member_id_is_a_stable_keyed_hash(endpoint, seed):
    mid = member_id(endpoint, seed)
    assert mid == member_id(endpoint, seed)
    assert mid == py_siphash(routing._sip_key(seed), endpoint.encode())
    assert 0 <= mid <= M64


def test_member_id_depends_on_seed_and_endpoint():
    ids = {member_id(f"tcp://h:{p}", s) for p in range(50) for s in (b"a" * 16, b"b" * 16)}
    assert len(ids) == 100


@given(st.integers(0, M64))
def test_neg_log_unit_is_accurate(h):
    x = (h >> 11) | 1
    exact = -math.log(x / 2.0**53)
    assert routing._neg_log_unit(h) == pytest.approx(exact, rel=1e-15, abs=0)


def test_neg_log_unit_is_monotone_on_neighbours():
    rng = random.Random(3)
    for _ in range(2000):
        x = rng.getrandbits(53) | 1
        a, b = routing._neg_log_unit(x << 11), routing._neg_log_unit(min(x + 2, (1 << 53) - 1) << 11)
        assert b <= a


# ---------------------------------------------------------------------- rankings

members_st = st.integers(1, 24)
weights_pool = st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.0, 7.5])


@st.composite
def member_sets(draw, weighted=None):
    n = draw(members_st)
    if weighted is None:
        weighted = draw(st.booleans())
    weights = [draw(weights_pool) for _ in range(n)] if weighted else [1.0] * n
    up = [draw(st.booleans()) for _ in range(n)]
    return n, weights, up


@settings(max_examples=150, deadline=None)
@given(member_sets(), st.binary(max_size=40))
def test_rank_is_a_permutation_and_route_is_its_first_up(ms, key):
    n, weights, up = ms
    r, _ = hash_router(n, weights, up=up)
    ranking = r.rank(key)
    assert sorted(ranking) == list(range(n))
    first_up = next((i for i in ranking if up[i]), -1)
    assert r.route(key) == first_up
    assert r.pick(key) == first_up


@settings(max_examples=150, deadline=None)
@given(member_sets(), st.binary(max_size=40), st.binary(min_size=16, max_size=16))
def test_rank_matches_the_model(ms, key, seed):
    n, weights, _ = ms
    r, ids = hash_router(n, weights, seed=seed)
    assert r.rank(key) == model_rank(seed, ids, weights, key)


@settings(max_examples=60, deadline=None)
@given(member_sets(), st.lists(st.integers(0, M64), max_size=300), st.integers(0, 2**32))
def test_route_many_equals_route(ms, keys, s):
    n, weights, up = ms
    r, _ = hash_router(n, weights, up=up)
    arr = np.array(keys, dtype=np.uint64)
    expected = [r.route(k.to_bytes(8, "little")) for k in keys]
    for kernel in KERNELS:  # every key-hashing kernel gives the same answers
        before = routing._use_hash_kernel(kernel)
        try:
            assert r.route_many(arr).tolist() == expected
        finally:
            routing._use_hash_kernel(before)
    assert r.route_many([k.to_bytes(8, "little") for k in keys]).tolist() == expected
    assert r.route_many(arr).dtype == np.int32
    # A strided view and a large batch (the path without the GIL) agree too.
    big = np.random.default_rng(s).integers(0, M64, 5000, dtype=np.uint64, endpoint=True)
    assert r.route_many(big[::2]).tolist() == r.route_many(big[::2].copy()).tolist()
    assert r.route_many(big)[:50].tolist() == [r.route(int(k).to_bytes(8, "little")) for k in big[:50]]


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 16), st.binary(max_size=20))
def test_equal_weights_rank_alike_at_any_scale_and_keep_their_order_among_unequal(n, key):
    r1, _ = hash_router(n, [1.0] * n)
    r2, _ = hash_router(n, [2.5] * n)
    assert r1.rank(key) == r2.rank(key)
    # With one heavier member the weighted path runs; the others keep their relative order.
    r3, _ = hash_router(n, [1.0] * (n - 1) + [3.0])
    assert [i for i in r3.rank(key) if i < n - 1] == [i for i in r1.rank(key) if i < n - 1]


def test_seeds_change_rankings_and_equal_seeds_repeat_them():
    a, _ = hash_router(8, seed=b"A" * 16)
    a2, _ = hash_router(8, seed=b"A" * 16)
    b, _ = hash_router(8, seed=b"B" * 16)
    keys = [f"user-{i}".encode() for i in range(200)]
    assert [a.rank(k) for k in keys] == [a2.rank(k) for k in keys]
    differ = sum(a.rank(k) != b.rank(k) for k in keys)
    assert differ >= 190  # the same ranking of 8 by chance: 1 in 8! per key


def test_random_seed_by_default():
    r1, r2 = Router("hash"), Router("hash")
    assert len(r1.seed) == 16 and r1.seed != r2.seed
    assert Router("hash", seed=r1.seed).seed == r1.seed


# ---------------------------------------------------------------------- movement


@settings(max_examples=60, deadline=None)
@given(member_sets(), st.integers(0, 2**32), st.sampled_from([0.5, 1.0, 4.0]))
def test_join_moves_only_keys_to_the_new_member(ms, s, w_new):
    n, weights, up = ms
    r, ids = hash_router(n, weights, up=up)
    keys = np.random.default_rng(s).integers(0, M64, 3000, dtype=np.uint64, endpoint=True)
    before = r.route_many(keys)
    r.set_members(ids + [member_id("tcp://new:1", SEED)], weights + [w_new], [0] * (n + 1))
    after = r.route_many(keys)
    moved = before != after
    assert np.all(after[moved] == n)


@settings(max_examples=60, deadline=None)
@given(member_sets(), st.integers(0, 2**32), st.data())
def test_leave_moves_only_keys_of_the_leaving_member(ms, s, data):
    n, weights, up = ms
    r, ids = hash_router(n, weights, up=up)
    gone = data.draw(st.integers(0, n - 1))
    keys = np.random.default_rng(s).integers(0, M64, 3000, dtype=np.uint64, endpoint=True)
    before = r.route_many(keys)
    keep = [i for i in range(n) if i != gone]
    r.set_members([ids[i] for i in keep], [weights[i] for i in keep], [0] * (n - 1))
    after = r.route_many(keys)
    # Map the old indices to the new ones to compare.
    remap = np.array([keep.index(i) if i in keep else -2 for i in range(n)] + [-1])
    stayed = before != gone
    assert np.all(after[stayed] == remap[before[stayed]])


def test_a_down_member_sends_its_keys_down_their_rankings():
    r, _ = hash_router(6)
    keys = [f"k{i}".encode() for i in range(500)]
    r.set_up(2, False)
    for k in keys:
        ranking = r.rank(k)
        assert r.route(k) == (ranking[1] if ranking[0] == 2 else ranking[0])
    r.set_up(2, True)
    assert all(r.route(k) == r.rank(k)[0] for k in keys)


# ---------------------------------------------------------------------- distribution


def chi2_sf(x, df):
    """P(X >= x) for X chi-square with df degrees of freedom, by the closed forms for integer df
    (a finite sum for even df; erfc plus a finite sum for odd df)."""
    if df % 2 == 0:
        term = total = 1.0
        for k in range(1, df // 2):
            term *= (x / 2) / k
            total += term
        return math.exp(-x / 2) * total
    total, term = 0.0, math.sqrt(2 * x / math.pi) * math.exp(-x / 2)
    for j in range(1, (df + 1) // 2):
        total += term
        term *= x / (2 * j + 1)
    return math.erfc(math.sqrt(x / 2)) + total


def test_chi2_sf_against_known_critical_values():
    # Tabulated upper points of the chi-square distribution (0.1% and 5%), odd and even df.
    assert chi2_sf(24.322, 7) == pytest.approx(1e-3, rel=1e-3)
    assert chi2_sf(18.467, 4) == pytest.approx(1e-3, rel=1e-3)
    assert chi2_sf(15.507, 8) == pytest.approx(0.05, rel=1e-3)
    assert chi2_sf(11.070, 5) == pytest.approx(0.05, rel=1e-3)


KEYS_1M = np.random.default_rng(20261201).integers(0, M64, 1_000_000, dtype=np.uint64, endpoint=True)


@pytest.mark.parametrize("weights", [[1.0] * 8, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], [0.25, 1.0, 1.0, 9.5, 3.0]])
def test_hash_shares_follow_weights_chi_square(weights):
    r, _ = hash_router(len(weights), weights)
    counts = np.bincount(r.route_many(KEYS_1M), minlength=len(weights))
    expected = np.array(weights) / sum(weights) * len(KEYS_1M)
    stat = float(((counts - expected) ** 2 / expected).sum())
    assert chi2_sf(stat, len(weights) - 1) > 1e-4, (stat, counts)


@pytest.mark.parametrize("weights", [[1.0] * 8, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]])
@pytest.mark.parametrize("w_new", [1.0, 4.0])
def test_movement_on_join_and_leave_is_the_ideal_share(weights, w_new):
    # Within 1% of the ideal share, or 4 standard deviations of the sampling error where that is
    # wider (a share of 1/37 over 1 M keys has sigma = 0.6% of the share).
    def near(moved, ideal):
        sigma = math.sqrt(ideal * (1 - ideal) / len(KEYS_1M))
        return abs(moved - ideal) <= max(0.01 * ideal, 4 * sigma)

    n = len(weights)
    r, ids = hash_router(n, weights)
    before = r.route_many(KEYS_1M)
    r.set_members(ids + [member_id("tcp://new:1", SEED)], weights + [w_new], [0] * (n + 1))
    after = r.route_many(KEYS_1M)
    moved = float(np.mean(before != after))
    assert near(moved, w_new / (sum(weights) + w_new)), moved
    r.set_members(ids, weights, [0] * n)  # and it leaves again: the same keys come back
    assert np.array_equal(r.route_many(KEYS_1M), before)
    r.set_members(ids[1:], weights[1:], [0] * (n - 1))  # member 0 leaves
    moved = float(np.mean(before != r.route_many(KEYS_1M) + 1))
    assert near(moved, weights[0] / sum(weights)), moved


# ---------------------------------------------------------------------- round-robin strategies


def picks(r, count):
    return [r.pick() for _ in range(count)]


def plain_router(strategy, n, weights=None, tiers=None):
    r = Router(strategy, seed=SEED)
    r.set_members(list(range(1, n + 1)), weights or [1.0] * n, tiers or [0] * n)
    return r


def test_round_robin_cycles_over_up_members():
    r = plain_router("round_robin", 4)
    assert picks(r, 8) == [0, 1, 2, 3, 0, 1, 2, 3]
    r.set_up(1, False)
    seq = picks(r, 9)
    assert 1 not in seq and sorted(seq) == [0, 0, 0, 2, 2, 2, 3, 3, 3]
    for i in range(4):
        r.set_up(i, False)
    assert r.pick() == -1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(1, 10), min_size=1, max_size=6))
def test_weighted_windows_split_exactly_and_smoothly(ws):
    r = plain_router("weighted", len(ws), [float(w) for w in ws])
    total = sum(ws)
    seq = picks(r, 3 * total)
    for start in range(0, 2 * total + 1):  # every window of sum(weights) picks, not only aligned ones
        window = seq[start:start + total]
        assert [window.count(i) for i in range(len(ws))] == ws
    # Smooth. A member's credit after t picks is t * w_i - W * count_i(t). The member picked had
    # the largest credit, at least W / n > 0 after the weights were added, so every credit stays
    # above -W; as the credits sum to 0, every one stays below (n - 1) W. Hence
    # t * w_i / W - (n - 1) <= count_i(t) < t * w_i / W + 1 (never a whole pick ahead of its share),
    # and a run of r picks of member i has r * (1 - w_i / W) < n.
    n = len(ws)
    for i, w in enumerate(ws):
        count = 0
        for t, p in enumerate(seq, 1):
            count += p == i
            assert t * w / total - (n - 1) <= count < t * w / total + 1
        if n > 1:
            runs = "".join("x" if p == i else " " for p in seq).split()
            assert max(map(len, runs), default=0) * (1 - w / total) < n


def test_weighted_five_one_one_interleaves():
    r = plain_router("weighted", 3, [5.0, 1.0, 1.0])
    seq = picks(r, 7)
    assert sorted(seq) == [0, 0, 0, 0, 0, 1, 2]
    assert max(len(s) for s in "".join(map(str, seq)).replace("1", " ").replace("2", " ").split()) <= 3


def test_weighted_fractional_weights_keep_their_ratio_and_skip_down_members():
    r = plain_router("weighted", 3, [0.5, 1.5, 1.0])
    seq = picks(r, 3000)
    assert [seq.count(i) for i in range(3)] == [500, 1500, 1000]  # 0.5 : 1.5 : 1 runs as 1 : 3 : 2
    r.set_members([1, 2, 3], [0.1, 0.3, 0.2], [0, 0, 0])  # not dyadic: scaled, within 1 of the ratio
    seq = picks(r, 3000)
    assert all(abs(seq.count(i) - 500 * w) <= 1 for i, w in enumerate([1, 3, 2]))
    r.set_up(1, False)
    seq = picks(r, 300)
    assert seq.count(1) == 0 and abs(seq.count(0) - 100) <= 2


# ---------------------------------------------------------------------- load and latency


def test_least_loaded_avoids_the_loaded_member():
    n = 5
    r = plain_router("least_loaded", n)
    for i in range(n):
        r.set_load(i, 1000)
    r.set_load(3, 10_000)
    seq = picks(r, 5000)
    # Two distinct members are drawn and the less loaded wins, so the loaded one, never the less
    # loaded of two distinct members, is never picked (sampling with replacement: 1/n^2).
    assert seq.count(3) == 0
    counts = [seq.count(i) for i in range(n) if i != 3]
    assert min(counts) > 5000 / (n - 1) * 0.8
    r.set_load(0, 0, saturated=True)  # saturated loses to anything that is not
    assert picks(r, 2000).count(0) == 0


def test_least_loaded_never_picks_down_members():
    r = plain_router("least_loaded", 4)
    r.set_up(0, False)
    r.set_up(2, False)
    assert set(picks(r, 500)) == {1, 3}
    r.set_up(1, False)
    assert set(picks(r, 50)) == {3}
    r.set_up(3, False)
    assert r.pick() == -1


def test_latency_avoids_a_slow_member():
    r = plain_router("latency", 4)
    r._set_clock(10**12)
    for i in range(4):
        r.observe_rtt(i, 1_000_000)
    r.observe_rtt(2, 10_000_000)  # the peak replaces the estimate at once
    assert r.loads()[2][3] == 10_000_000
    seq = picks(r, 2000)
    assert seq.count(2) <= 0.2 * len(seq)


def test_latency_peak_and_decay():
    r = plain_router("latency", 2)
    r._set_clock(10**12)
    r.observe_rtt(0, 1_000_000)
    r.observe_rtt(1, 2_000_000)
    assert picks(r, 100) == [0] * 100
    r.observe_rtt(0, 50_000_000)  # one spike takes effect immediately
    assert picks(r, 100) == [1] * 100
    r._set_clock(10**12 + 1_000_000)  # a low sample right after moves the estimate only a little
    r.observe_rtt(0, 1_000_000)
    assert r.loads()[0][3] > 40_000_000
    r._set_clock(10**12 + 60 * 10**9)  # six time constants later both have decayed by e^-6
    est = [row[3] for row in r.loads()]
    assert est[0] == pytest.approx(r_est(50_000_000, 1_000_000, 1_000_000, 60 * 10**9 - 1_000_000), abs=1)
    assert est[1] == pytest.approx(2_000_000 * math.exp(-6), abs=1)  # loads() rounds to whole ns


def r_est(peak, sample, dt_sample, dt_after):
    keep = math.exp(-dt_sample / 10e9)
    return (peak * keep + sample * (1 - keep)) * math.exp(-dt_after / 10e9)


def test_latency_tries_unmeasured_members_and_weighs_load():
    r = plain_router("latency", 3)
    r._set_clock(10**12)
    r.observe_rtt(0, 1_000_000)
    r.observe_rtt(1, 9_000_000)
    seq = picks(r, 3000)
    # Member 2 costs the mean (5 ms): it wins against member 1, loses against member 0.
    assert seq.count(2) > 500 and seq.count(1) == 0
    r.set_load(0, 100_000)  # 3x the mean load: 1 ms * (1 + 3) = 4 ms, still cheapest
    r.set_load(2, 1)
    assert picks(r, 500).count(1) == 0
    r.set_up(0, False)
    assert set(picks(r, 200)) <= {1, 2}


# ---------------------------------------------------------------------- nearest


def test_nearest_stays_in_tier_spills_and_returns():
    tiers = [1, 0, 2, 0, 1]
    r = plain_router("nearest", 5, tiers=tiers)
    seq = picks(r, 10)
    assert set(seq) == {1, 3} and seq.count(1) == seq.count(3) == 5  # round-robin in tier 0
    r.set_up(1, False)
    assert set(picks(r, 10)) == {3}
    r.set_load(3, 5000, saturated=True)
    seq = picks(r, 10)
    assert set(seq) == {0, 4} and seq.count(0) == 5  # tier 1
    r.set_up(0, False)
    r.set_load(4, 10, saturated=True)
    assert set(picks(r, 5)) == {2}  # tier 2
    r.set_load(3, 0, saturated=False)
    assert set(picks(r, 5)) == {3}  # back to tier 0
    r.set_load(3, 5000, saturated=True)
    r.set_load(2, 70_000, saturated=True)
    assert r.pick() == 4  # every up member saturated: the least loaded, not -1
    for i in range(5):
        r.set_up(i, False)
    assert r.pick() == -1


# ---------------------------------------------------------------------- membership state


def test_set_members_keeps_state_of_staying_ids_only():
    r = Router("least_loaded", seed=SEED)
    r._set_clock(10**12)
    r.set_members([10, 20, 30], [1.0, 1.0, 1.0], [0, 0, 0])
    r.set_up(0, False)
    r.set_load(1, 123, saturated=True)
    r.observe_rtt(2, 777)
    r.set_members([30, 40, 10], [1.0, 2.0, 1.0], [0, 1, 0])
    assert r.loads() == [(True, 0, False, 777), (True, 0, False, 0), (False, 0, False, 0)]
    r.set_members([20], [1.0], [0])
    assert r.loads() == [(True, 0, False, 0)]  # 20 left before, so it comes back fresh
    r.set_members([], [], [])
    assert r.pick() == -1 and r.loads() == [] and len(r) == 0


def test_broadcast_has_no_pick_but_keeps_members():
    r = plain_router("broadcast", 3)
    r.set_up(1, False)
    assert [row[0] for row in r.loads()] == [True, False, True]
    with pytest.raises(ValueError, match="broadcast"):
        r.pick()


def test_route_many_while_members_change():
    r, ids = hash_router(16)
    keys = np.arange(200_000, dtype=np.uint64)
    stop = threading.Event()
    bad = []

    def route():
        while not stop.is_set():
            out = r.route_many(keys)
            if out.min() < -1 or out.max() >= 16:
                bad.append(out)

    t = threading.Thread(target=route)
    t.start()
    try:
        for i in range(200):
            k = 4 + i % 12
            r.set_members(ids[:k], [1.0 + (i % 3)] * k, [0] * k)
            r.set_up(i % k, i % 2 == 0)
    finally:
        stop.set()
        t.join()
    assert not bad


# ---------------------------------------------------------------------- bad input


def test_bad_strategy_names_the_valid_ones():
    with pytest.raises(ValueError, match="round_robin, weighted, hash, least_loaded, latency, nearest, broadcast"):
        Router("random")


@pytest.mark.parametrize("ids, weights, tiers, exc, text", [
    ([1, 2], [1.0], [0, 0], ValueError, "one weight and one tier per id"),
    ([1, 2], [1.0, 1.0], [0], ValueError, "one weight and one tier per id"),
    ([1, 2], [1.0, 0.0], [0, 0], ValueError, r"weights\[1\] must be finite and > 0"),
    ([1, 2], [1.0, -1.0], [0, 0], ValueError, r"weights\[1\]"),
    ([1, 2], [float("nan"), 1.0], [0, 0], ValueError, r"weights\[0\]"),
    ([1, 2], [float("inf"), 1.0], [0, 0], ValueError, r"weights\[0\]"),
    ([1, 2], ["a", 1.0], [0, 0], TypeError, r"weights\[0\] must be a number"),
    ([1, 2], [1.0, 1.0], [0, -1], ValueError, r"tiers\[1\]"),
    ([1, 2], [1.0, 1.0], [0, 0.5], TypeError, r"tiers\[1\] must be an int"),
    ([1, -2], [1.0, 1.0], [0, 0], ValueError, r"ids\[1\] must be in 0..2\*\*64-1"),
    ([1, 2**64], [1.0, 1.0], [0, 0], ValueError, r"ids\[1\]"),
    (["x", 2], [1.0, 1.0], [0, 0], TypeError, r"ids\[0\] must be an int"),
    ([7, 8, 7], [1.0] * 3, [0] * 3, ValueError, "id 7 repeats at index 2"),
])
def test_set_members_rejects(ids, weights, tiers, exc, text):
    r = Router("hash", seed=SEED)
    r.set_members([5], [1.0], [0])
    with pytest.raises(exc, match=text):
        r.set_members(ids, weights, tiers)
    assert len(r) == 1  # unchanged


def test_index_and_value_errors():
    r = plain_router("latency", 2)
    for call in (lambda: r.set_up(2, True), lambda: r.set_load(-1, 0), lambda: r.observe_rtt(5, 1)):
        with pytest.raises(IndexError, match="out of range for 2 members"):
            call()
    with pytest.raises(ValueError, match="unacked_bytes"):
        r.set_load(0, -1)
    with pytest.raises(ValueError, match="rtt_ns"):
        r.observe_rtt(0, -5)
    with pytest.raises(TypeError):
        r.set_up("0", True)


def test_key_errors():
    r, _ = hash_router(3)
    for bad in ("text", 5, None, 1.5):
        with pytest.raises(TypeError, match="key must be bytes"):
            r.route(bad)
    with pytest.raises(TypeError, match="needs a key"):
        r.pick()
    assert r.route(bytearray(b"abc")) == r.route(b"abc") == r.route(memoryview(b"abc"))
    with pytest.raises(TypeError, match="not a int64 array"):
        r.route_many(np.arange(4, dtype=np.int64))
    with pytest.raises(ValueError, match="one-dimensional"):
        r.route_many(np.zeros((2, 2), dtype=np.uint64))
    with pytest.raises(TypeError, match="not one bytes"):
        r.route_many(b"abc")
    with pytest.raises(TypeError, match="key must be bytes"):
        r.route_many([b"a", "b"])
    assert r.route_many(np.zeros(0, dtype=np.uint64)).tolist() == []


@pytest.mark.parametrize("strategy", ["round_robin", "weighted", "least_loaded", "latency", "nearest", "broadcast"])
def test_key_routing_needs_the_hash_strategy(strategy):
    r = plain_router(strategy, 2)
    for call in (lambda: r.route(b"k"), lambda: r.rank(b"k"), lambda: r.route_many([b"k"])):
        with pytest.raises(ValueError, match="needs the 'hash' strategy"):
            call()


def test_hash_kernel_can_be_forced_from_the_environment():
    code = "from fastmsg._core import routing; print(routing.hash_kernel)"
    for kernel in KERNELS:
        env = dict(os.environ, FASTMSG_ROUTE_KERNEL=kernel)
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        assert done.stdout.strip() == kernel, done.stderr
    env = dict(os.environ, FASTMSG_ROUTE_KERNEL="nosuch")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "runnable" in done.stderr
    with pytest.raises(ValueError, match="runnable"):
        routing._use_hash_kernel("nosuch")


def test_seed_must_be_bytes():
    with pytest.raises(TypeError, match="seed must be bytes"):
        Router("hash", seed="abc")
    with pytest.raises(TypeError, match="seed must be bytes"):
        member_id("tcp://a:1", 5)
