/* Wire protocol v3: encoders and validating decoders. Layouts: docs/protocol.md, protocol.h. */
#include "wire/protocol.h"

#include "wire/auth.h"

#include <string.h>

#include "crc32c/crc32c.h"
#include "base/common.h"

const uint8_t fastmsg_proto_magic[8] = {'F', 'M', 'S', 'G', '\r', '\n', 0x1a, '\n'};

static const char *const error_text[FASTMSG_PERR_COUNT_] = {
    [FASTMSG_PERR_OK] = "no error",
    [FASTMSG_PERR_MALFORMED] = "malformed frame",
    [FASTMSG_PERR_BAD_KIND] = "unexpected frame kind",
    [FASTMSG_PERR_BAD_MAGIC] = "not a fastmsg peer (bad magic)",
    [FASTMSG_PERR_VERSION] = "unsupported protocol version",
    [FASTMSG_PERR_TOO_LARGE] = "frame or message larger than the negotiated maximum",
    [FASTMSG_PERR_CRC] = "CRC32C mismatch",
    [FASTMSG_PERR_SEQUENCE] = "DATA batch out of sequence",
    [FASTMSG_PERR_SHUTDOWN] = "peer is shutting down",
    [FASTMSG_PERR_LIMIT] = "resource limit reached",
    [FASTMSG_PERR_AUTH] = "authentication failed",
    [FASTMSG_PERR_NOT_ALLOWED] = "peer not allowed",
};

const char *fastmsg_proto_strerror(int code) {
    return (code >= 0 && code < FASTMSG_PERR_COUNT_) ? error_text[code] : "unknown error";
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static int all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

int fastmsg_frame_check(const uint8_t hdr[8], const fastmsg_limits *lim, uint32_t *kind, uint32_t *body_len) {
    uint32_t len = fastmsg_rec_len(hdr), k = fastmsg_rec_flags(hdr);
    *kind = k;
    *body_len = len;
    switch (k) {
    case FASTMSG_HELLO:
    case FASTMSG_WELCOME:
        /* From the version prefix up: another version's HELLO is told its version is refused. */
        if (len < FASTMSG_HELLO_PREFIX || len > FASTMSG_HELLO_BODY + FASTMSG_HELLO_MAX_EXT)
            return FASTMSG_PERR_MALFORMED;
        return FASTMSG_PERR_OK;
    case FASTMSG_DATA:
    case FASTMSG_REPLY: {
        /* A batch holds many messages up to max_batch bytes, or one message of any allowed size. */
        uint64_t one = fastmsg_frame_size(lim->max_message);
        uint64_t most = lim->max_batch > one ? lim->max_batch : one;
        if (len < FASTMSG_DATA_HDR + FASTMSG_FRAME_HDR || len % 8) return FASTMSG_PERR_MALFORMED;
        if (len - FASTMSG_DATA_HDR > most) return FASTMSG_PERR_TOO_LARGE;
        return FASTMSG_PERR_OK;
    }
    case FASTMSG_ACK:
    case FASTMSG_PING:
    case FASTMSG_PONG:
    case FASTMSG_CLOSE:
    case FASTMSG_RACK:
        return len == FASTMSG_CONTROL_BODY ? FASTMSG_PERR_OK : FASTMSG_PERR_MALFORMED;
    case FASTMSG_CHALLENGE:
        return len == FASTMSG_CHALLENGE_BODY ? FASTMSG_PERR_OK : FASTMSG_PERR_MALFORMED;
    case FASTMSG_AUTH:
        return len == FASTMSG_AUTH_BODY ? FASTMSG_PERR_OK : FASTMSG_PERR_MALFORMED;
    case FASTMSG_ERROR:
        return (len >= FASTMSG_ERROR_HDR && len <= FASTMSG_ERROR_HDR + FASTMSG_ERROR_MAX_TEXT) ? FASTMSG_PERR_OK
                                                                                              : FASTMSG_PERR_MALFORMED;
    default:
        return FASTMSG_PERR_BAD_KIND;
    }
}

/* ---- the CRC32C every frame carries ----
 *
 * It covers the frame header and the body, all but its own 4-byte field, which leads the body of
 * every frame but HELLO and WELCOME (theirs follows their fixed fields: the magic comes first). Padding after the body is not covered:
 * decoders check that it is zero instead. */

static size_t crc_field(uint32_t kind) {
    return FASTMSG_FRAME_HDR + (kind == FASTMSG_HELLO || kind == FASTMSG_WELCOME ? FASTMSG_HELLO_CRC_OFF : 0u);
}

/* The CRC of frame bytes [0, end) but the field at `at`. */
static uint32_t crc_around(const uint8_t *frame, size_t at, size_t end) {
    return fastmsg_crc32c(fastmsg_crc32c(0, frame, at), frame + at + 4, end - at - 4);
}

static uint32_t frame_crc(const uint8_t *frame) {
    return crc_around(frame, crc_field(fastmsg_rec_flags(frame)), FASTMSG_FRAME_HDR + fastmsg_rec_len(frame));
}

/* Stores the CRC of a whole frame written with a zero CRC field. */
static void seal(uint8_t *frame) { fastmsg_store_le32(frame + crc_field(fastmsg_rec_flags(frame)), frame_crc(frame)); }

/* Checks the CRC of a whole frame whose body is long enough to hold the field. */
static int crc_check(const uint8_t *frame) {
    uint32_t stored = fastmsg_load_le32(frame + crc_field(fastmsg_rec_flags(frame)));
    return stored == frame_crc(frame) ? FASTMSG_PERR_OK : FASTMSG_PERR_CRC;
}

size_t fastmsg_encode_hello(uint8_t *out, uint32_t kind, const fastmsg_hello *h) {
    return fastmsg_encode_hello_ext(out, kind, h, NULL, 0);
}

size_t fastmsg_encode_hello_ext(uint8_t *out, uint32_t kind, const fastmsg_hello *h, const uint8_t *ext,
                                uint32_t ext_len) {
    uint8_t *b = out + FASTMSG_FRAME_HDR;
    fastmsg_rec_put_hdr(out, FASTMSG_HELLO_BODY + ext_len, kind);
    memcpy(b, fastmsg_proto_magic, 8);
    b[8] = (uint8_t)h->major;
    b[9] = (uint8_t)(h->major >> 8);
    b[10] = (uint8_t)h->minor;
    b[11] = (uint8_t)(h->minor >> 8);
    fastmsg_store_le32(b + 12, h->capabilities);
    fastmsg_store_le64(b + 16, h->session_id);
    fastmsg_store_le64(b + 24, h->seq);
    fastmsg_store_le32(b + 32, h->max_message);
    fastmsg_store_le32(b + 36, h->max_batch);
    fastmsg_store_le32(b + 40, h->heartbeat_ms);
    fastmsg_store_le32(b + 44, ext_len);
    if (ext_len) memcpy(b + FASTMSG_HELLO_BODY, ext, ext_len);
    fastmsg_store_le32(b + FASTMSG_HELLO_CRC_OFF, 0); /* the CRC, sealed below */
    fastmsg_store_le32(b + FASTMSG_HELLO_CRC_OFF + 4, kind == FASTMSG_HELLO ? h->window : 0);
    fastmsg_store_le64(b + FASTMSG_HELLO_CRC_OFF + 8, kind == FASTMSG_HELLO ? h->reply_seq : 0);
    seal(out);
    return FASTMSG_FRAME_HDR + FASTMSG_HELLO_BODY + ext_len;
}

size_t fastmsg_encode_control(uint8_t out[24], uint32_t kind, uint64_t value) {
    fastmsg_rec_put_hdr(out, FASTMSG_CONTROL_BODY, kind);
    fastmsg_store_le64(out + 8, 0); /* the CRC, then the reserved word */
    fastmsg_store_le64(out + 16, value);
    seal(out);
    return FASTMSG_FRAME_HDR + FASTMSG_CONTROL_BODY;
}

size_t fastmsg_encode_error(uint8_t *out, uint32_t code, const char *text, size_t text_len) {
    if (text_len > FASTMSG_ERROR_MAX_TEXT) text_len = FASTMSG_ERROR_MAX_TEXT;
    uint32_t len = (uint32_t)(FASTMSG_ERROR_HDR + text_len);
    size_t size = (size_t)fastmsg_frame_size(len), text_at = FASTMSG_FRAME_HDR + FASTMSG_ERROR_HDR;
    fastmsg_rec_put_hdr(out, len, FASTMSG_ERROR);
    fastmsg_store_le32(out + 8, 0); /* the CRC */
    fastmsg_store_le32(out + 12, code);
    fastmsg_store_le32(out + 16, (uint32_t)text_len);
    memcpy(out + text_at, text, text_len);
    memset(out + text_at + text_len, 0, size - text_at - text_len);
    seal(out);
    return size;
}

uint32_t fastmsg_batch_open(uint8_t out[24], uint32_t kind, uint32_t records_len, uint32_t count, uint64_t first_seq) {
    fastmsg_batch_put_header(out, kind, records_len, count, first_seq);
    return crc_around(out, crc_field(kind), FASTMSG_DATA_FRAME_HDR);
}

uint32_t fastmsg_data_open(uint8_t out[24], uint32_t records_len, uint32_t count, uint64_t first_seq) {
    return fastmsg_batch_open(out, FASTMSG_DATA, records_len, count, first_seq);
}

void fastmsg_data_set_crc(uint8_t hdr[24], uint32_t crc) { fastmsg_data_put_crc(fastmsg_frame_body(hdr), crc); }

static int check_frame(const uint8_t *frame, size_t size, uint32_t kind, uint32_t *body_len) {
    if (size < FASTMSG_FRAME_HDR) return FASTMSG_PERR_MALFORMED;
    uint32_t len = fastmsg_rec_len(frame), k = fastmsg_rec_flags(frame);
    if (k != kind) return FASTMSG_PERR_BAD_KIND;
    if (fastmsg_frame_size(len) != size) return FASTMSG_PERR_MALFORMED;
    /* padding after the body must be zero: nothing unchecked travels on the wire */
    if (!all_zero(frame + FASTMSG_FRAME_HDR + len, size - FASTMSG_FRAME_HDR - len)) return FASTMSG_PERR_MALFORMED;
    *body_len = len;
    return FASTMSG_PERR_OK;
}

int fastmsg_decode_hello(const uint8_t *frame, size_t size, fastmsg_hello *out) {
    uint32_t len;
    if (size < FASTMSG_FRAME_HDR) return FASTMSG_PERR_MALFORMED;
    uint32_t kind = fastmsg_rec_flags(frame);
    if (kind != FASTMSG_HELLO && kind != FASTMSG_WELCOME) return FASTMSG_PERR_BAD_KIND;
    int rc = check_frame(frame, size, kind, &len);
    if (rc) return rc;
    if (len < FASTMSG_HELLO_PREFIX) return FASTMSG_PERR_MALFORMED;
    /* Magic and version first: what follows them, the CRC's place included, is the version's. */
    const uint8_t *b = frame + FASTMSG_FRAME_HDR;
    if (memcmp(b, fastmsg_proto_magic, 8) != 0) return FASTMSG_PERR_BAD_MAGIC;
    out->major = get16(b + 8);
    out->minor = get16(b + 10);
    if (out->major != FASTMSG_PROTO_MAJOR) return FASTMSG_PERR_VERSION;
    if (len < FASTMSG_HELLO_BODY) return FASTMSG_PERR_MALFORMED;
    if ((rc = crc_check(frame))) return rc;
    out->window = fastmsg_load_le32(b + FASTMSG_HELLO_CRC_OFF + 4);
    out->reply_seq = fastmsg_load_le64(b + FASTMSG_HELLO_CRC_OFF + 8);
    if (kind == FASTMSG_WELCOME && (out->window != 0 || out->reply_seq != 0))
        return FASTMSG_PERR_MALFORMED; /* reserved there */
    out->capabilities = fastmsg_load_le32(b + 12);
    out->session_id = fastmsg_load_le64(b + 16);
    out->seq = fastmsg_load_le64(b + 24);
    out->max_message = fastmsg_load_le32(b + 32);
    out->max_batch = fastmsg_load_le32(b + 36);
    out->heartbeat_ms = fastmsg_load_le32(b + 40);
    out->ext_len = fastmsg_load_le32(b + 44);
    /* Extensions are skipped, but their declared length must match the frame. */
    if (out->ext_len != len - FASTMSG_HELLO_BODY) return FASTMSG_PERR_MALFORMED;
    if (out->session_id == 0) return FASTMSG_PERR_MALFORMED;
    return FASTMSG_PERR_OK;
}

/* A frame of a fixed body that opens with its CRC and a reserved word (ACK's layout and the
 * authentication frames): kind, size, zero padding, CRC, then the reserved word. */
int fastmsg_decode_fixed(const uint8_t *frame, size_t size, uint32_t kind, uint32_t body) {
    uint32_t len;
    if (size != fastmsg_frame_size(body)) return FASTMSG_PERR_MALFORMED;
    int rc = check_frame(frame, size, kind, &len);
    if (rc) return rc;
    if (len != body) return FASTMSG_PERR_MALFORMED;
    if ((rc = crc_check(frame))) return rc;
    if (fastmsg_load_le32(frame + 12) != 0) return FASTMSG_PERR_MALFORMED; /* reserved */
    return FASTMSG_PERR_OK;
}

void fastmsg_seal_fixed(uint8_t *frame) { seal(frame); }

int fastmsg_decode_control(const uint8_t *frame, size_t size, uint64_t *value) {
    if (size != FASTMSG_FRAME_HDR + FASTMSG_CONTROL_BODY) return FASTMSG_PERR_MALFORMED;
    uint32_t kind = fastmsg_rec_flags(frame);
    if (kind != FASTMSG_ACK && kind != FASTMSG_PING && kind != FASTMSG_PONG && kind != FASTMSG_CLOSE &&
        kind != FASTMSG_RACK)
        return FASTMSG_PERR_BAD_KIND;
    int rc = fastmsg_decode_fixed(frame, size, kind, FASTMSG_CONTROL_BODY);
    if (rc) return rc;
    *value = fastmsg_load_le64(frame + 16);
    return FASTMSG_PERR_OK;
}

int fastmsg_decode_error(const uint8_t *frame, size_t size, uint32_t *code, const uint8_t **text, uint32_t *text_len) {
    uint32_t len;
    int rc = check_frame(frame, size, FASTMSG_ERROR, &len);
    if (rc) return rc;
    if (len < FASTMSG_ERROR_HDR || len > FASTMSG_ERROR_HDR + FASTMSG_ERROR_MAX_TEXT) return FASTMSG_PERR_MALFORMED;
    if ((rc = crc_check(frame))) return rc;
    *code = fastmsg_load_le32(frame + 12);
    *text_len = fastmsg_load_le32(frame + 16);
    if (*text_len != len - FASTMSG_ERROR_HDR) return FASTMSG_PERR_MALFORMED;
    *text = frame + FASTMSG_FRAME_HDR + FASTMSG_ERROR_HDR;
    return FASTMSG_PERR_OK;
}

int fastmsg_check_data(const uint8_t *frame, size_t size, const fastmsg_limits *lim, fastmsg_data_info *info) {
    uint32_t len, kind;
    if (size < FASTMSG_FRAME_HDR) return FASTMSG_PERR_MALFORMED;
    int rc = fastmsg_frame_check(frame, lim, &kind, &len);
    if (rc) return rc;
    if (kind != FASTMSG_DATA && kind != FASTMSG_REPLY) return FASTMSG_PERR_BAD_KIND;
    /* A DATA record may be a request where replies were granted; every REPLY record is a reply. */
    uint32_t allowed = kind == FASTMSG_DATA ? (lim->record_flags & FASTMSG_REC_REQUEST) : 0;
    int all_tagged = kind == FASTMSG_REPLY;
    if (fastmsg_frame_size(len) != size) return FASTMSG_PERR_MALFORMED;
    const uint8_t *body = frame + FASTMSG_FRAME_HDR;
    if ((rc = crc_check(frame))) return rc;
    info->count = fastmsg_data_count(body);
    info->first_seq = fastmsg_data_first_seq(body);
    /* Walk the records: they must fill the body exactly and match the count. */
    const uint8_t *p = fastmsg_data_records(body), *end = frame + size;
    uint64_t n = 0, bytes = 0;
    while (p < end) {
        if ((size_t)(end - p) < FASTMSG_FRAME_HDR) return FASTMSG_PERR_MALFORMED;
        uint32_t msg_len = fastmsg_rec_len(p), flags = fastmsg_rec_flags(p);
        if (flags & ~allowed) return FASTMSG_PERR_MALFORMED;
        if ((all_tagged || flags) && msg_len < FASTMSG_REQUEST_ID_LEN) return FASTMSG_PERR_MALFORMED; /* no id */
        if (msg_len > lim->max_message) return FASTMSG_PERR_TOO_LARGE;
        uint64_t slot = fastmsg_frame_size(msg_len);
        if (slot > (uint64_t)(end - p)) return FASTMSG_PERR_MALFORMED;
        if (!all_zero(p + FASTMSG_FRAME_HDR + msg_len, (size_t)(slot - FASTMSG_FRAME_HDR - msg_len)))
            return FASTMSG_PERR_MALFORMED;
        p += slot;
        bytes += msg_len;
        n++;
    }
    if (n != info->count || n == 0) return FASTMSG_PERR_MALFORMED;
    info->payload_bytes = bytes;
    return FASTMSG_PERR_OK;
}

int fastmsg_decode_data(const uint8_t *frame, size_t size, const fastmsg_limits *lim, uint32_t *count,
                        uint64_t *first_seq) {
    fastmsg_data_info info;
    int rc = fastmsg_check_data(frame, size, lim, &info);
    if (rc == FASTMSG_PERR_OK) {
        *count = info.count;
        *first_seq = info.first_seq;
    }
    return rc;
}
