"""Byte-level pieces shared by the fuzz targets: frame boundaries and CRC sealing.

Written from docs/protocol.md rather than through the encoders, so that a target can repair the
CRC of a frame the fuzzer mutated (and so reach the checks behind the CRC) without decoding it."""

import struct

from fastmsg._core import protocol as proto
from fastmsg._core.crc import crc32c

HEADER = struct.Struct("<II")  # body length, kind
HANDSHAKE_KINDS = (proto.KINDS["HELLO"], proto.KINDS["WELCOME"])
HELLO_CRC_AT = 48  # body offset of HELLO's and WELCOME's CRC; every other frame's is 0


def frame_size(body_len):
    return 8 + ((body_len + 7) & ~7)


def reseal(frame):
    """`frame` (bytes) with the CRC its header and body call for, where the body holds the field;
    unchanged otherwise."""
    if len(frame) < 8:
        return frame
    body_len, kind = HEADER.unpack_from(frame)
    at = 8 + (HELLO_CRC_AT if kind in HANDSHAKE_KINDS else 0)
    end = 8 + body_len
    if at + 4 > end or end > len(frame):
        return frame
    crc = crc32c(frame[at + 4:end], crc32c(frame[:at]))
    return frame[:at] + struct.pack("<I", crc) + frame[at + 4:]


def reseal_stream(data):
    """Every whole frame of a byte stream resealed; a trailing partial frame is kept as it is."""
    whole, rest = split(data)
    return b"".join(map(reseal, whole)) + rest


def split(data):
    """(whole frames, the rest) of a byte stream."""
    frames, pos = [], 0
    while len(data) - pos >= 8:
        size = frame_size(HEADER.unpack_from(data, pos)[0])
        if size > len(data) - pos:
            break
        frames.append(data[pos:pos + size])
        pos += size
    return frames, data[pos:]
