"""A network link that goes down under a live stream, with real processes: a Receiver runs in a
network namespace of its own, reached through a veth pair, and a Sender here streams to it. A
downed link closes nothing and reports nothing to either socket, so only heartbeats can tell: the
sender must find the receiver dead within its dead_peer_timeout, reconnect once the link is back,
and everything must arrive exactly once and in order.

Needs root and `ip netns`; skipped otherwise. FASTMSG_STRESS=1 adds a 30 s outage."""

import contextlib
import ipaddress
import json
import os
import random
import select
import shutil
import subprocess
import sys
import time

import pytest

import fastmsg

if not hasattr(fastmsg, "Sender"):
    pytest.skip("this platform's build has no transport engine yet", allow_module_level=True)

import fault_helpers
from fault_helpers import mixed_payload, read_record

STRESS = os.environ.get("FASTMSG_STRESS") == "1"
OPTS = dict(heartbeat_interval=0.2, dead_peer_timeout=1.0)
KiB = 1 << 10


def ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def unused_subnet():
    """A /30 in 10/8 that no address or route on this host overlaps (parallel runs pick apart)."""
    taken = [ipaddress.ip_network(word, strict=False)
             for out in (ip("-o", "-4", "addr", "show").stdout, ip("-4", "route", "show").stdout)
             for word in out.split() if "/" in word and word[0].isdigit()]
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{random.randrange(64, 255)}.{random.randrange(256)}.{random.randrange(64) * 4}/30")
        if not any(net.overlaps(t) for t in taken):
            return net
    raise RuntimeError("no free /30 found in 10.64.0.0/10")


class Link:
    """A veth pair: `near` here in the root namespace, `far` in namespace `ns`."""

    def __init__(self, tag, net):
        self.ns, self.near, self.far = tag, tag + "n", tag + "f"
        self.near_ip, self.far_ip = str(net[1]), str(net[2])

    def set(self, end, state):
        ip(*(["-n", self.ns] if end == "far" else []), "link", "set", self.far if end == "far" else self.near, state)


@pytest.fixture
def link():
    with namespace_link() as lk:
        yield lk


@contextlib.contextmanager
def namespace_link():
    """A Link to a new network namespace, removed at the end; skips the test where not permitted."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2's `ip` to make a network namespace")
    tag = f"fm{os.getpid() % 100_000}{random.randrange(1 << 16):04x}"  # interface names: 15 chars at most
    r = ip("netns", "add", tag, check=False)
    if r.returncode:
        pytest.skip(f"`ip netns add` does not work here: {r.stderr.strip()}")
    net = None
    try:
        net = unused_subnet()
        lk = Link(tag, net)
        r = ip("link", "add", lk.near, "type", "veth", "peer", "name", lk.far, "netns", lk.ns, check=False)
        if r.returncode:
            pytest.skip(f"cannot make a veth pair here: {r.stderr.strip()}")
        ip("addr", "add", f"{lk.near_ip}/30", "dev", lk.near)
        ip("-n", lk.ns, "addr", "add", f"{lk.far_ip}/30", "dev", lk.far)
        # With the near end down its route goes, and packets for the subnet would take the default
        # route off this host: refuse them here instead.
        ip("route", "add", "unreachable", str(net), "metric", "4000")
        for args in (("link", "set", lk.near, "up"), ("-n", lk.ns, "link", "set", lk.far, "up"),
                     ("-n", lk.ns, "link", "set", "lo", "up")):
            ip(*args)
        yield lk
    finally:
        if net is not None:
            ip("route", "del", "unreachable", str(net), "metric", "4000", check=False)
        ip("link", "del", tag + "n", check=False)  # (takes its peer along)
        ip("netns", "del", tag, check=False)


def start_receiver(lk, path):
    """fault_helpers' recorder in the link's namespace; (process, endpoint)."""
    p = subprocess.Popen(["ip", "netns", "exec", lk.ns, sys.executable, fault_helpers.__file__,
                          f"tcp://{lk.far_ip}:0", str(path), json.dumps(OPTS)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline() if select.select([p.stdout], [], [], 30)[0] else ""
    if not line.startswith("tcp://"):
        p.kill()
        raise AssertionError(f"the receiver did not start: {line!r} {p.communicate(timeout=10)[1]!r}")
    return p, line.strip()


def stop_receiver(p):
    """Its stats, once it has stopped (stdin closed)."""
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    return json.loads(out.splitlines()[-1])


class Stream:
    """Queues mixed_payload(0..count-1) a chunk at a time, never waiting long, so that the test
    can act on the link while the stream runs (the queue fills while the link is down)."""

    def __init__(self, tx, count):
        self.tx, self.count, self.sent = tx, count, 0

    def until(self, cond, timeout, what):
        """Streams until cond() holds; AssertionError after `timeout` s. Returns the time taken."""
        t0 = time.monotonic()
        while not cond():
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}: {self.tx.stats()}")
            if self.sent < self.count:
                batch = [mixed_payload(i) for i in range(self.sent, min(self.count, self.sent + 64))]
                try:
                    self.sent += self.tx.send_many(batch, timeout=0.02)
                except fastmsg.Timeout as e:
                    self.sent += e.queued
            else:
                time.sleep(0.005)  # polling interval only: cond() is what synchronises
        return time.monotonic() - t0


@pytest.mark.parametrize("end, outage", [
    pytest.param("near", 0, id="near-end-brief"),
    # The far end down: what is sent here vanishes without a word. Past TCP's quiet retransmissions
    # (tcp_retries1 = 3, about 1.4 s at the minimum RTO) and its first SYN retries: reconnect
    # attempts time out during the outage, and the receiver drops its side.
    pytest.param("far", 5, id="far-end-5s"),
    pytest.param("far", 30, id="far-end-30s",
                 marks=pytest.mark.skipif(not STRESS, reason="FASTMSG_STRESS=1 runs the long outage")),
])
def test_link_down_mid_stream(link, tmp_path, end, outage):
    count = 40_000
    record = tmp_path / "received"
    rx, endpoint = start_receiver(link, record)
    received = lambda: os.path.getsize(record) // 8 if record.exists() else 0
    try:
        with fastmsg.Sender(endpoint, max_batch_bytes=16 * KiB, hwm_bytes=1 << 20, handshake_timeout=1.0,
                            **OPTS) as tx:
            st = Stream(tx, count)
            st.until(lambda: received() >= count // 4 and tx.stats()["acknowledged"] > 0, 30, "a quarter delivered")
            assert st.sent < count, "the stream ended before the link went down"
            link.set(end, "down")
            t_down = time.monotonic()
            detect = st.until(lambda: tx.stats()["dead_peers"] >= 1, 10, "the sender to find the receiver dead")
            at_detect = tx.stats()
            st.until(lambda: time.monotonic() - t_down >= outage, outage + 5, "the end of the outage")
            link.set(end, "up")
            reconnect = st.until(lambda: tx.stats()["connects"] >= 2, 15, "the sender to reconnect")
            st.until(lambda: st.sent == count, 60, "the whole stream queued")
            flushed = tx.flush(30)
            tst = tx.stats()
        rst = stop_receiver(rx)  # (flushed: all was released, hence recorded, before it was acknowledged)
    finally:
        if rx.poll() is None:
            rx.kill()
            rx.wait(10)
    seqs = read_record(record)
    figures = dict(end=end, outage=outage, detect_s=round(detect, 2), reconnect_s=round(reconnect, 2),
                   delivered=len(seqs), distinct=len(set(seqs)), connects=tst["connects"],
                   disconnects=tst["disconnects"], resent=tst["resent"], rx_dead_peers=rst["dead_peers"],
                   rx_replaced=rst["replaced_connections"], rx_duplicates=rst["duplicates"])
    print("\nlink down:", figures)
    # (found by its heartbeats: a downed link makes no socket error)
    assert at_detect["dead_peers"] == 1 and at_detect["connects"] == 1 and not at_detect["connected"], at_detect
    # (the last sign of life came just before the link went down; the rest is timer and polling slack)
    assert detect < OPTS["dead_peer_timeout"] + 0.5, f"dead peer found too slowly: {figures}"
    assert seqs == list(range(count)), figures
    assert flushed and tst["acknowledged"] == count and tst["protocol_errors"] == 0, (tst, figures)
    assert tst["dead_peers"] >= 1 and tst["resent"] > 0, (tst, figures)
    # the receiver's side of the old connection ended too: timed out, or replaced by the new one
    assert rst["dead_peers"] + rst["replaced_connections"] >= 1, (rst, figures)
    assert rst["sessions"] == 1 and rst["lost"] == 0 and rst["crc_errors"] == 0 and rst["protocol_errors"] == 0, rst
