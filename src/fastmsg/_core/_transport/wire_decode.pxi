# The DATA frame as the consumer reads it (docs/protocol.md), in one place.
#
# In a connection ring a frame is a record whose flags word is its kind (FASTMSG_DATA), and its
# payload is the frame's body. A frame too large for the ring lies in its own allocation, whole
# (frame header first), behind an FM_RX_EXTERNAL marker record. The body:
#
#   offset  size
#   0       4     CRC32C on the wire; once the frame is checked, the I/O thread writes here how
#                 many of its leading records arrived twice (to be skipped)
#   4       4     number of message records
#   8       8     sequence number of the first
#   16            the message records, each: length L (u32), flags (u32), payload, zero padding
#                 to a multiple of 8 (fastmsg_ring_slot(L) bytes in all)
#
# All integers are little-endian. Every accessor is inline: this is the receive hot path.

cdef inline uint32_t _le32(const uint8_t *p) noexcept:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline bint _is_data(uint32_t kind) noexcept:
    """A ring record that carries a DATA frame (in place, or a big one's marker)."""
    return kind == FASTMSG_DATA or kind == FM_RX_EXTERNAL


cdef inline const uint8_t *_big_frame_body(const uint8_t *frame) noexcept:
    return frame + FASTMSG_FRAME_HDR


cdef inline uint32_t _data_skip(const uint8_t *body) noexcept:
    return _le32(body)


cdef inline uint32_t _data_count(const uint8_t *body) noexcept:
    return _le32(body + 4)


cdef inline const uint8_t *_data_records(const uint8_t *body) noexcept:
    return body + FASTMSG_DATA_HDR


cdef inline uint32_t _msg_length(const uint8_t *rec) noexcept:
    return _le32(rec)


cdef inline const uint8_t *_msg_payload(const uint8_t *rec) noexcept:
    return rec + FASTMSG_REC_HDR
