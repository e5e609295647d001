"""The Balancer with receivers as real processes: in network namespaces of their own (separate
hosts, each reached through a veth pair) and on this host. A link taken down or a receiver killed
mid-stream: the others take its traffic and its unacknowledged messages, and every message is
delivered (a receiver records each message before releasing it, so what it acknowledged is on
record even after a SIGKILL). A receiver made twenty times slower loses its share of new traffic
under least_loaded and latency; nearest keeps to its tier until that tier's link goes down; a
host name's members follow its addresses in /etc/hosts (a private one, in a mount namespace).

Network namespaces need root and `ip netns` (skipped otherwise)."""

import contextlib
import json
import os
import random
import shutil
import select
import subprocess
import sys
import time

import pytest

import fastmsg

if not hasattr(fastmsg, "Balancer"):
    pytest.skip("this build has no Balancer (no routing module)", allow_module_level=True)

import fault_helpers
from fault_helpers import mixed_payload, read_record
from test_netns import namespace_link

HB = 0.1  # heartbeat interval (s); the dead-peer timeout is two of them
OPTS = dict(heartbeat_interval=HB, dead_peer_timeout=2 * HB)
SLACK = 1.0  # timer, polling and scheduling slack on a shared 2-CPU machine (s)


class Recorder:
    """The recording receiver (record_until_stdin_closes) as a process, in namespace `ns` or here."""

    def __init__(self, host, path, ns=None, port=0):
        self.path = path
        prefix = ["ip", "netns", "exec", ns] if ns else []
        self.proc = subprocess.Popen(prefix + [sys.executable, fault_helpers.__file__, f"tcp://{host}:{port}", str(path),
                                               json.dumps(OPTS)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if select.select([self.proc.stdout], [], [], 30)[0] else ""
        if not line.startswith("tcp://"):
            self.proc.kill()
            raise AssertionError(f"the receiver did not start: {line!r} {self.proc.communicate(timeout=10)[1]!r}")
        self.endpoint = line.strip()

    def pace(self, seconds):
        self.proc.stdin.write(f"pace {seconds}\n")
        self.proc.stdin.flush()

    def seqs(self):
        return read_record(self.path) if self.path.exists() else []

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def hosts(tmp_path):
    """make(n): n receivers, each in a network namespace of its own; (recorders, links)."""
    with contextlib.ExitStack() as stack:
        recorders = []

        def make(n, port=0):
            links = [stack.enter_context(namespace_link()) for _ in range(n)]
            made = [Recorder(lk.far_ip, tmp_path / f"rx{len(recorders) + i}", lk.ns, port) for i, lk in enumerate(links)]
            recorders.extend(made)
            return made, links

        try:
            yield make
        finally:
            for r in recorders:
                r.stop()


@pytest.fixture
def local(tmp_path):
    recorders = []

    def make(n):
        made = [Recorder("127.0.0.1", tmp_path / f"local{len(recorders) + i}") for i in range(n)]
        recorders.extend(made)
        return made

    yield make
    for r in recorders:
        r.stop()


def stream(b, sent, count, until, timeout, what):
    """Sends mixed_payload(sent..) a few at a time until until() holds (or count is reached);
    returns how many are sent in all. AssertionError after `timeout` s."""
    t0 = time.monotonic()
    while not until():
        assert time.monotonic() - t0 < timeout, f"timed out after {timeout} s waiting for {what}: {b.stats()}"
        if sent < count:
            for i in range(sent, min(count, sent + 32)):
                b.send(mixed_payload(i), timeout=5)
            sent = min(count, sent + 32)
        else:
            time.sleep(0.005)  # polling interval only: until() is what synchronises
    return sent


def finish(b, sent, count, recorders, lost_one=None):
    """Sends the rest, flushes, and checks that every message was delivered: once to each receiver
    and nowhere twice, except messages that the lost receiver had got and not acknowledged."""
    for i in range(sent, count):
        b.send(mixed_payload(i), timeout=5)
    assert b.flush(timeout=30), b.stats()
    st = b.stats()
    got = {r.endpoint: r.seqs() for r in recorders}
    everything = set(range(count))
    union = set().union(*map(set, got.values()))
    assert union == everything, f"lost: {sorted(everything - union)[:20]} {st}"
    for endpoint, seqs in got.items():
        assert len(seqs) == len(set(seqs)), f"{endpoint} got a message twice"
    if lost_one is not None:
        live = [s for e, seqs in got.items() if e != lost_one.endpoint for s in seqs]
        doubled = set(live) & set(got[lost_one.endpoint])
        # Only what the lost receiver got, recorded and had not acknowledged may come twice: at most
        # what its Sender had in flight, which st's "moved" counts.
        assert len(doubled) <= st["totals"]["moved"], (len(doubled), st)
    return st


def member(b, endpoint):
    return next(e for e in b.stats()["endpoints"] if e["endpoint"] == endpoint)


@pytest.mark.parametrize("fault", ["link-down", "killed"])
def test_receiver_lost_mid_stream(hosts, local, fault):
    remote, links = hosts(2)
    recorders = remote + local(1)
    count = 20_000
    with fastmsg.Balancer([r.endpoint for r in recorders], "round_robin", handshake_timeout=1.0, **OPTS) as b:
        assert b.wait_up(timeout=10)
        victim = remote[0]
        sent = stream(b, 0, count, lambda: len(victim.seqs()) > 2000, 30, "the victim to be busy")
        t0 = time.monotonic()
        if fault == "link-down":
            links[0].set("far", "down")
        else:
            victim.proc.kill()
        sent = stream(b, sent, count, lambda: member(b, victim.endpoint)["state"] == "down", 10,
                      "the Balancer to mark the lost receiver down")
        down_after = time.monotonic() - t0
        # Everything sent so far that the victim did not record is on record elsewhere: its
        # unacknowledged messages went to the others.
        needed = set(range(sent)) - set(victim.seqs())
        sent = stream(b, sent, count, lambda: needed <= {s for r in recorders if r is not victim for s in r.seqs()},
                      10, "the lost receiver's messages at the others")
        flowing_after = time.monotonic() - t0
        st = finish(b, sent, count, recorders, lost_one=victim)
    print(f"\n{fault}: marked down after {down_after:.2f} s, its messages delivered elsewhere after {flowing_after:.2f} s, "
          f"moved {st['totals']['moved']}, failovers {st['totals']['failovers']}")
    # A killed process resets its connections at once; a downed link only stops the heartbeats.
    assert down_after < 2 * HB + SLACK, down_after
    assert flowing_after < 2 * HB + SLACK, flowing_after
    assert st["totals"]["failovers"] >= 1


def test_nearest_keeps_its_tier_and_spills_over(hosts):
    (near, far), links = hosts(2)
    count = 4000
    # A ring that the first 1,000 messages (some 2 MB) do not saturate: they stay in the near tier
    # because it is up and has room, and only the link going down moves the rest.
    with fastmsg.Balancer([near.endpoint, far.endpoint], "nearest", zones=["z1", "z2"], zone="z1",
                          ring_bytes=8 << 20, hwm_bytes=8 << 20, **OPTS) as b:
        assert [e["tier"] for e in b.stats()["endpoints"]] == [1, 2]
        assert b.wait_up(timeout=10)
        for i in range(1000):
            b.send(mixed_payload(i), timeout=5)
        assert b.flush(timeout=10)
        assert len(near.seqs()) == 1000 and far.seqs() == []  # all in its tier
        links[0].set("far", "down")
        sent = stream(b, 1000, count, lambda: len(far.seqs()) > 0, 10, "spill-over to the next tier")
        finish(b, sent, count, [near, far], lost_one=near)


@pytest.mark.parametrize("strategy", ["least_loaded", "latency"])
def test_slow_receiver_loses_new_traffic(local, strategy):
    a, slow = local(2)
    pace = 0.00025  # s per message: about 4,000 messages/s each
    a.pace(pace)
    slow.pace(pace)
    with fastmsg.Balancer([a.endpoint, slow.endpoint], strategy, **OPTS) as b:
        assert b.wait_up(timeout=10)
        sent = 0
        # Messages/s offered: either receiver alone keeps up at the even pace, and the slow one's
        # 200 a second are far less than a fifth of it (least_loaded still gives it what it can
        # take; the margin leaves room for a loaded machine slowing the other one too).
        rate = 3000

        def offer(seconds):
            nonlocal sent
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                t = time.monotonic()
                for _ in range(rate // 100):
                    b.send(mixed_payload(sent), timeout=5)
                    sent += 1
                time.sleep(max(0.0, 0.01 - (time.monotonic() - t)))  # (pacing the offered load)

        offer(1.0)
        slow.pace(20 * pace)
        offer(1.0)  # within one second the strategy must have moved away ...
        before = {e["endpoint"]: e["sent"] for e in b.stats()["endpoints"]}
        offer(1.0)  # ... so that of the next second's traffic the slow one gets at most 20%
        after = {e["endpoint"]: e["sent"] for e in b.stats()["endpoints"]}
        slow_share = (after[slow.endpoint] - before[slow.endpoint]) / max(1, sum(after.values()) - sum(before.values()))
        slow.pace(pace)
        finish(b, sent, sent, [a, slow])
    print(f"\n{strategy}: the slow receiver's share of new traffic {slow_share:.1%}")
    assert slow_share <= 0.2, slow_share


# A Balancer over one name, in a process whose /etc/hosts is the test's file (a private mount
# namespace: the system resolver itself answers). Commands on stdin: "send A B" queues
# mixed_payload(A..B-1) and flushes; "change" waits for the membership to change. Each answers a
# JSON line: the endpoints, and whether the flush succeeded.
_NAMED = """
import json, sys, time
sys.path.insert(0, sys.argv[2])
import fastmsg
from fault_helpers import mixed_payload
b = fastmsg.Balancer([sys.argv[1]], "round_robin", resolve_interval=0.1, heartbeat_interval=0.1)
def say(flushed=None):
    print(json.dumps({"endpoints": sorted(b.endpoints), "flushed": flushed}), flush=True)
say()
for line in sys.stdin:
    words = line.split()
    if words[0] == "send":
        for i in range(int(words[1]), int(words[2])):
            b.send(mixed_payload(i), timeout=10)
        say(b.flush(timeout=10))
    else:
        before, deadline = sorted(b.endpoints), time.monotonic() + 10
        while sorted(b.endpoints) == before and time.monotonic() < deadline:
            time.sleep(0.02)  # (polling interval only: the change is the condition)
        say(b.wait_up(timeout=10))
b.close()
"""


def test_a_name_is_resolved_again_as_its_addresses_change(hosts, tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare for a private /etc/hosts")
    port = random.randrange(20000, 30000)
    (a, b), links = hosts(2, port=port)
    etc_hosts = tmp_path / "hosts"
    name = lambda *lks: etc_hosts.write_text("127.0.0.1 localhost\n" + "".join(f"{lk.far_ip} svc.test\n" for lk in lks))
    name(links[0])
    script = f"mount --bind {etc_hosts} /etc/hosts && exec {sys.executable} -c '{_NAMED}' tcp://svc.test:{port} " \
             f"{os.path.dirname(fault_helpers.__file__)}"
    p = subprocess.Popen(["unshare", "--mount", "sh", "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)

    def ask(command=None):
        if command:
            p.stdin.write(command + "\n")
            p.stdin.flush()
        line = p.stdout.readline() if select.select([p.stdout], [], [], 30)[0] else ""
        assert line, f"the Balancer's process said nothing: {p.poll()} {p.stderr.read() if p.poll() is not None else ''}"
        return json.loads(line)

    try:
        at = lambda lk: f"tcp://{lk.far_ip}:{port}"
        assert ask()["endpoints"] == [at(links[0])]
        assert ask("send 0 100") == {"endpoints": [at(links[0])], "flushed": True}
        name(links[0], links[1])  # the name gains an address ...
        assert ask("change") == {"endpoints": sorted([at(links[0]), at(links[1])]), "flushed": True}
        assert ask("send 100 300")["flushed"]
        name(links[1])  # ... and loses the first
        assert ask("change")["endpoints"] == [at(links[1])]
        assert ask("send 300 400")["flushed"]
        p.stdin.close()
        assert p.wait(30) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    got_a, got_b = set(a.seqs()), set(b.seqs())
    assert got_a | got_b == set(range(400))
    assert set(range(100)) <= got_a and set(range(300, 400)) <= got_b
    assert got_a & set(range(100, 300)) and got_b & set(range(100, 300))  # both took a share
