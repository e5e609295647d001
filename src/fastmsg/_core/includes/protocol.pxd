# Declarations of csrc/wire/protocol.h: wire protocol v3 frames (their layouts: layout.pxd).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from fastmsg._core.includes.layout cimport (FASTMSG_ACK, FASTMSG_CLOSE, FASTMSG_DATA, FASTMSG_DATA_HDR, FASTMSG_ERROR,
                                            FASTMSG_FRAME_HDR, FASTMSG_HELLO, FASTMSG_PING, FASTMSG_PONG,
                                            FASTMSG_RACK, FASTMSG_REC_REQUEST, FASTMSG_CHALLENGE, FASTMSG_AUTH, FASTMSG_REPLY,
                                            FASTMSG_REQUEST_ID_LEN, FASTMSG_WELCOME)

cdef extern from "wire/protocol.h" nogil:
    enum:
        FASTMSG_PROTO_MAJOR
        FASTMSG_PROTO_MINOR
        FASTMSG_HELLO_BODY
        FASTMSG_CONTROL_BODY
        FASTMSG_ERROR_MAX_TEXT
        FASTMSG_ERROR_FRAME_MAX
        FASTMSG_PERR_OK
        FASTMSG_PERR_COUNT_
        FASTMSG_CAP_ACK
        FASTMSG_CAP_HEARTBEAT
        FASTMSG_CAP_REPLIES
    uint32_t FASTMSG_MESSAGE_LIMIT

    ctypedef struct fastmsg_hello:
        uint16_t major
        uint16_t minor
        uint32_t capabilities
        uint64_t session_id
        uint64_t seq
        uint32_t max_message
        uint32_t max_batch
        uint32_t heartbeat_ms
        uint32_t ext_len
        uint32_t window
        uint64_t reply_seq

    ctypedef struct fastmsg_limits:
        uint32_t max_message
        uint32_t max_batch
        uint32_t record_flags

    ctypedef struct fastmsg_data_info:
        uint32_t count
        uint64_t first_seq
        uint64_t payload_bytes

    const char *fastmsg_proto_strerror(int code)
    int fastmsg_frame_check(const uint8_t *hdr, const fastmsg_limits *lim, uint32_t *kind, uint32_t *body_len)
    uint64_t fastmsg_frame_size(uint32_t body_len)
    size_t fastmsg_encode_hello(uint8_t *out, uint32_t kind, const fastmsg_hello *h)
    size_t fastmsg_encode_hello_ext(uint8_t *out, uint32_t kind, const fastmsg_hello *h, const uint8_t *ext,
                                    uint32_t ext_len)
    size_t fastmsg_encode_control(uint8_t *out, uint32_t kind, uint64_t value)
    size_t fastmsg_encode_error(uint8_t *out, uint32_t code, const char *text, size_t text_len)
    uint32_t fastmsg_data_open(uint8_t *out, uint32_t records_len, uint32_t count, uint64_t first_seq)
    uint32_t fastmsg_batch_open(uint8_t *out, uint32_t kind, uint32_t records_len, uint32_t count,
                                uint64_t first_seq)
    void fastmsg_data_set_crc(uint8_t *hdr, uint32_t crc)
    int fastmsg_decode_hello(const uint8_t *frame, size_t size, fastmsg_hello *out)
    int fastmsg_decode_control(const uint8_t *frame, size_t size, uint64_t *value)
    int fastmsg_decode_error(const uint8_t *frame, size_t size, uint32_t *code, const uint8_t **text,
                             uint32_t *text_len)
    int fastmsg_check_data(const uint8_t *frame, size_t size, const fastmsg_limits *lim, fastmsg_data_info *info)
    int fastmsg_decode_data(const uint8_t *frame, size_t size, const fastmsg_limits *lim, uint32_t *count,
                            uint64_t *first_seq)

cdef extern from "wire/auth.h" nogil:
    enum:
        FASTMSG_AUTH_NONCE
        FASTMSG_AUTH_PROOF
        FASTMSG_AUTH_EXT_LEN
        FASTMSG_CHALLENGE_BODY
        FASTMSG_AUTH_BODY
        FASTMSG_CAP_AUTH
    void fastmsg_auth_ext_put(uint8_t *out, uint64_t key_id, const uint8_t *nonce)
    int fastmsg_auth_ext_find(const uint8_t *frame, uint32_t ext_len, uint64_t *key_id, uint8_t *nonce)
    size_t fastmsg_encode_challenge(uint8_t *out, const uint8_t *nonce, const uint8_t *proof)
    size_t fastmsg_encode_auth(uint8_t *out, const uint8_t *proof)
    int fastmsg_decode_challenge(const uint8_t *frame, size_t size, const uint8_t **nonce, const uint8_t **proof)
    int fastmsg_decode_auth(const uint8_t *frame, size_t size, const uint8_t **proof)
