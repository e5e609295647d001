/* Wire protocol v1: encoders and validating decoders. Layouts: docs/protocol.md. */
#include "wire/protocol.h"

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
    [FASTMSG_PERR_CRC] = "CRC32C mismatch in a DATA batch",
    [FASTMSG_PERR_SEQUENCE] = "DATA batch out of sequence",
    [FASTMSG_PERR_SHUTDOWN] = "peer is shutting down",
    [FASTMSG_PERR_LIMIT] = "resource limit reached",
    [FASTMSG_PERR_AUTH] = "authentication failed",
};

const char *fastmsg_proto_strerror(int code) {
    return (code >= 0 && code < FASTMSG_PERR_COUNT_) ? error_text[code] : "unknown error";
}

static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get64(const uint8_t *p) { return fastmsg_load_le64(p); }
static uint32_t get32(const uint8_t *p) { return fastmsg_load_le32(p); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static int all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

int fastmsg_frame_check(const uint8_t hdr[8], const fastmsg_limits *lim, uint32_t *kind, uint32_t *body_len) {
    uint32_t len = get32(hdr), k = get32(hdr + 4);
    *kind = k;
    *body_len = len;
    switch (k) {
    case FASTMSG_HELLO:
    case FASTMSG_WELCOME:
        if (len < FASTMSG_HELLO_BODY || len > FASTMSG_HELLO_BODY + FASTMSG_HELLO_MAX_EXT) return FASTMSG_PERR_MALFORMED;
        return FASTMSG_PERR_OK;
    case FASTMSG_DATA: {
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
        return len == FASTMSG_CONTROL_BODY ? FASTMSG_PERR_OK : FASTMSG_PERR_MALFORMED;
    case FASTMSG_ERROR:
        return (len >= 8 && len <= 8 + FASTMSG_ERROR_MAX_TEXT) ? FASTMSG_PERR_OK : FASTMSG_PERR_MALFORMED;
    default:
        return FASTMSG_PERR_BAD_KIND;
    }
}

static void put_header(uint8_t *out, uint32_t body_len, uint32_t kind) {
    put32(out, body_len);
    put32(out + 4, kind);
}

size_t fastmsg_encode_hello(uint8_t *out, uint32_t kind, const fastmsg_hello *h) {
    uint8_t *b = out + FASTMSG_FRAME_HDR;
    put_header(out, FASTMSG_HELLO_BODY, kind);
    memcpy(b, fastmsg_proto_magic, 8);
    b[8] = (uint8_t)h->major;
    b[9] = (uint8_t)(h->major >> 8);
    b[10] = (uint8_t)h->minor;
    b[11] = (uint8_t)(h->minor >> 8);
    put32(b + 12, h->capabilities);
    put64(b + 16, h->session_id);
    put64(b + 24, h->seq);
    put32(b + 32, h->max_message);
    put32(b + 36, h->max_batch);
    put32(b + 40, h->heartbeat_ms);
    put32(b + 44, 0); /* no extensions in v1 */
    return FASTMSG_FRAME_HDR + FASTMSG_HELLO_BODY;
}

size_t fastmsg_encode_control(uint8_t out[16], uint32_t kind, uint64_t value) {
    put_header(out, FASTMSG_CONTROL_BODY, kind);
    put64(out + 8, value);
    return 16;
}

size_t fastmsg_encode_error(uint8_t *out, uint32_t code, const char *text, size_t text_len) {
    if (text_len > FASTMSG_ERROR_MAX_TEXT) text_len = FASTMSG_ERROR_MAX_TEXT;
    size_t size = (size_t)fastmsg_frame_size((uint32_t)(8 + text_len));
    put_header(out, (uint32_t)(8 + text_len), FASTMSG_ERROR);
    put32(out + 8, code);
    put32(out + 12, (uint32_t)text_len);
    memcpy(out + 16, text, text_len);
    memset(out + 16 + text_len, 0, size - 16 - text_len);
    return size;
}

uint32_t fastmsg_data_open(uint8_t out[24], uint32_t records_len, uint32_t count, uint64_t first_seq) {
    put_header(out, FASTMSG_DATA_HDR + records_len, FASTMSG_DATA);
    put32(out + 8, 0);
    put32(out + 12, count);
    put64(out + 16, first_seq);
    /* The CRC covers the frame header and the body after the CRC field itself. */
    return fastmsg_crc32c(fastmsg_crc32c(0, out, 8), out + 12, 12);
}

void fastmsg_data_set_crc(uint8_t hdr[24], uint32_t crc) { put32(hdr + 8, crc); }

static int check_frame(const uint8_t *frame, size_t size, uint32_t kind, uint32_t *body_len) {
    if (size < FASTMSG_FRAME_HDR) return FASTMSG_PERR_MALFORMED;
    uint32_t len = get32(frame), k = get32(frame + 4);
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
    uint32_t kind = get32(frame + 4);
    if (kind != FASTMSG_HELLO && kind != FASTMSG_WELCOME) return FASTMSG_PERR_BAD_KIND;
    int rc = check_frame(frame, size, kind, &len);
    if (rc) return rc;
    if (len < FASTMSG_HELLO_BODY) return FASTMSG_PERR_MALFORMED;
    const uint8_t *b = frame + FASTMSG_FRAME_HDR;
    if (memcmp(b, fastmsg_proto_magic, 8) != 0) return FASTMSG_PERR_BAD_MAGIC;
    out->major = get16(b + 8);
    out->minor = get16(b + 10);
    if (out->major != FASTMSG_PROTO_MAJOR) return FASTMSG_PERR_VERSION;
    out->capabilities = get32(b + 12);
    out->session_id = get64(b + 16);
    out->seq = get64(b + 24);
    out->max_message = get32(b + 32);
    out->max_batch = get32(b + 36);
    out->heartbeat_ms = get32(b + 40);
    out->ext_len = get32(b + 44);
    /* Extensions are skipped in v1, but their declared length must match the frame. */
    if (out->ext_len != len - FASTMSG_HELLO_BODY) return FASTMSG_PERR_MALFORMED;
    if (out->session_id == 0) return FASTMSG_PERR_MALFORMED;
    return FASTMSG_PERR_OK;
}

int fastmsg_decode_control(const uint8_t *frame, size_t size, uint64_t *value) {
    uint32_t len;
    if (size != 16) return FASTMSG_PERR_MALFORMED;
    uint32_t kind = get32(frame + 4);
    if (kind != FASTMSG_ACK && kind != FASTMSG_PING && kind != FASTMSG_PONG && kind != FASTMSG_CLOSE)
        return FASTMSG_PERR_BAD_KIND;
    int rc = check_frame(frame, size, kind, &len);
    if (rc) return rc;
    if (len != FASTMSG_CONTROL_BODY) return FASTMSG_PERR_MALFORMED;
    *value = get64(frame + 8);
    return FASTMSG_PERR_OK;
}

int fastmsg_decode_error(const uint8_t *frame, size_t size, uint32_t *code, const uint8_t **text, uint32_t *text_len) {
    uint32_t len;
    int rc = check_frame(frame, size, FASTMSG_ERROR, &len);
    if (rc) return rc;
    if (len < 8 || len > 8 + FASTMSG_ERROR_MAX_TEXT) return FASTMSG_PERR_MALFORMED;
    *code = get32(frame + 8);
    *text_len = get32(frame + 12);
    if (*text_len != len - 8) return FASTMSG_PERR_MALFORMED;
    *text = frame + 16;
    return FASTMSG_PERR_OK;
}

int fastmsg_decode_data(const uint8_t *frame, size_t size, const fastmsg_limits *lim, uint32_t *count,
                        uint64_t *first_seq) {
    uint32_t len, kind;
    if (size < FASTMSG_FRAME_HDR) return FASTMSG_PERR_MALFORMED;
    int rc = fastmsg_frame_check(frame, lim, &kind, &len);
    if (rc) return rc;
    if (kind != FASTMSG_DATA) return FASTMSG_PERR_BAD_KIND;
    if (fastmsg_frame_size(len) != size) return FASTMSG_PERR_MALFORMED;
    uint32_t crc = fastmsg_crc32c(fastmsg_crc32c(0, frame, 8), frame + 12, size - 12);
    if (crc != get32(frame + 8)) return FASTMSG_PERR_CRC;
    *count = get32(frame + 12);
    *first_seq = get64(frame + 16);
    /* Walk the records: they must fill the body exactly and match the count. */
    const uint8_t *p = frame + FASTMSG_FRAME_HDR + FASTMSG_DATA_HDR, *end = frame + size;
    uint64_t n = 0;
    while (p < end) {
        if ((size_t)(end - p) < FASTMSG_FRAME_HDR) return FASTMSG_PERR_MALFORMED;
        uint32_t msg_len = get32(p), flags = get32(p + 4);
        if (flags != 0) return FASTMSG_PERR_MALFORMED;
        if (msg_len > lim->max_message) return FASTMSG_PERR_TOO_LARGE;
        uint64_t slot = fastmsg_frame_size(msg_len);
        if (slot > (uint64_t)(end - p)) return FASTMSG_PERR_MALFORMED;
        if (!all_zero(p + FASTMSG_FRAME_HDR + msg_len, (size_t)(slot - FASTMSG_FRAME_HDR - msg_len)))
            return FASTMSG_PERR_MALFORMED;
        p += slot;
        n++;
    }
    if (n != *count || n == 0) return FASTMSG_PERR_MALFORMED;
    return FASTMSG_PERR_OK;
}
