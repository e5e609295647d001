"""fastmsg.Balancer: many receivers behind one send(), one Sender per endpoint, a Router's strategy
choosing per message. Failover and its at-least-once semantics: docs/architecture.md, "Balancer"."""

from __future__ import annotations

import atexit
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from fastmsg._core.routing import Router, member_id
from fastmsg._core.transport import Sender, _Spread, default_context
from fastmsg.balancer import _locality, _resolve
from fastmsg.balancer._member import Member
from fastmsg.endpoint import parse
from fastmsg.errors import Closed, Full, Timeout

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from typing_extensions import Buffer, Self, Unpack

    from fastmsg._core.transport import Context, Message
    from fastmsg.types import BalancerSenderOptions, BalancerStats, Strategy

# Fast sends between two looks at the members (a look reads every Sender and tells the Router: a
# few microseconds, so not too often; the member of each run tells its load as the run ends).
LOOK_EVERY = 1024
# ... and at least this often while sending (ns), so that loads and health are fresh.
LOOK_GAP_NS = 2_000_000
# A wait (for a member to come up, for room, for acknowledgements) looks again this often (s).
WAIT_SLICE = 0.02
# At interpreter exit, an open Balancer waits this long (s) for its acknowledgements.
EXIT_LINGER = 1.0
# A Balancer nobody calls is looked at this often by its watcher thread (s): failover, names.
WATCH_EVERY = 0.02
# A member whose Sender has this fraction of its ring (small messages) or of its hwm_bytes (large
# ones, held outside the ring) taken is saturated for the Router.
SATURATED = 0.75
# An unanswered batch this much older than the member's last round trip counts as a sample.
STALE_FACTOR = 2


class Balancer:
    """Spreads messages over receivers by a strategy: round_robin, weighted, hash (by key),
    least_loaded, latency, nearest, broadcast.

    One Sender per endpoint, all on one Context; sender_options (hwm_bytes, heartbeat_interval,
    ...) go to each. A receiver found dead (connection lost, or heartbeats unanswered) is marked
    down and its unacknowledged messages go to the others: at-least-once, as a message the lost
    receiver got and had not acknowledged may arrive at another too (broadcast: they stay queued
    for it instead). It is taken back once its Sender, made afresh, connects again. A host name
    stands for one member per address it resolves to (again every `resolve_interval` s). A
    watcher thread looks at the members every 20 ms, so this happens without calls too.

    A strategy picks a member for a run of `run` messages (16 by default; "hash" and "broadcast"
    for each), so that each Sender still writes large batches: round_robin and weighted are exact
    over windows of `run` times the members' total weight. run=1 picks for every message."""

    strategy: Strategy
    zone: str | None

    def __init__(self, endpoints: str | Iterable[str], strategy: Strategy = "round_robin", *,
                 seed: bytes | bytearray | memoryview | None = None,
                 weights: Sequence[float] | None = None, zones: Sequence[str | None] | None = None,
                 zone: str | None = None, resolve_interval: float = 30.0,
                 resolver: Callable[[str, int], list[str]] | None = None, run: int = 16,
                 on_settled: Callable[[Any], object] | None = None, context: Context | None = None,
                 **sender_options: Unpack[BalancerSenderOptions]) -> None:
        endpoints = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        if weights is not None and len(weights) != len(endpoints):
            raise ValueError(f"weights needs one weight per endpoint: {len(weights)} for {len(endpoints)}")
        if zones is not None and len(zones) != len(endpoints):
            raise ValueError(f"zones needs one zone per endpoint: {len(zones)} for {len(endpoints)}")
        if type(run) is not int or run < 1:
            raise ValueError(f"run must be an int >= 1, got {run!r}")
        if not resolve_interval > 0:
            raise ValueError(f"resolve_interval must be > 0 seconds, got {resolve_interval!r}")
        self._router = Router(strategy, seed=seed)
        self.strategy = strategy
        self._keyed = strategy == "hash"
        self._broadcast = strategy == "broadcast"
        self._on_settled = on_settled
        self._tracking = self._keyed or on_settled is not None  # keys (and tokens) kept per message
        self.zone = zone
        self._resolver = resolver or _resolve.system_resolver
        self._resolve_ns = int(resolve_interval * 1e9)
        self._context = context if context is not None else default_context()
        self._options = sender_options
        self._lock = threading.RLock()
        self._members: list[Member] = []
        self._specs: dict[str, tuple[float, str | None]] = {}  # endpoint as given -> (weight, zone) for re-resolving names
        self._backlog: list[tuple[Any, Any, Any]] = []  # (data, key, token) taken back and not yet placed again
        self._closed = False
        self._totals = {"moved": 0, "failovers": 0, "broadcast_skipped": 0}
        self._spread = _Spread(self._router.pick, self._router.set_load, self._send_slow, self._look_now)
        self._spread.fast = not self._broadcast
        self._spread.keyed = self._keyed
        self._spread.keep_keys = self._tracking
        self._spread.run = run
        self.send = self._spread.send  # type: ignore[method-assign]  # the per-message path, one call from Python
        self.send_many = self._spread.send_many  # type: ignore[method-assign]
        self._last_look_ns = 0
        self._next_resolve_ns = time.monotonic_ns() + self._resolve_ns
        self._stop = threading.Event()
        try:
            for i, endpoint in enumerate(endpoints):
                self._add(endpoint, weights[i] if weights else 1.0, zones[i] if zones else None)
            self._sync_router()
        except BaseException:
            for m in self._members:
                m.sender.close(linger=0)
            raise
        self._lost_at_close = 0
        threading.Thread(target=_watch, args=(weakref.ref(self), self._stop), daemon=True,
                         name="fastmsg.Balancer watcher").start()
        _live.add(self)

    # ---- sending ----

    def send(self, data: Buffer, *, key: Buffer | None = None, timeout: float | None = None) -> None:
        """Queues one message on the member the strategy picks ("hash": the key's member, key
        required) and returns. Waits while no member is up or every one is full: None waits as
        long as it takes, 0 raises Full, a number of seconds raises Timeout. Nothing is queued
        when it raises (broadcast: its note says on which members it was). (Bound to the fast
        path in __init__; this is its description.)"""
        self._send_slow(data, key, timeout)

    def send_many(self, items: Iterable[Buffer], *, keys: Sequence[Buffer] | None = None,
                  timeout: float | None = None) -> int:
        """send() for each item in order, with keys[i] for item i ("hash"), all within one
        timeout. Returns how many were queued (all, unless it raises; what it raises carries
        `queued`: how many, from the first, were queued before it). (Bound in __init__.)"""
        return self._spread.send_many(items, keys=keys, timeout=timeout)

    def _send_slow(self, data, key, timeout, token=None):
        if self._keyed and key is None:
            raise ValueError("the 'hash' strategy routes by key: send(data, key=...)")
        deadline = _deadline(timeout)
        with self._lock:
            self._check_open()
            self._look_if_due()
            if self._backlog:
                self._place_backlog()
            if self._backlog:  # messages taken back wait for a member, and keep their order
                self._wait_backlog(deadline, timeout)
            self._place(data, key, token, deadline, timeout)

    def _place(self, data, key, token, deadline, timeout):
        """Queues one message on a member, waiting (in slices, looking at the members between)
        until one takes it; under the lock. Returns the member index."""
        if self._broadcast:
            return self._place_everywhere(data, deadline, timeout)
        tried = 0
        while True:
            i = self._router.pick(key)
            if i < 0:
                self._wait_up(deadline, timeout)
                continue
            m = self._members[i]
            try:
                if tried < len(self._members) and not self._keyed:
                    m.sender.send(data, timeout=0)
                else:  # every member was full (or the key's is): wait for room on this one
                    m.sender.send(data, timeout=_slice(deadline, timeout))
            except Full:
                tried += 1
                self._router.set_load(i, m.sender._ring_capacity, saturated=True)
                if timeout == 0 and (tried >= len(self._members) or self._keyed):
                    raise Full("every receiver's queue is full; nothing was sent") from None
                continue
            except (Timeout, Closed):
                if self._closed:
                    raise Closed("the Balancer was closed; the message was not sent") from None
                if _left(deadline, timeout) == 0:
                    raise Timeout(f"no receiver took the message within {timeout} s (all full or "
                                  f"down); nothing was sent") from None
                self._look()
                continue
            if self._tracking:
                m.pending.append((m.sender.queued_count, key, token))
            return i

    def _place_everywhere(self, data, deadline, timeout):
        """broadcast: queues the message on every member that is up (waiting for one if none
        is); a member that is down misses it, counted in stats()["broadcast_skipped"]."""
        while True:
            ups = [m for m in self._members if m.up]
            if ups:
                break
            self._wait_up(deadline, timeout)
        for done, m in enumerate(ups):
            try:
                m.sender.send(data, timeout=_left(deadline, timeout))
            except BaseException as exc:  # (a member full for the whole timeout)
                exc.add_note(f"broadcast: the message was queued on {done} of the {len(ups)} members up, "
                             f"{', '.join(x.endpoint for x in ups[:done]) or 'none'}; not on the others")
                raise
        self._totals["broadcast_skipped"] += len(self._members) - len(ups)
        return -1

    def request(self, data: Buffer, *, key: Buffer | None = None, timeout: float | None = 1.0) -> Message:
        """Sends one message as a request to the member the strategy picks and returns its reply
        (a Message). A member lost while the request waits makes it go to another, within the
        same timeout (so a request may reach two receivers)."""
        if self._keyed and key is None:
            raise ValueError("the 'hash' strategy routes by key: request(data, key=...)")
        if self._broadcast:
            raise ValueError("a broadcast Balancer has no single receiver to answer a request")
        deadline = _deadline(timeout)
        while True:
            with self._lock:
                self._check_open()
                self._look_if_due()
                i = self._router.pick(key)
                if i < 0:
                    self._wait_up(deadline, timeout)
                    continue
                sender = self._members[i].sender
            try:
                return sender.request(data, timeout=_left(deadline, timeout))
            except Closed:
                if self._closed:
                    raise
                with self._lock:
                    self._look()  # its member was lost: another one answers

    # ---- waiting ----

    def wait_up(self, count: int | None = None, timeout: float | None = None) -> bool:
        """Waits until `count` members (None: all) are up, looking at them meanwhile: True, or
        False if the timeout ran out first."""
        deadline = _deadline(timeout)
        pause = 0.001
        while True:
            with self._lock:
                self._check_open()
                self._look()
                up = sum(1 for m in self._members if m.up)
                if up >= (len(self._members) if count is None else count):
                    return True
            left = _left(deadline, timeout)
            if left == 0:
                return False
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, WAIT_SLICE)

    def _wait_up(self, deadline, timeout):
        """Until a member is up (looking at them between short waits), or Timeout/Full."""
        pause = 0.001
        while True:
            self._look()
            if any(m.up for m in self._members):
                return
            left = _left(deadline, timeout)
            if left == 0:
                if timeout == 0:
                    raise Full("no receiver is up; nothing was sent")
                raise Timeout(f"no receiver was up within {timeout} s; nothing was sent")
            time.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, WAIT_SLICE)

    def _wait_backlog(self, deadline, timeout):
        while self._backlog:
            self._wait_up(deadline, timeout)
            self._place_backlog()
            if self._backlog and _left(deadline, timeout) == 0:
                raise Timeout(f"messages taken back from a lost receiver still wait for room; "
                              f"nothing was sent")

    def flush(self, timeout: float | None = None) -> bool:
        """True once every message sent so far is acknowledged by a receiver (after a failover,
        by the one it was moved to); False if the timeout ran out first."""
        deadline = _deadline(timeout)
        while True:
            with self._lock:
                self._check_open()
                self._look()
                if self._backlog:
                    self._place_backlog()
                senders = [m.sender for m in self._members]
                backlog = bool(self._backlog)
            if not backlog:
                slice_ = _slice(deadline, timeout)
                if all(s.flush(timeout=slice_) for s in senders if not s.closed):
                    with self._lock:
                        self._look()
                        if not self._backlog and all(s is m.sender for s, m in zip(senders, self._members)):
                            return True
            elif _left(deadline, timeout) != 0:
                time.sleep(0.001)
            if _left(deadline, timeout) == 0:
                return False

    # ---- the look at the members ----

    def _look_now(self):
        with self._lock:
            self._check_open()
            self._look()
            return not self._backlog

    def _look_if_due(self):
        now = time.monotonic_ns()
        if self._spread.countdown <= 0 or now - self._last_look_ns >= LOOK_GAP_NS:
            self._look(now)

    def _look(self, now=None):
        """Reads every member's Sender and tells the Router: up or down, load, round trips. A
        member lost since the last look is failed over. Under the lock."""
        now = time.monotonic_ns() if now is None else now
        self._last_look_ns = now
        self._spread.countdown = LOOK_EVERY
        if now >= self._next_resolve_ns:
            self._next_resolve_ns = now + self._resolve_ns
            self._resolve_names()
        router = self._router
        for i, m in enumerate(self._members):
            up, unacked_bytes, _, settled, samples, last_rtt, timing_since, fill = m.sender._observe()
            if m.pending:
                self._settle(m, settled)
            if samples != m.samples:
                m.samples = samples
                m.fed_age = 0
                router.observe_rtt(i, last_rtt)
            elif timing_since and now - timing_since > STALE_FACTOR * max(last_rtt, m.fed_age, 1_000_000):
                m.fed_age = now - timing_since  # an ACK overdue: the receiver is at least this slow
                router.observe_rtt(i, m.fed_age)
            router.set_load(i, unacked_bytes, fill >= SATURATED)
            if up:
                m.was_up = True
            elif m.was_up and not self._broadcast:
                self._fail_over(i, m)
            if up != m.up:
                m.up = up
                router.set_up(i, up)
        if self._backlog:  # messages taken back go out as soon as a member takes them
            self._place_backlog()

    def _settle(self, m, settled):
        pending = m.pending
        while pending and pending[0][0] <= settled:
            token = pending.popleft()[2]
            if token is not None:
                self._on_settled(token)

    def _fail_over(self, i, m):
        """m's Sender lost its receiver: its unacknowledged messages are taken back (in order,
        with their keys and tokens) to go to the others, and a new Sender waits for the receiver
        to come back."""
        taken = self._take_back(m)
        self._retire(m)
        m.sender = self._new_sender(m.endpoint, m.spec)
        m.was_up = False
        m.samples = m.fed_age = 0  # (the new Sender counts its round trips from 0)
        m.failovers += 1
        m.moved += len(taken)
        self._totals["failovers"] += 1
        self._totals["moved"] += len(taken)
        self._spread.set_senders([x.sender for x in self._members], [x.pending for x in self._members])
        self._backlog += taken
        m.up = False
        self._router.set_up(i, False)

    def _take_back(self, m):
        """m's unacknowledged messages as (data, key, token), in order; its Sender is closed. The
        messages taken back are the last ones queued, so they pair with the last entries kept."""
        m.carried[0] += m.sender.queued_count
        m.carried[1] += m.sender.settled_count
        taken = m.sender._take_unacked()
        entries = list(m.pending)[max(0, len(m.pending) - len(taken)):] if self._tracking else []
        entries = [(0, None, None)] * (len(taken) - len(entries)) + entries
        return [(data, key, token) for data, (_, key, token) in zip(taken, entries)]

    def _retire(self, m):
        """After _take_back: its Sender is done with (closed), and so is what was kept for it."""
        m.sender.close(linger=0)
        m.pending.clear()

    def _place_backlog(self):
        """Queues taken-back messages, in order, on members that take them at once."""
        placed = 0
        for data, key, token in self._backlog:
            i = self._router.pick(key)
            if i < 0:
                break
            m = self._members[i]
            try:
                m.sender.send(data, timeout=0)
            except Full:
                break
            if self._tracking:
                m.pending.append((m.sender.queued_count, key, token))
            placed += 1
        del self._backlog[:placed]

    # ---- membership ----

    def add(self, endpoint: str, weight: float = 1.0, zone: str | None = None) -> None:
        """Adds a receiver (a host name: one per address it resolves to). With "hash", only the
        keys that now rank it first move to it."""
        with self._lock:
            self._check_open()
            if endpoint in self._specs:
                raise ValueError(f"{endpoint} is already a member")
            self._add(endpoint, weight, zone)
            self._sync_router()

    def remove(self, endpoint: str) -> None:
        """Removes a receiver (as given to the constructor or add(), or one address of a name);
        its unacknowledged messages go to the others. ValueError if it is not a member."""
        with self._lock:
            self._check_open()
            gone = [m for m in self._members if endpoint in (m.spec, m.endpoint)]
            if not gone:
                raise ValueError(f"{endpoint} is not a member of this Balancer; members: {self.endpoints}")
            self._specs.pop(endpoint, None)
            self._drop(gone)

    def _new_sender(self, endpoint, spec):
        """A member's Sender. Over TLS it checks the host name as given (a DNS name stands for
        each of its addresses, and certificates name the host, not each address)."""
        options = self._options
        if options.get("ssl") is not None and options.get("server_hostname") is None:
            host = parse(spec).host
            if host is not None:
                options = {**options, "server_hostname": host}
        return Sender(endpoint, context=self._context, **options)

    def _add(self, spec, weight, zone):
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight!r}")
        self._specs[spec] = (weight, zone)
        for endpoint in _resolve.expand(spec, self._resolver):
            if any(m.endpoint == endpoint for m in self._members):
                continue
            self._members.append(Member(endpoint, spec, float(weight), zone,
                                        _locality.tier(endpoint, zone, self.zone),
                                        member_id(endpoint, self._router.seed),
                                        self._new_sender(endpoint, spec)))

    def _drop(self, gone):
        for m in gone:
            self._backlog += self._take_back(m)
            self._retire(m)
        self._members = [m for m in self._members if m not in gone]
        self._sync_router()
        self._place_backlog()

    def _resolve_names(self):
        """Names resolved again: members for new addresses, and those whose address went away
        dropped (their messages go to the others). A failed lookup changes nothing."""
        for spec, (weight, zone) in list(self._specs.items()):
            if not _resolve.is_name(spec):
                continue
            try:
                now = set(_resolve.expand(spec, self._resolver))
            except OSError:
                continue  # the name service is down: keep what we have
            had = {m.endpoint for m in self._members if m.spec == spec}
            if now == had:
                continue
            self._drop([m for m in self._members if m.spec == spec and m.endpoint not in now])
            self._add(spec, weight, zone)
            self._sync_router()

    def _sync_router(self):
        """The Router's members from ours (it keeps the state of those that stay); each one's
        health is said again, as a new member starts up there."""
        self._router.set_members([m.id for m in self._members], [m.weight for m in self._members],
                                 [m.tier for m in self._members])
        for i, m in enumerate(self._members):
            self._router.set_up(i, m.up)
        self._spread.set_senders([m.sender for m in self._members], [m.pending for m in self._members])

    # ---- routing, state ----

    @property
    def endpoints(self) -> list[str]:
        """The members' endpoints (names resolved); index i is what route() returns for it."""
        return [m.endpoint for m in self._members]

    def route(self, key: Buffer) -> int:
        """The index in `endpoints` of the member `key` maps to now ("hash"); -1 if none is up."""
        return self._router.route(key)

    def route_many(self, keys: npt.NDArray[np.uint64] | Sequence[Buffer]) -> npt.NDArray[np.int32]:
        """route() for many keys (a sequence of bytes, or a numpy uint64 array): an int32 array."""
        return self._router.route_many(keys)

    def stats(self) -> BalancerStats:
        """Per endpoint: state, sent, acknowledged, in flight (messages, bytes), the Router's
        latency estimate (ns), failovers and messages moved away; then the totals."""
        with self._lock:
            self._check_open()
            self._look()
            loads = self._router.loads()
            members = []
            for m, (up, _, saturated, rtt) in zip(self._members, loads):
                up_now, unacked_bytes, unacked, settled, samples, last_rtt, _, _ = m.sender._observe()
                members.append({"endpoint": m.endpoint, "state": "up" if up else "down", "saturated": saturated,
                                "sent": m.carried[0] + m.sender.queued_count, "acknowledged": m.carried[1] + settled,
                                "in_flight": unacked, "in_flight_bytes": unacked_bytes, "latency_ns": rtt,
                                "last_rtt_ns": last_rtt, "tier": m.tier, "weight": m.weight,
                                "failovers": m.failovers, "moved": m.moved})
            totals = {k: sum(x[k] for x in members) for k in ("sent", "acknowledged", "in_flight")}
            totals.update(self._totals, waiting=len(self._backlog), up=sum(1 for x in members if x["state"] == "up"))
            return cast("BalancerStats", {"endpoints": members, "totals": totals})

    # ---- lifetime ----

    def _check_open(self):
        if self._closed:
            raise Closed("the Balancer is closed")

    def close(self, linger: float | None = 1.0) -> bool:
        """Waits up to `linger` s for every message to be acknowledged (failing over as needed),
        then closes every Sender. True if nothing was left unacknowledged (as Sender.close);
        idempotent: True once closed."""
        if self._closed:
            return True
        done = self.flush(timeout=linger) if linger != 0 else True
        with self._lock:
            if self._closed:
                return True
            self._closed = True
            self._stop.set()
            lost = len(self._backlog)
            for m in self._members:
                if not m.sender.closed:
                    lost += m.sender.unacknowledged
                done = m.sender.close(linger=0) and done
            self._backlog.clear()
            self._lost_at_close = lost
        return done and not lost

    @property
    def closed(self) -> bool:
        """True after close()."""
        return self._closed

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<fastmsg.Balancer {self.strategy} {self.endpoints}{' closed' if self._closed else ''}>"


_live: weakref.WeakSet[Balancer] = weakref.WeakSet()  # every Balancer not yet freed


def _close_at_exit():
    """Interpreter exit: each open Balancer gets EXIT_LINGER for its acknowledgements (failing
    over meanwhile); what it gives up is reported on stderr with its count, never dropped quietly.
    (Registered after the transport's own exit handler, so it runs before the Senders close.)"""
    for balancer in list(_live):
        if balancer.closed or balancer.close(linger=EXIT_LINGER) or not balancer._lost_at_close:
            continue
        n = balancer._lost_at_close
        try:
            sys.stderr.write(f"fastmsg: ResourceWarning: Balancer over {', '.join(balancer.endpoints)}: {n} "
                             f"message{'s' if n != 1 else ''} not acknowledged at interpreter exit, within "
                             f"{EXIT_LINGER} s; they may not have been delivered\n")
            sys.stderr.flush()
        except Exception:  # (stderr closed or gone this late: nothing else can be done)
            pass


atexit.register(_close_at_exit)


def _watch(ref, stop):
    """The watcher thread: looks at the Balancer between calls, so that a receiver lost while
    nobody sends is failed over, and names are resolved again on time. It holds the Balancer
    only weakly, and ends with close() (or once the Balancer is gone)."""
    while not stop.wait(WATCH_EVERY):
        balancer = ref()
        if balancer is None:
            return
        try:
            balancer._look_now()
        except Closed:
            return
        del balancer


def _deadline(timeout):
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
    return time.monotonic() + timeout


def _left(deadline, timeout):
    """Seconds left (0 once past; None: no limit)."""
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


def _slice(deadline, timeout):
    left = _left(deadline, timeout)
    return WAIT_SLICE if left is None else min(WAIT_SLICE, left)
