"""Wire protocol v3: the documented vectors, an independent encoder, and hostile frames."""

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
    """A frame as it is, no CRC computed (for frames broken on purpose, and version 2's HELLO)."""
    return struct.pack("<II", len(body), kind) + pad8(body)


HELLO_CRC = 48  # body offset of HELLO's and WELCOME's CRC; every other frame's is 0


def sealed(kind, body, at=0):
    """The frame with its CRC32C (of the header and body, but the 4 bytes at body offset `at`)
    written at `at`."""
    header = struct.pack("<II", len(body), kind)
    crc = reference.crc32c(header + body[:at] + body[at + 4:])
    return header + pad8(body[:at] + struct.pack("<I", crc) + body[at + 4:])


def hello(kind, session_id, seq, max_message, max_batch, capabilities=0, heartbeat_ms=0, window=0, reply_seq=0,
          major=3, minor=1):
    fields = MAGIC + struct.pack("<HHIQQIIII", major, minor, capabilities, session_id, seq, max_message,
                                 max_batch, heartbeat_ms, 0)
    return sealed(kind, fields + struct.pack("<IIQ", 0, window, reply_seq), at=HELLO_CRC)  # CRC, window, reply_seq


def hello_with_ext(kind, ext, session_id, seq, max_message, max_batch, capabilities=0, heartbeat_ms=0, window=0,
                   reply_seq=0):
    fields = MAGIC + struct.pack("<HHIQQIIII", 3, 1, capabilities, session_id, seq, max_message, max_batch,
                                 heartbeat_ms, len(ext))
    return sealed(kind, fields + struct.pack("<IIQ", 0, window, reply_seq) + ext, at=HELLO_CRC)


def hello_v2(session_id=5, seq=0):
    """A HELLO of protocol version 2: no CRC, 48 bytes of body."""
    return frame(K["HELLO"], MAGIC + struct.pack("<HHIQQIIII", 2, 0, 1, session_id, seq, 100, 100, 0, 0))


def control(kind, value, reserved=0):
    return sealed(kind, struct.pack("<IIQ", 0, reserved, value))


def data(first_seq, messages, flags=0, kind=K["DATA"]):
    """A DATA frame; a (request_id, payload) pair is a request record. kind=REPLY: a REPLY frame,
    every record such a pair."""
    def record(m):
        if isinstance(m, tuple):
            m = struct.pack("<Q", m[0]) + m[1]
            return struct.pack("<II", len(m), 0 if kind == K["REPLY"] else 1) + pad8(m)
        return struct.pack("<II", len(m), flags) + pad8(m)
    records = b"".join(record(m) for m in messages)
    return sealed(kind, struct.pack("<IIQ", 0, len(messages), first_seq) + records)


def reply(first_seq, replies):
    return data(first_seq, replies, kind=K["REPLY"])


def error(code, text, text_len=None):
    raw = text.encode()
    return sealed(K["ERROR"], struct.pack("<III", 0, code, len(raw) if text_len is None else text_len) + raw)


EXPECTED = {
    "hello": ("HELLO", dict(version=(3, 1), capabilities=7, session_id=0x0123456789ABCDEF, seq=1,
                            max_message=1 << 24, max_batch=1 << 18, heartbeat_ms=1000, window=1 << 22,
                            reply_seq=5)),
    "welcome": ("WELCOME", dict(version=(3, 1), capabilities=5, session_id=0x0123456789ABCDEF, seq=42,
                                max_message=1 << 24, max_batch=1 << 18, heartbeat_ms=0, window=0, reply_seq=0)),
    "data": ("DATA", dict(first_seq=7, messages=[b"hello", b"", b"fastmsg!!"])),
    "request": ("DATA", dict(first_seq=8, messages=[(0x1122334455667788, b"ping?"), b"plain"])),
    "reply": ("REPLY", dict(first_seq=0, replies=[(0x1122334455667788, b"pong!"), (2, b"")])),
    "rack": ("RACK", dict(value=2)),
    "ack": ("ACK", dict(value=10)),
    "ping": ("PING", dict(value=0xFEEDFACE)),
    "pong": ("PONG", dict(value=0xFEEDFACE)),
    "close": ("CLOSE", dict(value=10)),
    "error": ("ERROR", dict(code=6, text="CRC32C mismatch")),
    "hello_auth": ("HELLO", dict(version=(3, 1), capabilities=13, session_id=0x0123456789ABCDEF, seq=0,
                                 max_message=1 << 24, max_batch=1 << 18, heartbeat_ms=0, window=1 << 22,
                                 reply_seq=0, auth=(7, bytes(range(32))))),
    "challenge": ("CHALLENGE", dict(nonce=bytes(range(0x80, 0xA0)), proof=bytes.fromhex(
        "a2b2e352e29f2855a2d10ad545753e408705c88d48b88ef653db4c235c2bdbe3"))),
    "auth": ("AUTH", dict(proof=bytes.fromhex("46c5dde7f284fa7c1f56731d8d0589bff1191e82d2a5b9e0b9f8795c972eda3d"))),
}

# The documented authenticated handshake: its key, session and key id (docs/protocol.md).
AUTH_KEY, AUTH_SESSION, AUTH_KEY_ID = bytes(range(0x40, 0x60)), 0x0123456789ABCDEF, 7


def auth_proof(key, label, session_id, key_id, nonce_s, nonce_r):
    """A proof as docs/protocol.md defines it, with Python's hmac."""
    import hashlib
    import hmac
    return hmac.new(key, label.ljust(16, b"\0") + struct.pack("<QQ", session_id, key_id) + nonce_s + nonce_r,
                    hashlib.sha256).digest()


def _encode(kind, fields):
    if kind in ("HELLO", "WELCOME"):
        f = dict(fields)
        f.pop("version")
        return proto.encode_hello(K[kind], **f)
    if kind == "DATA":
        return proto.encode_data(fields["first_seq"], fields["messages"])
    if kind == "REPLY":
        return proto.encode_reply(fields["first_seq"], fields["replies"])
    if kind == "ERROR":
        return proto.encode_error(fields["code"], fields["text"])
    if kind == "CHALLENGE":
        return proto.encode_challenge(fields["nonce"], fields["proof"])
    if kind == "AUTH":
        return proto.encode_auth(fields["proof"])
    return proto.encode_control(K[kind], fields["value"])


def _encode_independently(kind, fields):
    if kind in ("HELLO", "WELCOME"):
        f = dict(fields)
        assert f.pop("version") == (3, 1)
        auth = f.pop("auth", None)
        if auth is None:
            return hello(K[kind], **f)
        ext = struct.pack("<IIQ", 1, 40, auth[0]) + auth[1]  # the AUTH extension: type, length, key id, nonce
        return hello_with_ext(K[kind], ext, **f)
    if kind == "CHALLENGE":
        return sealed(K[kind], struct.pack("<II", 0, 0) + fields["nonce"] + fields["proof"])
    if kind == "AUTH":
        return sealed(K[kind], struct.pack("<II", 0, 0) + fields["proof"])
    if kind == "DATA":
        return data(fields["first_seq"], fields["messages"])
    if kind == "REPLY":
        return reply(fields["first_seq"], fields["replies"])
    if kind == "ERROR":
        return error(fields["code"], fields["text"])
    return control(K[kind], fields["value"])


@pytest.mark.skipif(not DOC.exists(), reason="docs/ is not next to the tests")
@pytest.mark.parametrize("name", list(EXPECTED))
def test_documented_vector_decodes_and_reencodes(name):
    vector = _vectors()[name]
    kind, fields = EXPECTED[name]
    assert proto.decode(vector) == (kind, fields)
    assert _encode(kind, fields) == vector
    assert _encode_independently(kind, fields) == vector  # the page's own rules give its vectors


def test_documented_proofs_are_hmac_sha256_of_both_nonces():
    nonce_s, nonce_r = bytes(range(32)), bytes(range(0x80, 0xA0))
    args = (AUTH_SESSION, AUTH_KEY_ID, nonce_s, nonce_r)
    assert EXPECTED["challenge"][1]["proof"] == auth_proof(AUTH_KEY, b"fastmsg receiver", *args)
    assert EXPECTED["auth"][1]["proof"] == auth_proof(AUTH_KEY, b"fastmsg sender", *args)


def test_auth_frames_refuse_a_flipped_bit_and_a_bad_extension():
    for name in ("challenge", "auth", "hello_auth"):
        v = bytearray(_vectors()[name])
        v[-1] ^= 1
        with pytest.raises(ProtocolError):
            proto.decode(bytes(v))
    # an extension whose length runs past ext_len
    bad = hello_with_ext(K["HELLO"], struct.pack("<IIQ", 1, 48, 7) + bytes(32), session_id=1, seq=0,
                         max_message=100, max_batch=100)
    with pytest.raises(ProtocolError, match="malformed"):
        proto.decode(bad)


@pytest.mark.skipif(not DOC.exists(), reason="docs/ is not next to the tests")
def test_every_documented_vector_is_checked():
    assert set(_vectors()) == set(EXPECTED)


@settings(max_examples=200, deadline=None)
@given(first_seq=st.integers(0, 2**64 - 1),
       messages=st.lists(st.one_of(st.binary(max_size=100), st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=100))),
                         min_size=1, max_size=20))
def test_data_matches_the_independent_encoder(first_seq, messages):
    encoded = proto.encode_data(first_seq, messages)
    assert encoded == data(first_seq, messages)
    assert proto.decode(encoded) == ("DATA", dict(first_seq=first_seq, messages=messages))


@settings(max_examples=200, deadline=None)
@given(first_seq=st.integers(0, 2**64 - 1),
       replies=st.lists(st.tuples(st.integers(0, 2**64 - 1), st.binary(max_size=100)), min_size=1, max_size=20))
def test_reply_matches_the_independent_encoder(first_seq, replies):
    encoded = proto.encode_reply(first_seq, replies)
    assert encoded == reply(first_seq, replies)
    assert proto.decode(encoded) == ("REPLY", dict(first_seq=first_seq, replies=replies))


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(["HELLO", "WELCOME"]), session_id=st.integers(1, 2**64 - 1),
       seq=st.integers(0, 2**64 - 1), max_message=st.integers(0, 2**32 - 1),
       max_batch=st.integers(0, 2**32 - 1), capabilities=st.integers(0, 7), heartbeat_ms=st.integers(0, 2**32 - 1),
       window=st.integers(0, 2**32 - 1), reply_seq=st.integers(0, 2**64 - 1))
def test_handshake_matches_the_independent_encoder(kind, **fields):
    if kind == "WELCOME":
        fields["window"] = fields["reply_seq"] = 0  # (a sender's fields: zero in WELCOME)
    encoded = proto.encode_hello(K[kind], **fields)
    assert encoded == hello(K[kind], **fields)
    assert proto.decode(encoded) == (kind, dict(version=(3, 1), **fields))


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["ACK", "PING", "PONG", "CLOSE", "RACK"]), value=st.integers(0, 2**64 - 1))
def test_small_frames_match_the_independent_encoder(kind, value):
    encoded = proto.encode_control(K[kind], value)
    assert encoded == control(K[kind], value)
    assert proto.decode(encoded) == (kind, dict(value=value))


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
    for vector in [GOOD_DATA, hello(1, 5, 0, 100, 100), control(K["ACK"], 3), error(6, "text")]:
        for n in range(len(vector)):
            with pytest.raises(ProtocolError):
                proto.decode(vector[:n])


def test_crc_mismatch_is_named():
    bad = bytearray(GOOD_DATA)
    bad[30] ^= 1  # inside the first payload
    assert _refused(bytes(bad), "CRC32C mismatch").code == 6


# --- every frame is sealed by its CRC: one flipped bit anywhere, and it is refused ---

def _frames_of_every_kind():
    """A strategy for a valid frame of each kind, with fields drawn at random."""
    u32, u64 = st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)
    handshake = st.builds(lambda kind, sid, seq, mm, mb, caps, hb: proto.encode_hello(
        K[kind], session_id=sid, seq=seq, max_message=mm, max_batch=mb, capabilities=caps, heartbeat_ms=hb),
        st.sampled_from(["HELLO", "WELCOME"]), st.integers(1, 2**64 - 1), u64, u32, u32, st.integers(0, 3), u32)
    small = st.builds(lambda kind, value: proto.encode_control(K[kind], value),
                      st.sampled_from(["ACK", "PING", "PONG", "CLOSE", "RACK"]), u64)
    err = st.builds(proto.encode_error, u32, st.text(max_size=40))
    record = st.one_of(st.binary(max_size=40), st.tuples(u64, st.binary(max_size=40)))
    batch = st.builds(proto.encode_data, u64, st.lists(record, min_size=1, max_size=4))
    replies = st.builds(proto.encode_reply, u64, st.lists(st.tuples(u64, st.binary(max_size=40)), min_size=1,
                                                           max_size=4))
    return st.one_of(handshake, small, err, batch, replies)


def _expected_refusal(frame_bytes, bit):
    """The code a frame with `bit` flipped must be refused with: a flip in the body is a CRC
    mismatch, except in HELLO's magic and major version, which are read first. None for a flip
    in the header or the padding, which may break the layout in many ways (or turn the kind into
    another whose CRC then fails)."""
    length, kind = struct.unpack_from("<II", frame_bytes)
    at = bit // 8
    if kind in (K["HELLO"], K["WELCOME"]) and 8 <= at < 18:
        return 3 if at < 16 else 4
    if 8 <= at < 8 + length:
        return 6
    return None


def _check_refused(bad, expected, **limits):
    with pytest.raises(ProtocolError) as info:
        proto.decode(bytes(bad), **limits)
    assert expected is None or info.value.code == expected, (bytes(bad).hex(), info.value)


@settings(max_examples=1000, deadline=None)
@given(frame_bytes=_frames_of_every_kind(), data=st.data())
def test_any_single_flipped_bit_is_refused(frame_bytes, data):
    bit = data.draw(st.integers(0, len(frame_bytes) * 8 - 1))
    bad = bytearray(frame_bytes)
    bad[bit // 8] ^= 1 << (bit % 8)
    _check_refused(bad, _expected_refusal(frame_bytes, bit), max_message=1 << 16, max_batch=1 << 16)


@pytest.mark.parametrize("vector_name", ["hello", "welcome", "ack", "ping", "pong", "close", "error", "rack"])
def test_every_bit_of_each_control_vector_is_protected(vector_name):
    """Exhaustive over the documented vectors: no bit of a control frame can change unnoticed."""
    vector = _vectors()[vector_name]
    for bit in range(len(vector) * 8):
        bad = bytearray(vector)
        bad[bit // 8] ^= 1 << (bit % 8)
        _check_refused(bad, _expected_refusal(vector, bit))


@pytest.mark.parametrize(
    "frame_bytes, reason",
    [
        (frame(99, bytes(8)), "unexpected frame kind"),
        (frame(0x80000000 | 3, bytes(24)), "unexpected frame kind"),
        (hello(1, 5, 0, 100, 100)[:8] + b"NOTFMSG!" + hello(1, 5, 0, 100, 100)[16:], "bad magic"),
        (hello(1, 5, 0, 100, 100, major=1), "unsupported protocol version"),
        (hello_v2(), "unsupported protocol version"),
        (hello(1, 0, 0, 100, 100), "malformed"),
        (hello(1, 5, 0, 100, 100)[:-16] + bytes(16), "CRC32C mismatch"),
        (hello(2, 5, 0, 100, 100, window=1), "malformed"),
        (hello(2, 5, 0, 100, 100, reply_seq=1), "malformed"),
        (control(K["ACK"], 1, reserved=1), "malformed"),
        (sealed(K["ACK"], bytes(24)), "malformed"),
        (sealed(K["PING"], bytes(12)), "malformed"),
        (sealed(K["ACK"], bytes(8)), "malformed"),
        (error(1, "abc", text_len=5), "malformed"),
        (data(1, [b"abc"], flags=4), "malformed"),
        (data(1, [b"abc"], flags=3), "malformed"),
        (data(1, [b"1234567"], flags=1), "malformed"),
        (sealed(K["REPLY"], struct.pack("<IIQ", 0, 1, 0) + struct.pack("<II", 9, 1) + bytes(16)), "malformed"),
        (sealed(K["REPLY"], struct.pack("<IIQ", 0, 1, 0) + struct.pack("<II", 7, 0) + bytes(8)), "malformed"),
        (data(1, []), "malformed"),
    ],
    ids=["unknown-kind", "pad-bit", "bad-magic", "version-1", "version-2", "session-0", "hello-no-crc",
         "welcome-window", "welcome-reply-seq", "ack-reserved", "long-ack", "short-ping", "version-2-ack",
         "error-len", "record-flags", "request-and-more", "request-without-id", "reply-flags",
         "reply-without-id", "empty-batch"],
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
    base = draw.draw(st.sampled_from([GOOD_DATA, hello(1, 5, 0, 100, 100), error(3, "x"), control(K["PING"], 0)]))
    blob = bytearray(base)
    for _ in range(draw.draw(st.integers(1, 4))):
        blob[draw.draw(st.integers(0, len(blob) - 1))] = draw.draw(st.integers(0, 255))
    try:
        proto.decode(bytes(blob))
    except ProtocolError:
        pass
