# The DATA frame as the consumer reads it. Its layout is written down once, in csrc/wire/layout.h
# (includes/layout.pxd): this side uses those accessors and adds only what is the consumer's own.
#
# In a connection ring a frame is a record whose flags word is its kind (FASTMSG_DATA), and its
# payload is the frame's body. A frame too large for the ring lies in its own allocation, whole
# (frame header first), behind an FM_RX_EXTERNAL marker record. Once the I/O thread has checked a
# DATA frame, its CRC field holds how many leading records arrived twice (fastmsg_data_skip).


cdef inline bint _is_data(uint32_t kind) noexcept:
    """A ring record that carries a DATA frame (in place, or a big one's marker)."""
    return kind == FASTMSG_DATA or kind == FM_RX_EXTERNAL
