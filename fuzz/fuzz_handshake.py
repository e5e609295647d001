"""Fuzz target: the first bytes a peer sends a live Receiver (its HELLO, and what follows it).

Each input is written on a fresh connection, which is then half-closed. The Receiver must answer
with well-formed frames only (a WELCOME, or an ERROR that its stats count as a refusal), close
the connection, and go on serving a real Sender (checked every few hundred inputs)."""

import atheris

import entry

with atheris.instrument_imports():
    import live

peer = live.Lazy(lambda: live.LiveReceiver(max_message_size=1 << 16, max_batch_bytes=1 << 14, max_sessions=64))


@atheris.instrument_func
def TestOneInput(data):
    receiver = peer.get()
    receiver.tick()
    refused_before = receiver.refusals()
    with receiver.connect() as sock:
        live.send_all(sock, data)
        reply = live.read_until_eof(sock)
    live.check_answer(reply, receiver.refusals, refused_before, allowed=("WELCOME", "PING", "ACK"))



if __name__ == "__main__":
    entry.main(TestOneInput, __file__)
