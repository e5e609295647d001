"""Wire protocol v1: the documented vectors, an independent encoder, and hostile frames."""

import pathlib
import re
import struct

import crc32c as reference
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastmsg import ProtocolError
from fastmsg._core import protocol as proto

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
MAGIC = b"FMSG\r\n\x1a\n"
K = proto.KINDS


def _vectors():
    text = DOC.read_text()
    return {name: bytes.fromhex(body.replace("\n", " ").replace(" ", ""))
            for name, body in re.findall(r"```vector (\w+)\n(.*?)```", text, re.S)}


# --- an encoder written from docs/protocol.md alone, with the crc32c package for the CRC ---

def pad8(b):
    return b + bytes(-len(b) % 8)


def frame(kind, body):
    return struct.pack("<II", len(body), kind) + pad8(body)


def hello(kind, session_id, seq, max_message, max_batch, capabilities=0, heartbeat_ms=0, major=2, minor=0):
    return frame(kind, MAGIC + struct.pack("<HHIQQIIII", major, minor, capabilities, session_id, seq,
                                           max_message, max_batch, heartbeat_ms, 0))


def data(first_seq, messages, flags=0):
    records = b"".join(struct.pack("<II", len(m), flags) + pad8(m) for m in messages)
    header = struct.pack("<II", 16 + len(records), K["DATA"])
    covered = header + struct.pack("<IQ", len(messages), first_seq) + records
    return header + struct.pack("<I", reference.crc32c(covered)) + covered[8:]


def error(code, text):
    raw = text.encode()
    return frame(K["ERROR"], struct.pack("<II", code, len(raw)) + raw)


EXPECTED = {
    "hello": ("HELLO", dict(version=(2, 0), capabilities=3, session_id=0x0123456789ABCDEF, seq=1,
                            max_message=1 << 24, max_batch=1 << 18, heartbeat_ms=1000)),
    "welcome": ("WELCOME", dict(version=(2, 0), capabilities=1, session_id=0x0123456789ABCDEF, seq=42,
                                max_message=1 << 24, max_batch=1 << 18, heartbeat_ms=0)),
    "data": ("DATA", dict(first_seq=7, messages=[b"hello", b"", b"fastmsg!!"])),
    "ack": ("ACK", dict(value=10)),
    "ping": ("PING", dict(value=0xFEEDFACE)),
    "pong": ("PONG", dict(value=0xFEEDFACE)),
    "close": ("CLOSE", dict(value=10)),
    "error": ("ERROR", dict(code=6, text="CRC32C mismatch")),
}


def _encode(kind, fields):
    if kind in ("HELLO", "WELCOME"):
        f = dict(fields)
        f.pop("version")
        return proto.encode_hello(K[kind], **f)
    if kind == "DATA":
        return proto.encode_data(fields["first_seq"], fields["messages"])
    if kind == "ERROR":
        return proto.encode_error(fields["code"], fields["text"])
    return proto.encode_control(K[kind], fields["value"])


@pytest.mark.skipif(not DOC.exists(), reason="docs/ is not next to the tests")
@pytest.mark.parametrize("name", list(EXPECTED))
def test_documented_vector_decodes_and_reencodes(name):
    vector = _vectors()[name]
    kind, fields = EXPECTED[name]
    assert proto.decode(vector) == (kind, fields)
    assert _encode(kind, fields) == vector


@pytest.mark.skipif(not DOC.exists(), reason="docs/ is not next to the tests")
def test_every_documented_vector_is_checked():
    assert set(_vectors()) == set(EXPECTED)


@settings(max_examples=200, deadline=None)
@given(first_seq=st.integers(0, 2**64 - 1), messages=st.lists(st.binary(max_size=100), min_size=1, max_size=20))
def test_data_matches_the_independent_encoder(first_seq, messages):
    encoded = proto.encode_data(first_seq, messages)
    assert encoded == data(first_seq, messages)
    assert proto.decode(encoded) == ("DATA", dict(first_seq=first_seq, messages=messages))


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(["HELLO", "WELCOME"]), session_id=st.integers(1, 2**64 - 1),
       seq=st.integers(0, 2**64 - 1), max_message=st.integers(0, 2**32 - 1),
       max_batch=st.integers(0, 2**32 - 1), capabilities=st.integers(0, 3), heartbeat_ms=st.integers(0, 2**32 - 1))
def test_handshake_matches_the_independent_encoder(kind, **fields):
    encoded = proto.encode_hello(K[kind], **fields)
    assert encoded == hello(K[kind], **fields)
    assert proto.decode(encoded) == (kind, dict(version=(2, 0), **fields))


@given(code=st.integers(0, 2**32 - 1), text=st.text(max_size=300))
def test_error_matches_the_independent_encoder(code, text):
    if len(text.encode()) > 1024:
        return
    assert proto.encode_error(code, text) == error(code, text)


def test_error_text_is_cut_at_the_limit():
    name, fields = proto.decode(proto.encode_error(1, "x" * 5000))
    assert fields["text"] == "x" * 1024


# --- hostile and broken frames: a ProtocolError naming the reason, never a crash ---

def _refused(frame_bytes, reason, **limits):
    with pytest.raises(ProtocolError, match=reason) as info:
        proto.decode(frame_bytes, **limits)
    return info.value


GOOD_DATA = data(7, [b"hello", b"", b"fastmsg!!"])


def test_every_single_byte_corruption_of_a_batch_is_caught():
    for i in range(len(GOOD_DATA)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(GOOD_DATA)
            bad[i] ^= flip
            with pytest.raises(ProtocolError):
                proto.decode(bytes(bad))


def test_every_truncation_is_caught():
    for vector in [GOOD_DATA, hello(1, 5, 0, 100, 100)]:
        for n in range(len(vector)):
            with pytest.raises(ProtocolError):
                proto.decode(vector[:n])


def test_crc_mismatch_is_named():
    bad = bytearray(GOOD_DATA)
    bad[30] ^= 1  # inside the first payload
    assert _refused(bytes(bad), "CRC32C mismatch").code == 6


@pytest.mark.parametrize(
    "frame_bytes, reason",
    [
        (frame(99, bytes(8)), "unexpected frame kind"),
        (frame(0x80000000 | 3, bytes(24)), "unexpected frame kind"),
        (hello(1, 5, 0, 100, 100)[:8] + b"NOTFMSG!" + hello(1, 5, 0, 100, 100)[16:], "bad magic"),
        (hello(1, 5, 0, 100, 100, major=1), "unsupported protocol version"),
        (hello(1, 0, 0, 100, 100), "malformed"),
        (frame(K["ACK"], bytes(16)), "malformed"),
        (frame(K["ERROR"], struct.pack("<II", 1, 5) + b"abc"), "malformed"),
        (data(1, [b"abc"], flags=4), "malformed"),
        (data(1, []), "malformed"),
    ],
    ids=["unknown-kind", "pad-bit", "bad-magic", "version-1", "session-0", "long-ack", "error-len",
         "record-flags", "empty-batch"],
)
def test_bad_frames_are_refused_with_the_reason(frame_bytes, reason):
    _refused(frame_bytes, reason)


def test_nonzero_padding_is_refused():
    good = error(1, "abc")
    assert good[-1] == 0
    _refused(good[:-1] + b"\x01", "malformed")


def test_count_that_disagrees_with_the_records_is_refused():
    bad = bytearray(data(1, [b"a", b"b"]))
    struct.pack_into("<I", bad, 12, 3)
    struct.pack_into("<I", bad, 8, reference.crc32c(bytes(bad[:8]) + bytes(bad[12:])))
    _refused(bytes(bad), "malformed")


def test_message_over_the_limit_is_refused():
    _refused(data(1, [bytes(100)]), "larger than the negotiated maximum", max_message=99)


def test_oversized_frame_is_refused_from_its_header_alone():
    header = struct.pack("<II", 0xFFFFFFF0, K["DATA"])
    with pytest.raises(ProtocolError, match="larger than the negotiated maximum"):
        proto.check_header(header, 1 << 20, 1 << 20)
    # a batch of one message may exceed max_batch, up to one message's record
    ok = struct.pack("<II", 16 + 8 + (1 << 20), K["DATA"])
    assert proto.check_header(ok, 1 << 20, 4096) == (K["DATA"], 16 + 8 + (1 << 20), 8 + 16 + 8 + (1 << 20))


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(blob):
    try:
        proto.decode(blob, max_message=1 << 16, max_batch=1 << 16)
    except ProtocolError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_random_mutations_of_valid_frames_never_crash(draw):
    base = draw.draw(st.sampled_from([GOOD_DATA, hello(1, 5, 0, 100, 100), error(3, "x"), frame(K["PING"], bytes(8))]))
    blob = bytearray(base)
    for _ in range(draw.draw(st.integers(1, 4))):
        blob[draw.draw(st.integers(0, len(blob) - 1))] = draw.draw(st.integers(0, 255))
    try:
        proto.decode(bytes(blob))
    except ProtocolError:
        pass
