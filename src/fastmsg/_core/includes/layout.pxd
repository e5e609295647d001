# Declarations of csrc/wire/layout.h: every byte layout the C core and Cython share (frames, the
# DATA header, the records that hold a pointer). Use these names instead of offsets of your own.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "wire/layout.h" nogil:
    enum:
        FASTMSG_FRAME_HDR       # frame header = record header: body length, kind
        FASTMSG_DATA_HDR        # DATA body bytes before the records (16)
        FASTMSG_DATA_FRAME_HDR  # DATA frame bytes before the records (24)
        FASTMSG_DATA_CRC_OFF    # offsets in a DATA body
        FASTMSG_DATA_SKIP_OFF
        FASTMSG_DATA_COUNT_OFF
        FASTMSG_DATA_SEQ_OFF
        FM_POINTER_REC_LEN      # payload of an FM_REC_EXTERNAL record or FM_RX_EXTERNAL marker (16)

    # A frame's kind; in a connection ring, the flags of the record that holds the frame.
    ctypedef enum fastmsg_frame_kind:
        FASTMSG_HELLO
        FASTMSG_WELCOME
        FASTMSG_DATA
        FASTMSG_ACK
        FASTMSG_PING
        FASTMSG_PONG
        FASTMSG_CLOSE
        FASTMSG_ERROR
        FASTMSG_REPLY           # replies to requests (DATA's layout), receiver -> sender
        FASTMSG_RACK            # acknowledges replies (ACK's layout), sender -> receiver
        FASTMSG_CHALLENGE       # authentication: the receiver's nonce and proof
        FASTMSG_AUTH            # authentication: the sender's proof

    const uint32_t FASTMSG_REC_REQUEST  # DATA record flag: payload = 8-byte request id + the request
    const uint32_t FASTMSG_REQUEST_ID_LEN
    const uint32_t FM_REC_EXTERNAL  # sender ring: {pointer, length} of a payload outside the ring
    const uint32_t FM_RX_EXTERNAL   # connection ring: {pointer, size} of a whole big DATA frame

    uint8_t *fastmsg_frame_body(uint8_t *frame)
    uint64_t fastmsg_load_le64(const void *p)   # (base/common.h, through layout.h)
    void fastmsg_store_le64(void *p, uint64_t v)

    # DATA, from its body (a connection ring record's payload, or a big frame + FASTMSG_FRAME_HDR)
    void fastmsg_data_put_crc(uint8_t *body, uint32_t crc)
    uint32_t fastmsg_data_skip(const uint8_t *body)     # records to skip (arrived before)
    void fastmsg_data_put_skip(uint8_t *body, uint32_t skip)
    uint32_t fastmsg_data_count(const uint8_t *body)
    uint64_t fastmsg_data_first_seq(const uint8_t *body)
    const uint8_t *fastmsg_data_records(const uint8_t *body)
    void fastmsg_data_put_header(uint8_t *hdr, uint32_t records_len, uint32_t count, uint64_t first_seq)
    void fastmsg_batch_put_header(uint8_t *hdr, uint32_t kind, uint32_t records_len, uint32_t count,
                                  uint64_t first_seq)

    # records that hold a pointer (in-process only), from their payload
    void fm_pointer_rec_put(uint8_t *payload, const void *ptr, uint64_t size)
    void *fm_pointer_rec_ptr(const uint8_t *payload)
    uint64_t fm_pointer_rec_size(const uint8_t *payload)
    uint8_t *fm_marker_take(uint8_t *payload)   # the big frame; clears the pointer in the ring
