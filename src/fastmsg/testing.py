"""Fault injection for testing services built on fastmsg (or any TCP protocol).

`FaultProxy` sits between a client and a TCP server and forwards bytes both ways, faithfully until
told otherwise. Faults can be switched on and off while connections are open:

    proxy = FaultProxy("tcp://127.0.0.1:5555")      # listens on an ephemeral port
    tx = fastmsg.Sender(proxy.endpoint)
    proxy.reset_after(20_000, 200_000)              # reset each connection after 20..200 KB
    proxy.flip_bits(rate=1e-5)                      # flip about one bit in 100 KB
    proxy.flip_bits(1e-3, direction="to_client")    # ... only in what the server answers
    proxy.black_hole()                              # forward nothing, close nothing
    proxy.heal()                                    # faithful again (also ends a black hole)
    proxy.stats()                                   # connections, resets, bits flipped, bytes...

Resets are real: both sides get a TCP RST (SO_LINGER 0), as when a middlebox or a peer's kernel
drops the connection. A black hole keeps both sockets open and stops reading them, as when a host
vanishes or a link goes down without anyone closing anything: only timeouts or heartbeats can tell.
Delays hold each chunk for a fixed time before forwarding it. Every random choice comes from one
seeded generator, so a failing run can be replayed with the same seed.

The proxy runs one thread with a selector; every loop in it is bounded by a short select timeout
and it stops on close(). It is meant for tests on loopback or a test network, not for production.
"""

from __future__ import annotations

import random
import selectors
import socket
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, ClassVar, Literal, cast

if TYPE_CHECKING:
    from typing_extensions import Self

    from fastmsg.types import FaultProxyStats

__all__ = ["FaultProxy"]

_CHUNK = 64 << 10
_TICK = 0.01  # the thread looks at timers and new settings at least this often (seconds)


def _tcp_address(endpoint):
    if not endpoint.startswith("tcp://"):
        raise ValueError(f"FaultProxy forwards TCP only; expected tcp://host:port, got {endpoint!r}")
    host, sep, port = endpoint[len("tcp://"):].rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"endpoint {endpoint!r} has no port")
    return host.strip("[]"), int(port)


def _hard_close(sock):
    """Closes with an RST rather than a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Direction:
    """One way of a connection: bytes read from `src`, waiting in `pending`, written to `dst`."""

    def __init__(self, src, dst):
        self.src, self.dst = src, dst
        self.pending = deque()  # (due time, bytearray)
        self.eof = False        # src said EOF: shut dst's write side once pending is out

    def queued(self):
        return sum(len(chunk) for _, chunk in self.pending)


class _Link:
    def __init__(self, client, upstream, budget):
        self.client, self.upstream = client, upstream
        self.ways = (_Direction(client, upstream), _Direction(upstream, client))
        self.budget = budget  # bytes to forward before a reset; None: no reset planned
        self.connecting = True


class FaultProxy:
    """A TCP proxy that injects faults: resets, black holes, bit flips, stalls and delays."""

    endpoint: str  # where clients connect: tcp://host:port, with the port the proxy got

    def __init__(self, target: str, listen: str = "tcp://127.0.0.1:0", *,
                 seed: int | float | str | bytes | bytearray | None = None) -> None:
        self._target = _tcp_address(target)
        host, port = _tcp_address(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(512)
        self._listener.setblocking(False)
        bound = self._listener.getsockname()
        self.endpoint = f"tcp://[{bound[0]}]:{bound[1]}" if family == socket.AF_INET6 else f"tcp://{bound[0]}:{bound[1]}"
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._reset_range: tuple[int, int] | None = None
        self._flip_rate = 0.0
        self._flip_ways = (True, True)  # client -> target, target -> client
        self._delay = 0.0
        self._stalled_until = 0.0
        self._holed = False
        self._reset_now = False
        self._counts = dict(connections=0, resets=0, bits_flipped=0, bytes_forwarded=0, refused=0)
        self._links: list[_Link] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fastmsg-fault-proxy", daemon=True)
        self._thread.start()

    # ---- settings (any thread) ----

    def reset_after(self, low: int, high: int | None = None) -> None:
        """Resets each connection, both sides, after it has forwarded a random number of bytes in
        [low, high] (counting both directions); then later connections get a new budget."""
        high = low if high is None else high
        if not 0 < low <= high:
            raise ValueError(f"need 0 < low <= high, got {low}, {high}")
        with self._lock:
            self._reset_range = (low, high)
            for link in self._links:
                link.budget = self._random.randint(low, high)

    def reset_all(self) -> None:
        """Resets every open connection now (both sides get an RST)."""
        with self._lock:
            self._reset_now = True

    _DIRECTIONS: ClassVar[dict[str, tuple[bool, bool]]] = {
        "both": (True, True), "to_target": (True, False), "to_client": (False, True)}

    def flip_bits(self, rate: float, direction: Literal["both", "to_target", "to_client"] = "both") -> None:
        """Flips each forwarded bit with probability `rate` (0 stops flipping), in the bytes going
        `direction`: "both", "to_target" (what the client sends) or "to_client" (the answers)."""
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be in [0, 1], got {rate}")
        if direction not in self._DIRECTIONS:
            raise ValueError(f"direction must be one of {sorted(self._DIRECTIONS)}, got {direction!r}")
        with self._lock:
            self._flip_rate = float(rate)
            self._flip_ways = self._DIRECTIONS[direction]

    def delay(self, seconds: float) -> None:
        """Holds every chunk this long before forwarding it (0: no delay)."""
        if seconds < 0:
            raise ValueError(f"delay must be >= 0, got {seconds}")
        with self._lock:
            self._delay = float(seconds)

    def stall(self, seconds: float) -> None:
        """Forwards nothing, in either direction, for this long; then goes on."""
        with self._lock:
            self._stalled_until = time.monotonic() + seconds

    def black_hole(self) -> None:
        """Stops forwarding and reading, closes nothing and accepts nothing, until heal()."""
        with self._lock:
            self._holed = True

    def heal(self) -> None:
        """Ends every fault: no resets, flips, delays, stalls or black hole."""
        with self._lock:
            self._reset_range = None
            self._flip_rate = 0.0
            self._flip_ways = self._DIRECTIONS["both"]
            self._delay = 0.0
            self._stalled_until = 0.0
            self._holed = False
            for link in self._links:
                link.budget = None

    def stats(self) -> FaultProxyStats:
        """Counters: connections accepted, resets made, bits flipped, bytes forwarded, refused
        (connections whose upstream could not be reached)."""
        with self._lock:
            return cast("FaultProxyStats", dict(self._counts, open=len(self._links)))

    def close(self) -> None:
        """Stops the proxy thread and closes every connection and the listening socket."""
        self._stop.set()
        self._thread.join(timeout=5)
        for link in self._links:
            link.client.close()
            link.upstream.close()
        self._links = []
        self._listener.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the proxy thread ----

    def _run(self):
        sel = selectors.DefaultSelector()
        sel.register(self._listener, selectors.EVENT_READ, None)
        try:
            while not self._stop.is_set():
                self._register_interest(sel)
                for key, events in sel.select(timeout=_TICK):
                    if key.data is None:
                        self._accept(sel)
                    else:
                        self._service(sel, key.data, key.fileobj, events)
                self._tick(sel)
        finally:
            sel.close()

    def _register_interest(self, sel):
        with self._lock:
            refuse_new = self._holed
            holed = self._holed or time.monotonic() < self._stalled_until
            links = list(self._links)
        listening = self._listener in sel.get_map()
        if refuse_new and listening:
            sel.unregister(self._listener)
        elif not refuse_new and not listening:
            sel.register(self._listener, selectors.EVENT_READ, None)
        for link in links:
            for sock in (link.client, link.upstream):
                want = 0
                if not holed:
                    if link.connecting:
                        want = selectors.EVENT_WRITE if sock is link.upstream else 0
                    else:
                        way_in = link.ways[0] if sock is link.client else link.ways[1]
                        way_out = link.ways[1] if sock is link.client else link.ways[0]
                        if not way_in.eof and way_in.queued() < 4 * _CHUNK:
                            want |= selectors.EVENT_READ
                        if way_out.pending and way_out.pending[0][0] <= time.monotonic():
                            want |= selectors.EVENT_WRITE
                if sock in sel.get_map():
                    if want:
                        sel.modify(sock, want, link)
                    else:
                        sel.unregister(sock)
                elif want:
                    sel.register(sock, want, link)

    def _accept(self, sel):
        for _ in range(64):
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            family = socket.AF_INET6 if ":" in self._target[0] else socket.AF_INET
            upstream = socket.socket(family, socket.SOCK_STREAM)
            upstream.setblocking(False)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.connect_ex(self._target)
            with self._lock:
                budget = self._random.randint(*self._reset_range) if self._reset_range else None
                self._links.append(_Link(client, upstream, budget))
                self._counts["connections"] += 1

    def _drop(self, sel, link, reset):
        with self._lock:  # counted first: a peer may look at the counters as soon as it sees the RST
            if link in self._links:
                self._links.remove(link)
            if reset:
                self._counts["resets"] += 1
        for sock in (link.client, link.upstream):
            if sock in sel.get_map():
                sel.unregister(sock)
            _hard_close(sock) if reset else sock.close()

    def _service(self, sel, link, sock, events):
        if link not in self._links:
            return
        if link.connecting:
            err = link.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                with self._lock:
                    self._counts["refused"] += 1
                self._drop(sel, link, reset=True)
                return
            link.connecting = False
            return
        way_in = link.ways[0] if sock is link.client else link.ways[1]
        way_out = link.ways[1] if sock is link.client else link.ways[0]
        if events & selectors.EVENT_READ:
            try:
                data = sock.recv(_CHUNK)
            except (ConnectionError, OSError):
                self._drop(sel, link, reset=True)
                return
            if not data:
                way_in.eof = True
            else:
                self._forward(link, way_in, bytearray(data))
        if events & selectors.EVENT_WRITE and link in self._links:
            self._write(sel, link, way_out)

    def _forward(self, link, way, data):
        with self._lock:
            rate, delay = self._flip_rate, self._delay
            if not self._flip_ways[link.ways.index(way)]:
                rate = 0.0
            if rate:
                flips = self._binomial(len(data) * 8, rate)
                for _ in range(flips):
                    bit = self._random.randrange(len(data) * 8)
                    data[bit >> 3] ^= 1 << (bit & 7)
                self._counts["bits_flipped"] += flips
        way.pending.append((time.monotonic() + delay, data))

    def _binomial(self, n, p):
        """How many of n bits flip at rate p (Poisson approximation; exact enough for tests)."""
        lam = n * p
        if lam > 30:
            return max(0, round(self._random.gauss(lam, lam ** 0.5)))
        count, threshold, product = 0, pow(2.718281828459045, -lam), self._random.random()
        while product > threshold and count < n:
            count += 1
            product *= self._random.random()
        return count

    def _write(self, sel, link, way):
        now = time.monotonic()
        while way.pending and way.pending[0][0] <= now:
            due, chunk = way.pending[0]
            if link.budget is not None and link.budget <= 0:
                self._drop(sel, link, reset=True)
                return
            limit = len(chunk) if link.budget is None else min(len(chunk), link.budget)
            try:
                sent = way.dst.send(chunk[:limit])
            except BlockingIOError:
                return
            except (ConnectionError, OSError):
                self._drop(sel, link, reset=True)
                return
            del chunk[:sent]
            with self._lock:
                self._counts["bytes_forwarded"] += sent
            if link.budget is not None:
                link.budget -= sent
            if not chunk:
                way.pending.popleft()
            if sent < limit:
                return
        if way.eof and not way.pending:
            try:
                way.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _tick(self, sel):
        with self._lock:
            reset_now, self._reset_now = self._reset_now, False
            links = list(self._links)
        for link in links:
            both_done = all(way.eof and not way.pending for way in link.ways)
            if reset_now or (link.budget is not None and link.budget <= 0):
                self._drop(sel, link, reset=True)
            elif both_done:
                self._drop(sel, link, reset=False)
