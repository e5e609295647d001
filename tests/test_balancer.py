"""fastmsg.Balancer over real sockets, receivers in this process: each strategy's wiring
(distribution, keys, tiers), membership (add, remove, DNS), waits and bad input, and a failover
that loses nothing. Receivers as separate hosts and processes: test_balancer_netns.py."""

import subprocess
import sys
import threading
import time

import pytest

import fastmsg

if not hasattr(fastmsg, "Balancer"):
    pytest.skip("this build has no Balancer (no routing module)", allow_module_level=True)

from transport_helpers import wait_for
from platforms import needs_unix_sockets

FAST_HB = dict(heartbeat_interval=0.05, dead_peer_timeout=0.2)


class Receivers:
    """n receivers on loopback; collect() takes (and releases) whatever arrived."""

    def __init__(self, n, **options):
        self.rxs = [fastmsg.Receiver("tcp://127.0.0.1:0", **options) for _ in range(n)]
        self.got = [[] for _ in range(n)]
        self.skip = set()  # receivers whose messages the test takes itself

    @property
    def endpoints(self):
        return [rx.endpoint for rx in self.rxs]

    def collect(self):
        for i, rx in enumerate(self.rxs):
            if rx.closed or i in self.skip:
                continue
            try:
                batch = rx.recv_many(100_000, timeout=0)
            except fastmsg.Timeout:
                continue
            for m in batch:
                self.got[i].append(bytes(m))
                m.release()

    def until(self, n, timeout=10.0):
        """Collects until n messages arrived in all."""
        wait_for(lambda: (self.collect(), sum(map(len, self.got)) >= n)[1], timeout, f"{n} messages")
        return [len(g) for g in self.got]

    def flush(self, b, timeout=20.0):
        """b.flush() while collecting (acknowledgements come as the receivers release)."""
        wait_for(lambda: (self.collect(), b.flush(timeout=0.05))[1], timeout, "every message acknowledged")

    def close(self):
        for rx in self.rxs:
            rx.close()


@pytest.fixture
def receivers():
    made = []

    def make(n, **options):
        r = Receivers(n, **options)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_round_robin_is_exact_per_window(receivers):
    r = receivers(4)
    with fastmsg.Balancer(r.endpoints, "round_robin", run=1) as b:
        assert b.wait_up(timeout=10)
        for i in range(400):
            b.send(b"%d" % i)
        assert r.until(400) == [100, 100, 100, 100]
        assert b.flush(timeout=10)
        st = b.stats()
        assert [e["sent"] for e in st["endpoints"]] == [100] * 4
        assert st["totals"]["acknowledged"] == 400 and st["totals"]["in_flight"] == 0


def test_runs_keep_round_robin_exact_over_their_window(receivers):
    r = receivers(3)
    with fastmsg.Balancer(r.endpoints, "round_robin") as b:  # run=16
        assert b.wait_up(timeout=10)
        for i in range(16 * 3 * 5):
            b.send(b"%d" % i)
        assert r.until(240) == [80, 80, 80]


def test_weighted_is_exact_per_window(receivers):
    r = receivers(3)
    with fastmsg.Balancer(r.endpoints, "weighted", weights=[1, 2, 3], run=1) as b:
        assert b.wait_up(timeout=10)
        for i in range(600):
            b.send(b"%d" % i)
        assert r.until(600) == [100, 200, 300]


def test_hash_keys_stay_and_move_minimally(receivers):
    r = receivers(4)
    keys = [b"user-%d" % i for i in range(400)]
    with fastmsg.Balancer(r.endpoints[:3], "hash", seed=b"0123456789abcdef") as b:
        assert b.wait_up(timeout=10)
        before = {k: b.route(k) for k in keys}
        assert list(b.route_many(keys)) == [before[k] for k in keys]
        for k in keys:
            b.send(k, key=k)
        r.until(400)
        for i, got in enumerate(r.got[:3]):
            assert {before[k] for k in got} <= {i}  # each key arrived where route() said
        with pytest.raises(ValueError, match="key"):
            b.send(b"no key")

        b.add(r.endpoints[3])
        assert b.wait_up(timeout=10)
        after = {k: b.route(k) for k in keys}
        moved = [k for k in keys if after[k] != before[k]]
        assert moved and all(after[k] == 3 for k in moved)  # only onto the new member
        assert 0.1 < len(moved) / len(keys) < 0.45  # about a quarter

        b.remove(r.endpoints[0])
        assert b.endpoints == r.endpoints[1:]
        for k in keys:  # only the removed member's keys moved
            now = b.endpoints[b.route(k)]
            assert now == r.endpoints[after[k]] if after[k] != 0 else now != r.endpoints[0]
        with pytest.raises(ValueError, match="not a member"):
            b.remove(r.endpoints[0])


def test_failover_loses_nothing(receivers):
    """A receiver takes messages and never releases them, then closes: they were never
    acknowledged, so they go to the others; only those may arrive twice (once on each)."""
    r = receivers(3)
    with fastmsg.Balancer(r.endpoints, "round_robin", run=1, **FAST_HB) as b:
        assert b.wait_up(timeout=10)
        for i in range(3000):
            b.send(b"m%05d" % i)
        r.until(3000)
        victim = r.rxs[1]
        r.skip.add(1)
        held = []
        for i in range(3000, 6000):
            b.send(b"m%05d" % i)
            if i % 200 == 0:
                r.collect()
                try:
                    held += victim.recv_many(100_000, timeout=0)
                except fastmsg.Timeout:
                    pass
        held += victim.recv_many(100_000, timeout=5)  # (and whatever was still on its way)
        victim_got = {bytes(m) for m in held}
        victim.close()
        for m in held:
            m.release()  # (after its close: never acknowledged)
        for i in range(6000, 9000):
            b.send(b"m%05d" % i)
        r.flush(b)
        live = r.got[0] + r.got[2]
        everything = {b"m%05d" % i for i in range(9000)}
        assert len(live) == len(set(live))  # each live receiver got each message once
        assert set(live) | set(r.got[1]) == everything  # nothing lost
        assert set(r.got[1]) | victim_got >= set(live) ^ everything  # missing ones: the victim's
        assert victim_got and victim_got <= set(live)  # what it held went to the others
        assert b.stats()["totals"]["failovers"] >= 1


def test_closed_receiver_mid_stream_loses_nothing(receivers):
    r = receivers(3)
    with fastmsg.Balancer(r.endpoints, "least_loaded", **FAST_HB) as b:
        assert b.wait_up(timeout=10)
        victim = r.rxs[2]
        r.skip.add(2)
        victim_released, victim_held = [], []  # (held: a Message freed is released)
        for i in range(20_000):
            b.send(b"k%05d" % i)
            if i % 500 == 0:
                r.collect()
                if not victim.closed:
                    try:  # the victim releases only half of what it gets
                        batch = victim.recv_many(100_000, timeout=0)
                    except fastmsg.Timeout:
                        batch = []
                    victim_released += [bytes(m) for m in batch[: len(batch) // 2]]
                    for m in batch[: len(batch) // 2]:
                        m.release()
                    victim_held += batch[len(batch) // 2:]
                if i == 10_000:
                    victim.close()
        r.flush(b)
        live = r.got[0] + r.got[1]
        assert len(live) == len(set(live))
        # What the live ones lack, the victim released (so acknowledged): nothing else is lost.
        assert {b"k%05d" % i for i in range(20_000)} - set(live) <= set(victim_released)


def test_no_member_up_waits_then_raises_and_sends_nothing(receivers):
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        endpoint = rx.endpoint
    with fastmsg.Balancer([endpoint], "round_robin") as b:
        t0 = time.monotonic()
        with pytest.raises(fastmsg.Timeout):
            b.send(b"x", timeout=0.2)
        assert time.monotonic() - t0 >= 0.2
        with pytest.raises(fastmsg.Full):
            b.send(b"x", timeout=0)
        assert b.stats()["totals"]["sent"] == 0
        assert b.close(linger=0) is True


@needs_unix_sockets
def test_backlog_waits_for_a_member_to_come_back(receivers, tmp_path):
    path = f"ipc://{tmp_path}/rx.sock"
    rx = fastmsg.Receiver(path)
    with fastmsg.Balancer([path], "round_robin", **FAST_HB) as b:
        assert b.wait_up(timeout=10)
        for i in range(100):
            b.send(b"%d" % i)
        held = rx.recv_many(100, timeout=5)  # received, never released
        got = [bytes(m) for m in held]
        rx.close()
        del held
        wait_for(lambda: b.stats()["totals"]["up"] == 0, what="the member to be down")
        assert b.flush(timeout=0.1) is False  # taken back, and nobody to take them
        assert b.stats()["totals"]["waiting"] + b.stats()["totals"]["in_flight"] > 0
        r = receivers(0)
        r.rxs.append(fastmsg.Receiver(path))
        r.got.append([])
        r.flush(b)
        assert set(got) <= set(r.got[0]) and set(r.got[0]) == {b"%d" % i for i in range(100)}


def test_broadcast_goes_to_every_member(receivers):
    r = receivers(3)
    with fastmsg.Balancer(r.endpoints, "broadcast") as b:
        assert b.wait_up(timeout=10)
        for i in range(50):
            b.send(b"%d" % i)
        r.until(150)
        assert all(g == [b"%d" % i for i in range(50)] for g in r.got)
        with pytest.raises(ValueError, match="broadcast"):
            b.request(b"q")


@needs_unix_sockets
def test_nearest_tiers(receivers, tmp_path):
    ipc = f"ipc://{tmp_path}/x.sock"
    # 203.0.113.0/24 is TEST-NET-3, for documentation: not an address of a host.
    with fastmsg.Balancer([ipc, "tcp://127.0.0.1:9", "tcp://203.0.113.1:9", "tcp://203.0.113.2:9"], "nearest",
                          zones=[None, None, "eu-1", "us-2"], zone="eu-1") as b:
        assert [e["tier"] for e in b.stats()["endpoints"]] == [0, 0, 1, 2]
        b.add("tcp://203.0.113.3:9", weight=2, zone="eu-1")
        assert b.stats()["endpoints"][-1]["tier"] == 1
        b.close(linger=0)


def test_names_expand_to_one_member_per_address(receivers):
    r = receivers(1)
    answers = {"svc.example": ["127.0.0.1"]}
    calls = []

    def resolver(host, port):
        calls.append(host)
        return list(answers[host])

    port = int(r.endpoints[0].rsplit(":", 1)[1])
    with fastmsg.Balancer([f"tcp://svc.example:{port}"], "round_robin", resolver=resolver,
                          resolve_interval=0.05) as b:
        assert b.endpoints == [f"tcp://127.0.0.1:{port}"] and calls == ["svc.example"]
        answers["svc.example"] = ["127.0.0.1", "127.0.0.2"]
        wait_for(lambda: (b.stats(), len(b.endpoints) == 2)[1], what="the new address to join")
        assert b.endpoints == [f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.2:{port}"]
        answers["svc.example"] = ["127.0.0.2"]
        wait_for(lambda: (b.stats(), len(b.endpoints) == 1)[1], what="the old address to leave")
        assert b.endpoints == [f"tcp://127.0.0.2:{port}"]
        b.remove(f"tcp://svc.example:{port}")
        assert b.endpoints == []
        b.close(linger=0)


def test_bad_input():
    with pytest.raises(ValueError, match="strategy"):
        fastmsg.Balancer(["tcp://127.0.0.1:9"], "fastest")
    with pytest.raises(ValueError, match="weights"):
        fastmsg.Balancer(["tcp://127.0.0.1:9"], "weighted", weights=[1, 2])
    with pytest.raises(ValueError, match="weight"):
        fastmsg.Balancer(["tcp://127.0.0.1:9"], "weighted", weights=[0])
    with pytest.raises(ValueError, match="run"):
        fastmsg.Balancer(["tcp://127.0.0.1:9"], run=0)
    with pytest.raises(ValueError):
        fastmsg.Balancer(["udp://127.0.0.1:9"])
    b = fastmsg.Balancer(["tcp://127.0.0.1:9"])
    with pytest.raises(ValueError, match="already"):
        b.add("tcp://127.0.0.1:9")
    with pytest.raises(ValueError, match="not a member"):
        b.remove("tcp://127.0.0.1:10")
    with pytest.raises(ValueError, match="hash"):
        b.route(b"k")
    b.close(linger=0)
    with pytest.raises(fastmsg.Closed):
        b.send(b"x")
    assert b.close() is True


def test_idle_balancer_fails_over_by_itself(receivers):
    """Nobody calls the Balancer after the sends: its watcher still moves a lost receiver's
    messages to the other one."""
    r = receivers(2)
    b = fastmsg.Balancer(r.endpoints, "round_robin", run=1, **FAST_HB)
    try:
        assert b.wait_up(timeout=10)
        held = []
        for i in range(200):
            b.send(b"i%03d" % i)
        wait_for(lambda: (held.extend(_take_all(r.rxs[1])), len(held) == 100)[1], what="the victim's half")
        r.skip.add(1)
        r.rxs[1].close()
        del held  # (never released before the close: never acknowledged)
        assert r.until(200, timeout=10) == [200, 0]  # no call to b meanwhile
    finally:
        assert b.close()


def test_request_goes_to_another_member_when_its_own_is_lost(receivers):
    r = receivers(2)
    with fastmsg.Balancer(r.endpoints, "round_robin", run=1, **FAST_HB) as b:
        assert b.wait_up(timeout=10)
        replies = []
        t = threading.Thread(target=lambda: replies.append(b.request(b"question", timeout=10)))
        t.start()
        first = None
        deadline = time.monotonic() + 10
        while first is None:  # whoever got it first dies without answering
            assert time.monotonic() < deadline, "the request did not arrive"
            for i, rx in enumerate(r.rxs):
                got = _take_all(rx)
                if got:
                    first, asked = i, got[0]
        r.rxs[first].close()
        other = r.rxs[1 - first]
        msg = other.recv(timeout=10)  # asked again, of the other one
        assert bytes(msg) == b"question"
        msg.reply(b"answer")
        msg.release()
        t.join(10)
        assert len(replies) == 1 and bytes(replies[0]) == b"answer"
        del asked


def _take_all(rx):
    try:
        return rx.recv_many(100_000, timeout=0.01)
    except fastmsg.Timeout:
        return []


def test_hash_failover_sends_each_key_to_its_next_member(receivers):
    r = receivers(3)
    keys = [b"user-%d" % i for i in range(300)]
    with fastmsg.Balancer(r.endpoints, "hash", **FAST_HB) as b:
        assert b.wait_up(timeout=10)
        home = {k: b.route(k) for k in keys}
        victim = 1
        r.skip.add(victim)
        assert b.send_many(keys, keys=keys) == 300
        mine = sum(1 for k in keys if home[k] == victim)
        held = []
        wait_for(lambda: (held.extend(_take_all(r.rxs[victim])), len(held) == mine)[1], what="the victim's keys")
        r.rxs[victim].close()  # with all of them unreleased: every one is taken back
        del held
        r.flush(b)
        for i, got in enumerate(r.got):
            for k in got:  # a key stays on its member, or moved to the next one of its ranking
                assert i == home[k] or (home[k] == victim and i == b._router.rank(k)[1]), (k, i, home[k])
        assert sorted(r.got[0] + r.got[2]) == sorted(keys)
        assert b.stats()["totals"]["moved"] == mine


def test_the_system_resolver_expands_a_name():
    from fastmsg.balancer._resolve import expand, system_resolver

    endpoints = expand("tcp://localhost:5555", system_resolver)
    assert "tcp://127.0.0.1:5555" in endpoints and len(endpoints) == len(set(endpoints))
    assert expand("tcp://10.1.2.3:5555", system_resolver) == ["tcp://10.1.2.3:5555"]  # no lookup


def test_threads_share_a_balancer(receivers):
    r = receivers(3)
    with fastmsg.Balancer(r.endpoints, "least_loaded") as b:
        assert b.wait_up(timeout=10)

        def produce(t):
            for i in range(5000):
                b.send(b"%d-%05d" % (t, i))

        threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            r.collect()
            time.sleep(0.005)  # (polling interval only: the threads' end is what is waited for)
        for t in threads:
            t.join()
        r.flush(b)
        everything = r.got[0] + r.got[1] + r.got[2]
        assert sorted(everything) == sorted(b"%d-%05d" % (t, i) for t in range(4) for i in range(5000))
        for got in r.got:  # each thread's messages in its order, on each receiver
            for t in range(4):
                mine = [m for m in got if m.startswith(b"%d-" % t)]
                assert mine == sorted(mine)


@needs_unix_sockets
def test_broadcast_keeps_a_lost_members_messages_for_it(receivers, tmp_path):
    path = f"ipc://{tmp_path}/a.sock"
    r = receivers(1)
    a = fastmsg.Receiver(path, **FAST_HB)
    with fastmsg.Balancer([path, r.endpoints[0]], "broadcast", **FAST_HB) as b:
        assert b.wait_up(timeout=10)
        for i in range(20):
            b.send(b"first %d" % i)
        held = _take_all(a)
        while len(held) < 20:
            held += _take_all(a)
        a.close()  # none released: its Sender keeps all 20 for it
        wait_for(lambda: b.stats()["totals"]["up"] == 1, what="the member to be down")
        for i in range(10):
            b.send(b"while down %d" % i)  # skips it
        assert b.stats()["totals"]["broadcast_skipped"] == 10 and b.stats()["totals"]["moved"] == 0
        del held
        r2 = receivers(0)
        r2.rxs.append(fastmsg.Receiver(path, **FAST_HB))
        r2.got.append([])
        wait_for(lambda: (r.collect(), r2.collect(), b.flush(timeout=0.05))[2], what="everything acknowledged")
        assert sorted(r2.got[0]) == sorted(b"first %d" % i for i in range(20))  # again, and only those
        assert len(r.got[0]) == 30


_EXIT_SCRIPT = """
import fastmsg
rx = fastmsg.Receiver("tcp://127.0.0.1:0")
b = fastmsg.Balancer([rx.endpoint], "round_robin")
assert b.wait_up(timeout=10)
for i in range(5):
    b.send(b"%d" % i)
held = []
while len(held) < 5:
    held += rx.recv_many(5, timeout=5)  # received, never released: never acknowledged
print("exiting", flush=True)
"""


def test_what_an_open_balancer_gives_up_at_exit_is_reported():
    p = subprocess.run([sys.executable, "-c", _EXIT_SCRIPT], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "exiting\n", p.stderr
    assert "fastmsg: ResourceWarning: Balancer over tcp://127.0.0.1:" in p.stderr, p.stderr
    assert "5 messages not acknowledged at interpreter exit" in p.stderr, p.stderr
