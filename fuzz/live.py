"""A live Receiver in the fuzzing process and raw connections to it, every wait bounded.

The Receiver has a Context of its own, so that its I/O thread serves nothing else. Each input
gets a fresh connection; the peer half-closes after writing, so the Receiver answers what it read
and then closes on end of stream: reading until EOF needs no timer, and a Receiver that fails to
close is reported as a hang. Every CHECK_EVERY inputs a real Sender must still get a message
through."""

import os
import socket
import tempfile
import time

import fastmsg
from fastmsg import ProtocolError
from fastmsg._core import protocol as proto

import edges
import frames

WAIT = 5.0  # seconds any read may take before the Receiver is said to hang
CHECK_EVERY = 200  # inputs between two checks that a real Sender is still served
REFUSALS = ("protocol_errors", "crc_errors")


class Hang(AssertionError):
    """A bounded wait ran out; an AssertionError, so libFuzzer saves the input like a crash's."""


class LiveReceiver:
    """The Receiver under test, and a real Sender made at the first liveness check."""

    def __init__(self, **options):
        # A Unix socket: no TIME_WAIT pile-up at thousands of connections a second.
        self.dir = tempfile.mkdtemp(prefix="fastmsg-fuzz-")
        self.context = fastmsg.Context()
        options.setdefault("handshake_timeout", 30.0)  # longer than WAIT: EOF must close, not a timer
        self.rx = fastmsg.Receiver(f"ipc://{self.dir}/rx", context=self.context, **options)
        self.tx = None
        self.inputs = 0
        self.started = time.monotonic()

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(WAIT)
        sock.connect(f"{self.dir}/rx")
        return sock

    def refusals(self):
        return refusals(self.rx)

    def drain(self):
        """Takes and releases every message the fuzzed peers got through."""
        while True:
            try:
                batch = self.rx.recv_many(1024, timeout=0)
            except fastmsg.Timeout:
                return
            for m in batch:
                m.release()

    def alive(self):
        """A real Sender's message arrives: the Receiver still accepts and delivers."""
        if self.tx is None:
            self.tx = fastmsg.Sender(f"ipc://{self.dir}/rx")
        token = b"alive %d" % self.inputs
        self.tx.send(token)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                batch = self.rx.recv_many(1024, timeout=deadline - time.monotonic())
            except fastmsg.Timeout:
                break
            seen = False
            for m in batch:
                seen = seen or bytes(m) == token
                m.release()
            if seen:
                return
        raise Hang(f"a real Sender's message did not arrive within {WAIT} s")

    def tick(self):
        """Called once per input: the periodic liveness check and a rate report."""
        self.inputs += 1
        if self.inputs % CHECK_EVERY == 1:
            self.drain()
            self.alive()
        if self.inputs % 10000 == 0:
            rate = self.inputs / (time.monotonic() - self.started)
            print(f"#{self.inputs} live inputs, {rate:.0f}/s", flush=True)

    def close(self):
        if self.tx is not None:
            self.tx.close()
        self.rx.close()
        self.context.close()
        os.rmdir(self.dir)


def refusals(endpoint):
    """Frames a Sender or Receiver refused, by its stats()."""
    stats = endpoint.stats()
    return sum(stats[k] for k in REFUSALS)


def read_until_eof(sock):
    """Every byte until the peer closes; Hang if it does not within WAIT seconds."""
    out = bytearray()
    deadline = time.monotonic() + WAIT
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise Hang(f"the Receiver did not close within {WAIT} s; it sent {bytes(out[:64]).hex()}") from None
        except ConnectionResetError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


def read_frame(sock):
    """The next whole frame, or what came before EOF."""
    got = b""
    need = 8
    while len(got) < need:
        try:
            chunk = sock.recv(need - len(got))
        except socket.timeout:
            raise Hang(f"no frame within {WAIT} s") from None
        if not chunk:
            return got
        got += chunk
        if len(got) == 8:
            need = frames.frame_size(frames.HEADER.unpack_from(got)[0])
    return got


def send_all(sock, data):
    """Writes data and half-closes; a Receiver that closed early (it refused) ends the write."""
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass


def check_answer(answer, refusals, refusals_before, allowed=None):
    """Checks what a fastmsg peer wrote: whole frames that decode, an ERROR only with a refusal
    counted (refusals() above refusals_before), and no kind outside `allowed`."""
    for name, fields in decoded(answer):
        edges.kind(proto.KINDS[name])
        if name == "ERROR":
            edges.code(fields["code"])
            assert refusals() > refusals_before, "an ERROR sent but no refusal counted"
        else:
            assert allowed is None or name in allowed, f"unexpected {name}"


def decoded(reply):
    """The frames the Receiver wrote, each decoded: whatever a Receiver says must be well formed."""
    whole, rest = frames.split(reply)
    assert not rest, f"the Receiver wrote a partial frame: {reply.hex()}"
    out = []
    for f in whole:
        try:
            out.append(proto.decode(f))
        except ProtocolError as e:
            raise AssertionError(f"the Receiver wrote a frame that does not decode ({e}): {f.hex()}") from None
    return out


class Lazy:
    """The peer a target talks to, made at the first input (not at import: libFuzzer's fork
    and merge modes import the target in processes that never run it) and ended by close()."""

    def __init__(self, make):
        self.make = make
        self.peer = None

    def get(self):
        if self.peer is None:
            self.peer = self.make()
        return self.peer

    def close(self):
        if self.peer is not None:
            self.peer.close()
            self.peer = None
