# cython: freethreading_compatible = True
"""Wire protocol v3 from Python: encode and decode whole frames (docs/protocol.md).

The engine uses the C functions directly; this module serves tests, tools and test vectors,
and turns the C error codes into ProtocolError with the reason a peer would be shown."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from fastmsg._core.includes.crc32c cimport fastmsg_crc32c, use_selected_kernel
from fastmsg._core.includes.protocol cimport *

from fastmsg.errors import ProtocolError

use_selected_kernel()

KINDS = {
    "HELLO": FASTMSG_HELLO, "WELCOME": FASTMSG_WELCOME, "DATA": FASTMSG_DATA, "ACK": FASTMSG_ACK,
    "PING": FASTMSG_PING, "PONG": FASTMSG_PONG, "CLOSE": FASTMSG_CLOSE, "ERROR": FASTMSG_ERROR,
    "REPLY": FASTMSG_REPLY, "RACK": FASTMSG_RACK, "CHALLENGE": FASTMSG_CHALLENGE, "AUTH": FASTMSG_AUTH,
}
CONTROL_KINDS = (FASTMSG_ACK, FASTMSG_PING, FASTMSG_PONG, FASTMSG_CLOSE, FASTMSG_RACK)  # 16-byte bodies
KIND_NAMES = {v: k for k, v in KINDS.items()}
VERSION = (FASTMSG_PROTO_MAJOR, FASTMSG_PROTO_MINOR)
HELLO_FRAME = FASTMSG_FRAME_HDR + FASTMSG_HELLO_BODY  # bytes of a HELLO or WELCOME without extensions
CONTROL_FRAME = FASTMSG_FRAME_HDR + FASTMSG_CONTROL_BODY  # bytes of an ACK, PING, PONG, CLOSE or RACK
MESSAGE_LIMIT = FASTMSG_MESSAGE_LIMIT
CAP_ACK = FASTMSG_CAP_ACK
CAP_HEARTBEAT = FASTMSG_CAP_HEARTBEAT
CAP_REPLIES = FASTMSG_CAP_REPLIES
ERROR_CODES = {code: fastmsg_proto_strerror(code).decode() for code in range(FASTMSG_PERR_COUNT_)}


cdef int _check(int code, str what) except -1:
    if code != FASTMSG_PERR_OK:
        raise ProtocolError(f"{what}: {fastmsg_proto_strerror(code).decode()}", code)
    return 0


cdef fastmsg_limits _limits(uint64_t max_message, uint64_t max_batch) except *:
    if max_message > FASTMSG_MESSAGE_LIMIT:
        raise ValueError(f"max_message {max_message} exceeds the protocol's {FASTMSG_MESSAGE_LIMIT}")
    if max_batch > 0xFFFFFFFF:
        raise ValueError(f"max_batch {max_batch} exceeds 2**32-1")
    cdef fastmsg_limits lim
    lim.max_message = <uint32_t>max_message
    lim.max_batch = <uint32_t>max_batch
    lim.record_flags = FASTMSG_REC_REQUEST  # (as a receiver that granted REPLIES)
    return lim


def frame_size(uint32_t body_len):
    """Bytes a frame with a body of body_len bytes occupies, padding included."""
    return fastmsg_frame_size(body_len)


def check_header(const uint8_t[::1] header, uint64_t max_message, uint64_t max_batch):
    """(kind, body_len, frame_size) of an 8-byte frame header, or ProtocolError."""
    if header.shape[0] < FASTMSG_FRAME_HDR:
        raise ProtocolError(f"frame header needs {FASTMSG_FRAME_HDR} bytes, got {header.shape[0]}")
    cdef fastmsg_limits lim = _limits(max_message, max_batch)
    cdef uint32_t kind, body_len
    _check(fastmsg_frame_check(&header[0], &lim, &kind, &body_len), "frame header")
    return kind, body_len, fastmsg_frame_size(body_len)


def encode_hello(uint32_t kind, *, uint64_t session_id, uint64_t seq, uint32_t max_message,
                 uint32_t max_batch, uint32_t capabilities=0, uint32_t heartbeat_ms=0, uint32_t window=0,
                 uint64_t reply_seq=0, int major=FASTMSG_PROTO_MAJOR, int minor=FASTMSG_PROTO_MINOR, auth=None):
    """auth=(key_id, nonce): the AUTH extension (a sender with a secret; set capability bit 3 too)."""
    if kind != FASTMSG_HELLO and kind != FASTMSG_WELCOME:
        raise ValueError(f"kind must be HELLO or WELCOME, got {kind}")
    cdef fastmsg_hello h
    h.major, h.minor, h.capabilities = major, minor, capabilities
    h.session_id, h.seq = session_id, seq
    h.max_message, h.max_batch, h.heartbeat_ms, h.ext_len = max_message, max_batch, heartbeat_ms, 0
    h.window = window
    h.reply_seq = reply_seq
    cdef uint8_t out[FASTMSG_FRAME_HDR + FASTMSG_HELLO_BODY + FASTMSG_AUTH_EXT_LEN]
    cdef uint8_t ext[FASTMSG_AUTH_EXT_LEN]
    cdef bytes nonce
    cdef uint32_t ext_len = 0
    if auth is not None:
        nonce = bytes(auth[1])
        if len(nonce) != FASTMSG_AUTH_NONCE:
            raise ValueError(f"a nonce has {FASTMSG_AUTH_NONCE} bytes, got {len(nonce)}")
        fastmsg_auth_ext_put(ext, auth[0], <const uint8_t *><const char *>nonce)
        ext_len = FASTMSG_AUTH_EXT_LEN
    cdef size_t n = fastmsg_encode_hello_ext(out, kind, &h, ext, ext_len)
    return PyBytes_FromStringAndSize(<char *>out, n)


cdef bytes _fixed(object b, Py_ssize_t n, str what):
    cdef bytes raw = bytes(b)
    if len(raw) != n:
        raise ValueError(f"{what} has {n} bytes, got {len(raw)}")
    return raw


def encode_challenge(nonce, proof):
    """CHALLENGE: the receiver's nonce and its proof of the key."""
    cdef bytes n = _fixed(nonce, FASTMSG_AUTH_NONCE, "a nonce"), p = _fixed(proof, FASTMSG_AUTH_PROOF, "a proof")
    cdef uint8_t out[FASTMSG_FRAME_HDR + FASTMSG_CHALLENGE_BODY]
    return PyBytes_FromStringAndSize(<char *>out, fastmsg_encode_challenge(out, <const uint8_t *><const char *>n,
                                                                            <const uint8_t *><const char *>p))


def encode_auth(proof):
    """AUTH: the sender's proof of the key."""
    cdef bytes p = _fixed(proof, FASTMSG_AUTH_PROOF, "a proof")
    cdef uint8_t out[FASTMSG_FRAME_HDR + FASTMSG_AUTH_BODY]
    return PyBytes_FromStringAndSize(<char *>out, fastmsg_encode_auth(out, <const uint8_t *><const char *>p))


def encode_control(uint32_t kind, uint64_t value):
    if kind not in CONTROL_KINDS:
        raise ValueError(f"kind must be ACK, PING, PONG, CLOSE or RACK, got {kind}")
    cdef uint8_t out[FASTMSG_FRAME_HDR + FASTMSG_CONTROL_BODY]
    return PyBytes_FromStringAndSize(<char *>out, fastmsg_encode_control(out, kind, value))


def encode_error(uint32_t code, str text):
    cdef bytes raw = text.encode()[:FASTMSG_ERROR_MAX_TEXT]
    cdef uint8_t out[FASTMSG_ERROR_FRAME_MAX]
    cdef size_t n = fastmsg_encode_error(out, code, raw, len(raw))
    return PyBytes_FromStringAndSize(<char *>out, n)


def encode_data(uint64_t first_seq, messages):
    """A DATA frame carrying `messages` as records, its CRC32C computed as the engine does. Each
    is a buffer, or a (request_id, buffer) pair: a request record (flag REQUEST, the id first)."""
    cdef list records = []
    for m in messages:
        if isinstance(m, tuple):
            records.append((FASTMSG_REC_REQUEST, m[0].to_bytes(8, "little") + bytes(m[1])))
        else:
            records.append((0, memoryview(m).cast("B")))
    return _encode_batch(FASTMSG_DATA, first_seq, records)


def encode_reply(uint64_t first_seq, replies):
    """A REPLY frame carrying `replies`, (request_id, buffer) pairs, as the engine writes it."""
    return _encode_batch(FASTMSG_REPLY, first_seq,
                         [(0, rid.to_bytes(8, "little") + bytes(p)) for rid, p in replies])


cdef bytes _encode_batch(uint32_t kind, uint64_t first_seq, list records):
    """A DATA or REPLY frame of (flags, payload) records."""
    if not records:
        raise ValueError("a batch carries at least one record")
    cdef Py_ssize_t records_len = 0
    for _, p in records:
        records_len += 8 + ((len(p) + 7) & ~7)
    if records_len + FASTMSG_DATA_HDR > 0xFFFFFFFF:
        raise ValueError("batch too large for one frame")
    cdef bytearray frame = bytearray(24 + records_len)
    cdef uint8_t *out = <uint8_t *><char *>frame
    cdef uint32_t crc = fastmsg_batch_open(out, kind, <uint32_t>records_len, <uint32_t>len(records), first_seq)
    cdef Py_ssize_t pos = 24, n
    cdef const uint8_t[::1] view
    for flags, p in records:
        n = len(p)
        frame[pos:pos + 8] = n.to_bytes(4, "little") + flags.to_bytes(4, "little")
        if n:
            view = p
            memcpy(out + pos + 8, &view[0], n)
        pos += 8 + ((n + 7) & ~7)
    crc = fastmsg_crc32c(crc, out + 24, records_len)
    fastmsg_data_set_crc(out, crc)
    return bytes(frame)


def _records(const uint8_t[::1] frame):
    """(flags, payload) of each record of a checked DATA or REPLY frame."""
    cdef Py_ssize_t pos = FASTMSG_FRAME_HDR + FASTMSG_DATA_HDR, size = frame.shape[0]
    out = []
    while pos < size:
        n = int.from_bytes(bytes(frame[pos:pos + 4]), "little")
        flags = int.from_bytes(bytes(frame[pos + 4:pos + 8]), "little")
        out.append((flags, bytes(frame[pos + 8:pos + 8 + n])))
        pos += 8 + ((n + 7) & ~7)
    return out


def _tagged(bytes payload):
    """(request id, the rest) of a request's or reply's payload."""
    return int.from_bytes(payload[:8], "little"), payload[8:]


def decode(const uint8_t[::1] frame, uint64_t max_message=FASTMSG_MESSAGE_LIMIT, uint64_t max_batch=0xFFFFFFFF):
    """(kind name, fields) of one whole frame; ProtocolError naming what is wrong otherwise."""
    cdef Py_ssize_t size = frame.shape[0]
    if size < FASTMSG_FRAME_HDR:
        raise ProtocolError(f"a frame has at least {FASTMSG_FRAME_HDR} bytes, got {size}")
    cdef fastmsg_limits lim = _limits(max_message, max_batch)
    cdef uint32_t kind, body_len, count, code, text_len
    cdef uint64_t value, first_seq
    cdef fastmsg_hello h
    cdef const uint8_t *text
    cdef const uint8_t *nonce
    cdef const uint8_t *proof
    cdef uint64_t key_id
    cdef uint8_t hello_nonce[32]
    cdef int found
    _check(fastmsg_frame_check(&frame[0], &lim, &kind, &body_len), "frame header")
    if <uint64_t>size != fastmsg_frame_size(body_len):
        raise ProtocolError(f"frame of {size} bytes, its header says {fastmsg_frame_size(body_len)}")
    name = KIND_NAMES[kind]
    if kind == FASTMSG_HELLO or kind == FASTMSG_WELCOME:
        _check(fastmsg_decode_hello(&frame[0], size, &h), name)
        fields = dict(version=(h.major, h.minor), capabilities=h.capabilities, session_id=h.session_id,
                      seq=h.seq, max_message=h.max_message, max_batch=h.max_batch,
                      heartbeat_ms=h.heartbeat_ms, window=h.window, reply_seq=h.reply_seq)
        found = fastmsg_auth_ext_find(&frame[0], h.ext_len, &key_id, hello_nonce)
        if found < 0:
            _check(-found, name)
        if found:
            fields["auth"] = (key_id, (<const char *>hello_nonce)[:FASTMSG_AUTH_NONCE])
        return name, fields
    if kind == FASTMSG_CHALLENGE:
        _check(fastmsg_decode_challenge(&frame[0], size, &nonce, &proof), name)
        return name, dict(nonce=(<const char *>nonce)[:FASTMSG_AUTH_NONCE],
                          proof=(<const char *>proof)[:FASTMSG_AUTH_PROOF])
    if kind == FASTMSG_AUTH:
        _check(fastmsg_decode_auth(&frame[0], size, &proof), name)
        return name, dict(proof=(<const char *>proof)[:FASTMSG_AUTH_PROOF])
    if kind == FASTMSG_DATA or kind == FASTMSG_REPLY:
        _check(fastmsg_decode_data(&frame[0], size, &lim, &count, &first_seq), name)
        if kind == FASTMSG_REPLY:
            return name, dict(first_seq=first_seq, replies=[_tagged(p) for _, p in _records(frame)])
        return name, dict(first_seq=first_seq,
                          messages=[_tagged(p) if flags else p for flags, p in _records(frame)])
    if kind == FASTMSG_ERROR:
        _check(fastmsg_decode_error(&frame[0], size, &code, &text, &text_len), name)
        return name, dict(code=code, text=(<const char *>text)[:text_len].decode(errors="replace"))
    _check(fastmsg_decode_control(&frame[0], size, &value), name)
    return name, dict(value=value)
