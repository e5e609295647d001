"""Fuzz target: a live Receiver's socket after a valid handshake.

Input: a flags byte, then the frames a sender would send after its HELLO (DATA, PING, RACK,
CLOSE, or anything else). Flag bit 0 repairs the CRC of every whole frame, so that mutations get
past the CRC check into the record walk, the sequence numbers and the limits; bits 1-3 choose
the capabilities asked for. Each connection has a session of its own (the Receiver keeps few,
so that eviction runs too). What the Receiver writes back must decode, and an ERROR must be
counted as a refusal."""

import atheris

import entry

with atheris.instrument_imports():
    import frames
    import live

proto = live.proto
peer = live.Lazy(lambda: live.LiveReceiver(max_message_size=1 << 12, max_batch_bytes=1 << 12, max_sessions=16,
                                            ring_bytes=1 << 16))
sessions = 0


def hello(flags):
    global sessions
    sessions += 1
    return proto.encode_hello(proto.KINDS["HELLO"], session_id=sessions, seq=0, max_message=1 << 16,
                              max_batch=1 << 14, capabilities=(flags >> 1) & 7, heartbeat_ms=1000,
                              window=1 << 20)


@atheris.instrument_func
def TestOneInput(data):
    if not data:
        return
    receiver = peer.get()
    receiver.tick()
    flags, rest = data[0], data[1:]
    if flags & 1:
        rest = frames.reseal_stream(rest)
    refused_before = receiver.refusals()
    with receiver.connect() as sock:
        sock.sendall(hello(flags))
        welcome = live.read_frame(sock)
        assert live.decoded(welcome)[0][0] == "WELCOME", f"no WELCOME for a valid HELLO: {welcome.hex()}"
        live.send_all(sock, rest)
        reply = live.read_until_eof(sock)
    live.check_answer(reply, receiver.refusals, refused_before)
    receiver.drain()



if __name__ == "__main__":
    entry.main(TestOneInput, __file__)
