/* Wire protocol v3: frame layouts, encoders and validating decoders (docs/protocol.md).
 *
 * A frame is a ring record: an 8-byte header (uint32 LE body length, uint32 LE kind), the body,
 * zero bytes up to a multiple of 8. Every frame carries a CRC32C of its header and body (all but
 * the CRC field itself). Decoders check every length against the limits before the caller
 * allocates or waits for a body, then the CRC before any field is believed, and return a
 * fastmsg_proto_error code, never crash.
 *
 * Control frame bodies (offsets in the body; DATA's is in layout.h):
 *
 *   HELLO, WELCOME  0 magic (8)   8 major (2)   10 minor (2)   12 capabilities (4)
 *                   16 session_id (8)   24 seq (8)   32 max_message (4)   36 max_batch (4)
 *                   40 heartbeat_ms (4)   44 ext_len (4)   48 crc32c (4)   52 window (4)
 *                   56 reply_seq (8)   64 extensions (ext_len bytes)
 *   REPLY           DATA's layout; each record's payload is a request id (8) and the reply
 *   ACK, PING, PONG, CLOSE, RACK   0 crc32c (4)   4 reserved, 0 (4)   8 value (8)
 *   ERROR           0 crc32c (4)   4 code (4)   8 text_len (4)   12 text (text_len bytes)
 *
 * HELLO's CRC follows its fixed fields rather than leading the body: the magic and the version
 * come first in every version, so that a foreign or older peer is told which one it failed on. */
#ifndef FASTMSG_PROTOCOL_H
#define FASTMSG_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "wire/layout.h"

#define FASTMSG_PROTO_MAJOR 3
#define FASTMSG_PROTO_MINOR 1 /* 1: authentication (CHALLENGE, AUTH, the HELLO extension) */
#define FASTMSG_HELLO_PREFIX 12u    /* magic, major, minor: the start of a HELLO in any version */
#define FASTMSG_HELLO_BODY 64u      /* HELLO and WELCOME, before extensions */
#define FASTMSG_HELLO_CRC_OFF 48u   /* their CRC32C, in the body */
#define FASTMSG_HELLO_MAX_EXT (4096u - FASTMSG_HELLO_BODY) /* a handshake body fits in 4 KiB */
#define FASTMSG_CONTROL_BODY 16u    /* ACK, PING, PONG, CLOSE, RACK */
#define FASTMSG_ERROR_HDR 12u       /* ERROR's body before its text */
#define FASTMSG_ERROR_MAX_TEXT 1024u
#define FASTMSG_ERROR_FRAME_MAX (FASTMSG_FRAME_HDR + ((FASTMSG_ERROR_HDR + FASTMSG_ERROR_MAX_TEXT + 7u) & ~7u))
/* The largest payload a message record can describe; DATA bodies stay below 2**32 bytes too. */
#define FASTMSG_MESSAGE_LIMIT (UINT32_MAX - FASTMSG_DATA_HDR - 2 * FASTMSG_FRAME_HDR - 7u)

extern const uint8_t fastmsg_proto_magic[8];

/* Why a frame was refused; also the code carried by an ERROR frame. 0 is success. */
typedef enum {
    FASTMSG_PERR_OK = 0,
    FASTMSG_PERR_MALFORMED = 1,   /* a length, count or reserved field that breaks the layout */
    FASTMSG_PERR_BAD_KIND = 2,    /* unknown frame kind, or one not allowed at this point */
    FASTMSG_PERR_BAD_MAGIC = 3,   /* the peer does not speak fastmsg */
    FASTMSG_PERR_VERSION = 4,     /* a major version this side does not speak */
    FASTMSG_PERR_TOO_LARGE = 5,   /* a frame or message over the negotiated maximum */
    FASTMSG_PERR_CRC = 6,         /* a frame whose CRC32C does not match */
    FASTMSG_PERR_SEQUENCE = 7,    /* a DATA batch that does not continue the sequence */
    FASTMSG_PERR_SHUTDOWN = 8,    /* the peer is closing */
    FASTMSG_PERR_LIMIT = 9,       /* a resource limit, e.g. too many connections */
    FASTMSG_PERR_AUTH = 10,       /* authentication failed: no key, an unknown key, a wrong proof */
    FASTMSG_PERR_NOT_ALLOWED = 11, /* the receiver's allow list refuses this peer */
    FASTMSG_PERR_COUNT_
} fastmsg_proto_error;

const char *fastmsg_proto_strerror(int code);

/* HELLO (sender -> receiver) and WELCOME (the answer) share a layout. */
typedef struct {
    uint16_t major, minor;
    uint32_t capabilities;     /* FASTMSG_CAP_* bits */
    uint64_t session_id;       /* the sender's random session; echoed in WELCOME */
    uint64_t seq;              /* HELLO: next sequence to send; WELCOME: first one not yet delivered */
    uint32_t max_message;      /* largest message payload this side sends (HELLO) / accepts (WELCOME) */
    uint32_t max_batch;        /* largest DATA record bytes this side sends / accepts */
    uint32_t heartbeat_ms;     /* PING interval this side uses; 0 = none */
    uint32_t ext_len;          /* extension bytes after the fixed body (none sent yet) */
    uint32_t window;           /* HELLO: bytes the sender holds unacknowledged at most (its ring),
                                * so that the receiver acknowledges before it fills; WELCOME: 0 */
    uint64_t reply_seq;        /* HELLO: the next reply sequence number the sender expects (every
                                * reply below it arrived); WELCOME: 0 */
} fastmsg_hello;

#define FASTMSG_CAP_ACK 1u       /* the sender wants cumulative ACKs */
#define FASTMSG_CAP_HEARTBEAT 2u /* PING/PONG are in use */
#define FASTMSG_CAP_REPLIES 4u   /* requests (DATA records flagged REQUEST) and REPLY/RACK frames */
#define FASTMSG_CAP_AUTH 8u      /* the sender holds a key: CHALLENGE and AUTH frames (wire/auth.h) */

/* What a side accepts; checked before any allocation. */
typedef struct {
    uint32_t max_message; /* payload bytes of one message */
    uint32_t max_batch;   /* record bytes of one DATA body (a single message may exceed it) */
    uint32_t record_flags; /* DATA record flags allowed besides 0: FASTMSG_REC_REQUEST once
                            * REPLIES was granted */
} fastmsg_limits;

/* Validates a frame header for the given limits; sets *kind and *body_len (unpadded). The whole
 * frame is fastmsg_frame_size(*body_len) bytes. */
int fastmsg_frame_check(const uint8_t hdr[8], const fastmsg_limits *lim, uint32_t *kind, uint32_t *body_len);

static inline uint64_t fastmsg_frame_size(uint32_t body_len) {
    return FASTMSG_FRAME_HDR + (((uint64_t)body_len + 7u) & ~(uint64_t)7u);
}

/* Encoders write a whole frame to `out`, its CRC32C included, and return its size. */
size_t fastmsg_encode_hello(uint8_t *out, uint32_t kind, const fastmsg_hello *h);
/* The same with `ext_len` bytes of extensions (a multiple of 8, at most FASTMSG_HELLO_MAX_EXT). */
size_t fastmsg_encode_hello_ext(uint8_t *out, uint32_t kind, const fastmsg_hello *h, const uint8_t *ext,
                                uint32_t ext_len);
size_t fastmsg_encode_control(uint8_t out[24], uint32_t kind, uint64_t value);
size_t fastmsg_encode_error(uint8_t *out, uint32_t code, const char *text, size_t text_len);

/* The 24 bytes that open a DATA frame whose records (`records_len` bytes, `count` of them) follow
 * in the same stream. Returns the CRC32C of the bytes the batch CRC covers so far (the frame
 * header, count and first_seq); the caller continues it over the records, wherever they lie,
 * and stores the result with fastmsg_data_set_crc. */
uint32_t fastmsg_data_open(uint8_t out[24], uint32_t records_len, uint32_t count, uint64_t first_seq);
/* The same for a DATA or REPLY frame (`kind`). */
uint32_t fastmsg_batch_open(uint8_t out[24], uint32_t kind, uint32_t records_len, uint32_t count, uint64_t first_seq);
void fastmsg_data_set_crc(uint8_t hdr[24], uint32_t crc);

/* Decoders take a whole frame (header included, `size` bytes from fastmsg_frame_size). A frame
 * whose CRC32C does not match gives FASTMSG_PERR_CRC, and none of its fields. */
int fastmsg_decode_hello(const uint8_t *frame, size_t size, fastmsg_hello *out);
int fastmsg_decode_control(const uint8_t *frame, size_t size, uint64_t *value);
int fastmsg_decode_error(const uint8_t *frame, size_t size, uint32_t *code, const uint8_t **text, uint32_t *text_len);
/* For frames of a fixed body that opens with the CRC and a reserved word (ACK's layout, and the
 * authentication frames of wire/auth.c): the checks, and the CRC stored into a whole frame. */
int fastmsg_decode_fixed(const uint8_t *frame, size_t size, uint32_t kind, uint32_t body);
void fastmsg_seal_fixed(uint8_t *frame);

/* What a checked DATA frame holds; its records start at frame + FASTMSG_DATA_FRAME_HDR. */
typedef struct {
    uint32_t count;
    uint64_t first_seq;
    uint64_t payload_bytes; /* of all its records */
} fastmsg_data_info;

/* Checks a DATA or REPLY frame: the CRC, then that its records exactly fill the body, their
 * count, their flags (DATA: 0, or REQUEST where lim->record_flags allows it; REPLY: 0), that a
 * request or reply holds its 8-byte id, and the message limit, in one walk over the records. */
int fastmsg_check_data(const uint8_t *frame, size_t size, const fastmsg_limits *lim, fastmsg_data_info *info);
/* The same, for callers that need only the count and first sequence number. */
int fastmsg_decode_data(const uint8_t *frame, size_t size, const fastmsg_limits *lim, uint32_t *count,
                        uint64_t *first_seq);

#endif
