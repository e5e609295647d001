"""Writes the seed corpora (fuzz/corpus/<target>/) from the protocol's encoders.

Run again after a protocol change; the files are small and named after what they hold."""

import pathlib

from fastmsg._core import protocol as proto

K = proto.KINDS
HERE = pathlib.Path(__file__).resolve().parent
CAPS = proto.CAP_ACK | proto.CAP_HEARTBEAT | proto.CAP_REPLIES


def hello(kind=K["HELLO"], **fields):
    args = dict(session_id=0x0123456789ABCDEF, seq=0, max_message=1 << 20, max_batch=1 << 16,
                capabilities=CAPS, heartbeat_ms=1000, window=4 << 20, reply_seq=0)
    args.update(fields)
    return proto.encode_hello(kind, **args)


def frames():
    """(name, frame) of every kind, valid, as the test vectors are."""
    yield "hello", hello()
    yield "hello_plain", hello(capabilities=0, heartbeat_ms=0)
    yield "welcome", hello(K["WELCOME"], seq=42, window=0)
    yield "data", proto.encode_data(0, [b"hello", b"", b"fastmsg!!"])
    yield "data_request", proto.encode_data(0, [(0x1122334455667788, b"ping?"), b"plain"])
    yield "data_big", proto.encode_data(0, [bytes(range(256)) * 2])
    yield "reply", proto.encode_reply(3, [(0x1122334455667788, b"pong")])
    for name in ("ACK", "PING", "PONG", "CLOSE", "RACK"):
        yield name.lower(), proto.encode_control(K[name], 7)
    yield "error", proto.encode_error(5, "frame or message larger than the negotiated maximum")


def write(target, name, data):
    path = HERE / "corpus" / target / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main():
    for name, frame in frames():
        # decoder: a selector byte (limits, CRC repair) then the frame
        write("decoder", name, b"\x00" + frame)
        write("decoder", name + "_resealed", b"\x81" + frame)
    # handshake: what a peer sends first
    write("handshake", "hello", hello())
    write("handshake", "hello_plain", hello(capabilities=0, heartbeat_ms=0))
    write("handshake", "hello_then_data", hello() + proto.encode_data(0, [b"x"]))
    write("handshake", "welcome", hello(K["WELCOME"], window=0))
    write("handshake", "hello_v2", hello(major=2))
    # session: a flags byte (CRC repair, capabilities), then what follows a valid HELLO
    data = proto.encode_data(0, [b"hello", b"", b"fastmsg!!"])
    after = proto.encode_data(3, [b"next"])
    requests = proto.encode_data(0, [(1, b"ping?"), b"plain"])
    ping, rack, close = (proto.encode_control(K[k], v) for k, v in (("PING", 1), ("RACK", 1), ("CLOSE", 0)))
    write("session", "data", b"\x00" + data)
    write("session", "data_data", b"\x00" + data + after)
    write("session", "requests_rack", b"\x0e" + requests + rack)
    write("session", "ping_close", b"\x04" + ping + close)
    write("session", "data_resealed", b"\x01" + data + ping + after)
    # sender: a flags byte (session id copied into the WELCOME, CRC repair), then what a
    # receiver answers a HELLO with
    welcome = hello(K["WELCOME"], capabilities=proto.CAP_ACK | proto.CAP_REPLIES, window=0)
    ack, pong = proto.encode_control(K["ACK"], 0), proto.encode_control(K["PONG"], 1)
    write("sender", "welcome_ack", b"\x03" + welcome + ack)
    write("sender", "welcome_reply", b"\x03" + welcome + proto.encode_reply(0, [(1, b"pong")]) + ack)
    write("sender", "welcome_pong_close", b"\x03" + welcome + pong + proto.encode_control(K["CLOSE"], 0))
    write("sender", "welcome_error", b"\x03" + welcome + proto.encode_error(9, "resource limit reached"))
    write("sender", "error", b"\x00" + proto.encode_error(4, "unsupported protocol version"))


if __name__ == "__main__":
    main()
