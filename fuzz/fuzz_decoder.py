"""Fuzz target: every frame checker reachable from Python, fed arbitrary bytes.

Input: one selector byte, then the frame. The selector picks the limits checked against and
whether the CRC is repaired first (so that mutations reach the checks behind it). Each call must
return or raise ProtocolError with a known code; a frame that decodes must encode back to the
same bytes (the encoders are the differential reference)."""

import atheris

import entry

with atheris.instrument_imports():
    from fastmsg import ProtocolError
    from fastmsg._core import protocol as proto

    import edges
    import frames

K = proto.KINDS
# (max_message, max_batch) pairs: the protocol's ceiling, a receiver's defaults, tiny ones.
LIMITS = ((proto.MESSAGE_LIMIT, 0xFFFFFFFF), (16 << 20, 256 << 10), (64, 64), (0, 0))


@atheris.instrument_func
def _refused(call, *args):
    """call(*args), or None when it raises ProtocolError with a documented code."""
    try:
        return call(*args)
    except ProtocolError as e:
        assert e.code is None or e.code in proto.ERROR_CODES, e.code
        edges.code(e.code)
        return None


@atheris.instrument_func
def reencode(name, fields):
    """The frame the encoders make of decode()'s result."""
    if name in ("HELLO", "WELCOME"):
        major, minor = fields.pop("version")
        return proto.encode_hello(K[name], major=major, minor=minor, **fields)
    if name == "DATA":
        return proto.encode_data(fields["first_seq"], fields["messages"])
    if name == "REPLY":
        return proto.encode_reply(fields["first_seq"], fields["replies"])
    if name == "ERROR":
        return proto.encode_error(fields["code"], fields["text"])
    return proto.encode_control(K[name], fields["value"])


@atheris.instrument_func
def round_trips(frame, name):
    """Whether the encoders can say this frame at all: none writes HELLO extensions, and ERROR's
    text goes through str (undecodable bytes are replaced)."""
    if name in ("HELLO", "WELCOME"):
        return len(frame) == proto.HELLO_FRAME
    if name == "ERROR":
        text_len = int.from_bytes(frame[16:20], "little")
        try:
            frame[20:20 + text_len].decode()
        except UnicodeDecodeError:
            return False
    return True


@atheris.instrument_func
def TestOneInput(data):
    if not data:
        return
    selector, frame = data[0], data[1:]
    if selector & 0x80:
        frame = frames.reseal(frame)
    max_message, max_batch = LIMITS[selector & 3]
    if len(frame) >= 8:
        edges.kind(frames.HEADER.unpack_from(frame)[1])
    header = _refused(proto.check_header, frame[:8], max_message, max_batch) if len(frame) >= 8 else None
    decoded = _refused(proto.decode, frame, max_message, max_batch)
    if decoded is None:
        return
    assert header is not None, "a frame decoded whose header was refused"
    name, fields = decoded
    assert proto.KINDS[name] == header[0] and header[2] == len(frame)
    if round_trips(frame, name):
        again = reencode(name, dict(fields))
        assert again == frame, f"{name} does not round-trip: {frame.hex()} -> {again.hex()}"


if __name__ == "__main__":
    entry.main(TestOneInput, __file__)
