/* Every byte layout that the C core and Cython share: frames on the wire, the DATA header, and the
 * records the engine and Python hand each other through rings. Writers and readers on both sides
 * use these names (includes/layout.pxd declares them for Cython) rather than offsets of their own.
 * The wire bytes are defined in docs/protocol.md; the rings in docs/architecture.md.
 *
 * A frame has the layout of a ring record: the frame header is a record header (ring.h:
 * fastmsg_rec_len = body length, fastmsg_rec_flags = frame kind), so a connection ring holds
 * frames as records and a sender's ring slice goes on the wire as DATA records unchanged. */
#ifndef FASTMSG_LAYOUT_H
#define FASTMSG_LAYOUT_H

#include <stdint.h>
#include <string.h>

#include "base/common.h"
#include "ring/ring.h"

/* ---- frames ---- */

#define FASTMSG_FRAME_HDR 8u /* uint32 LE body length, uint32 LE kind: a record header */

/* A frame's kind, in its header; in a connection ring, the flags of the record that holds it. */
typedef enum {
    FASTMSG_HELLO = 1,
    FASTMSG_WELCOME = 2,
    FASTMSG_DATA = 3,
    FASTMSG_ACK = 4,
    FASTMSG_PING = 5,
    FASTMSG_PONG = 6,
    FASTMSG_CLOSE = 7,
    FASTMSG_ERROR = 8,
    FASTMSG_REPLY = 9, /* replies to requests, receiver -> sender: DATA's layout */
    FASTMSG_RACK = 10, /* acknowledges replies, sender -> receiver: ACK's layout */
    FASTMSG_CHALLENGE = 11, /* authentication: the receiver's nonce and proof (wire/auth.h) */
    FASTMSG_AUTH = 12,      /* authentication: the sender's proof (wire/auth.h) */
} fastmsg_frame_kind;

/* The one record flag on the wire: a DATA record that is a request, its payload an 8-byte
 * request id then the application's bytes (docs/protocol.md, "Requests and replies"). */
#define FASTMSG_REC_REQUEST 1u
#define FASTMSG_REQUEST_ID_LEN 8u

static inline uint8_t *fastmsg_frame_body(uint8_t *frame) { return frame + FASTMSG_FRAME_HDR; }

/* ---- DATA ----
 *
 * frame offset  body offset  size  field
 * 0             -            8     frame header: body length, FASTMSG_DATA
 * 8             0            4     CRC32C of the frame but this field; once the receiver has
 *                                  checked it, the number of records the consumer must skip
 *                                  (they arrived before, in a batch resent after a reconnect)
 * 12            4            4     record count
 * 16            8            8     sequence number of the first record
 * 24            16           ...   records, in ring layout (flags 0 on the wire) */

#define FASTMSG_DATA_HDR 16u                                         /* body bytes before the records */
#define FASTMSG_DATA_FRAME_HDR (FASTMSG_FRAME_HDR + FASTMSG_DATA_HDR) /* 24: frame bytes before them */
#define FASTMSG_DATA_CRC_OFF 0u                                      /* offsets in the body */
#define FASTMSG_DATA_SKIP_OFF 0u
#define FASTMSG_DATA_COUNT_OFF 4u
#define FASTMSG_DATA_SEQ_OFF 8u

static inline void fastmsg_data_put_crc(uint8_t *body, uint32_t crc) { fastmsg_store_le32(body + FASTMSG_DATA_CRC_OFF, crc); }
static inline uint32_t fastmsg_data_skip(const uint8_t *body) { return fastmsg_load_le32(body + FASTMSG_DATA_SKIP_OFF); }
static inline void fastmsg_data_put_skip(uint8_t *body, uint32_t skip) { fastmsg_store_le32(body + FASTMSG_DATA_SKIP_OFF, skip); }
static inline uint32_t fastmsg_data_count(const uint8_t *body) { return fastmsg_load_le32(body + FASTMSG_DATA_COUNT_OFF); }
static inline uint64_t fastmsg_data_first_seq(const uint8_t *body) { return fastmsg_load_le64(body + FASTMSG_DATA_SEQ_OFF); }
static inline const uint8_t *fastmsg_data_records(const uint8_t *body) { return body + FASTMSG_DATA_HDR; }

/* Writes the 24 bytes before a DATA (or REPLY, same layout) frame's records, with a zero CRC (the
 * CRC covers the frame but its own field, so it is stored last). */
static inline void fastmsg_batch_put_header(uint8_t hdr[FASTMSG_DATA_FRAME_HDR], uint32_t kind, uint32_t records_len,
                                            uint32_t count, uint64_t first_seq) {
    uint8_t *body = hdr + FASTMSG_FRAME_HDR;
    fastmsg_rec_put_hdr(hdr, FASTMSG_DATA_HDR + records_len, kind);
    fastmsg_data_put_crc(body, 0);
    fastmsg_store_le32(body + FASTMSG_DATA_COUNT_OFF, count);
    fastmsg_store_le64(body + FASTMSG_DATA_SEQ_OFF, first_seq);
}

static inline void fastmsg_data_put_header(uint8_t hdr[FASTMSG_DATA_FRAME_HDR], uint32_t records_len, uint32_t count,
                                           uint64_t first_seq) {
    fastmsg_batch_put_header(hdr, FASTMSG_DATA, records_len, count, first_seq);
}

/* ---- records that hold a pointer (in one process only, never on the wire) ----
 *
 * Both are 16 bytes of payload, {uint64 pointer, uint64 size} in the host's byte order, as the
 * process that writes them is the one that reads them. */
#define FM_POINTER_REC_LEN 16u

/* In a sender's ring, a record flag (beside FASTMSG_REC_PAD): the payload of a large message kept
 * outside the ring, {pointer, length}. The payload belongs to the producer (Python): the engine
 * only reads it, and is done with it once the ring is released past the record. */
#define FM_REC_EXTERNAL 0x40000000u
/* In a sender's ring, a record flag the I/O thread sets on a record it dropped unsent (larger than
 * the receiver accepts): it has no sequence number, so acknowledgements and a resend after a
 * reconnect pass over it. */
#define FM_REC_DROPPED 0x20000000u
/* In a connection ring, a record kind beside the frame kinds: a whole DATA frame too large for
 * the ring, {pointer to its frame header, frame size}, which the consumer takes over and frees. */
#define FM_RX_EXTERNAL 0x100u

static inline void fm_pointer_rec_put(uint8_t *payload, const void *ptr, uint64_t size) {
    uint64_t p = (uint64_t)(uintptr_t)ptr;
    memcpy(payload, &p, 8);
    memcpy(payload + 8, &size, 8);
}

static inline void *fm_pointer_rec_ptr(const uint8_t *payload) {
    uint64_t p;
    memcpy(&p, payload, 8);
    return (void *)(uintptr_t)p;
}

static inline uint64_t fm_pointer_rec_size(const uint8_t *payload) {
    uint64_t size;
    memcpy(&size, payload + 8, 8);
    return size;
}

/* The consumer's side of an FM_RX_EXTERNAL marker: returns the frame and clears the pointer, so
 * that the ring's own clean-up (fm_rxbuf_decref) does not free it too. */
static inline uint8_t *fm_marker_take(uint8_t *payload) {
    uint8_t *frame = (uint8_t *)fm_pointer_rec_ptr(payload);
    memset(payload, 0, 8);
    return frame;
}

#endif
