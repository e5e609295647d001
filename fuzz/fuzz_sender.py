"""Fuzz target: a real Sender's side of a connection, answered by a fake receiver.

Per input a new Sender (in the fuzzing process, its own Context) connects to a listening Unix
socket and has a message and a request queued; the fake receiver reads its HELLO, writes the
input (WELCOME, ACK, REPLY, PING, ERROR frames, or anything: the corpus starts from valid ones)
and half-closes. Flag bit 0 of the first byte repairs the CRCs. The Sender must write whole,
well-formed frames only, close on end of stream, count an ERROR it sends as a refusal, and
close() without hanging."""

import os
import socket
import tempfile

import atheris

import entry

with atheris.instrument_imports():
    import fastmsg

    import frames
    import live

proto = live.proto
WELCOME = proto.KINDS["WELCOME"].to_bytes(4, "little")


class FakeReceiver:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="fastmsg-fuzz-")
        self.path = f"{self.dir}/rx"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(16)
        self.listener.settimeout(live.WAIT)
        self.context = fastmsg.Context()

    def accept(self):
        try:
            sock, _ = self.listener.accept()
        except socket.timeout:
            raise live.Hang(f"the Sender did not connect within {live.WAIT} s") from None
        sock.settimeout(live.WAIT)
        return sock

    def discard_pending(self):
        """Closes the connections a Sender made again after its first one failed, so that the
        next input talks to the next Sender (called once that Sender is closed)."""
        self.listener.setblocking(False)
        try:
            while True:
                self.listener.accept()[0].close()
        except BlockingIOError:
            pass
        finally:
            self.listener.settimeout(live.WAIT)

    def close(self):
        self.listener.close()
        self.context.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


peer = live.Lazy(FakeReceiver)


@atheris.instrument_func
def TestOneInput(data):
    if not data:
        return
    fake = peer.get()
    flags, rest = data[0], data[1:]
    tx = fastmsg.Sender(f"ipc://{fake.path}", context=fake.context, linger=0)
    try:
        tx.send(b"fuzz", timeout=0)
        with fake.accept() as sock:
            hello = live.read_frame(sock)
            assert live.decoded(hello)[0][0] == "HELLO", f"the Sender opened with {hello.hex()}"
            if flags & 2 and rest[4:8] == WELCOME and len(rest) >= 32:
                rest = rest[:24] + hello[24:32] + rest[32:]
            if flags & 1:
                rest = frames.reseal_stream(rest)
            live.send_all(sock, rest)
            said = live.read_until_eof(sock)
        live.check_answer(said, lambda: live.refusals(tx), 0)
    finally:
        tx.close()
        fake.discard_pending()


if __name__ == "__main__":
    entry.main(TestOneInput, __file__)
