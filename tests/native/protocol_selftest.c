/* The wire protocol's encoders and decoders from C: prints each frame of docs/protocol.md's
 * vectors as this build encodes it ("name hex", compared with the document by the caller), and
 * checks that each decodes back to its fields and that a flipped bit is refused. Built for
 * Windows and run under wine by tests/test_windows_native.py: frames must be bit-identical on
 * every platform. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "crc32c/crc32c.h"
#include "wire/protocol.h"


static void print(const char *name, const uint8_t *frame, size_t n) {
    printf("%s ", name);
    for (size_t i = 0; i < n; i++) printf("%02x", frame[i]);
    printf("\n");
}

/* A corrupted copy of a whole frame must give FASTMSG_PERR_CRC (or MALFORMED, if the bit broke a
 * length): never success. */
static int flipped_refused(const uint8_t *frame, size_t n, int (*decode)(const uint8_t *, size_t)) {
    uint8_t copy[256];
    memcpy(copy, frame, n);
    copy[n / 2] ^= 0x10;
    return decode(copy, n) != FASTMSG_PERR_OK;
}

static int decode_control_only(const uint8_t *f, size_t n) {
    uint64_t v;
    return fastmsg_decode_control(f, n, &v);
}

static int decode_hello_only(const uint8_t *f, size_t n) {
    fastmsg_hello h;
    return fastmsg_decode_hello(f, n, &h);
}

static void hellos(void) {
    uint8_t f[FASTMSG_FRAME_HDR + FASTMSG_HELLO_BODY];
    fastmsg_hello in = {3, 1, 7, 0x0123456789ABCDEFull, 1, 1u << 24, 1u << 18, 1000, 0, 1u << 22, 5}, out;
    size_t n = fastmsg_encode_hello(f, FASTMSG_HELLO, &in);
    print("hello", f, n);
    CHECK(fastmsg_decode_hello(f, n, &out) == FASTMSG_PERR_OK && out.session_id == in.session_id &&
          out.seq == 1 && out.max_message == in.max_message && out.window == in.window && out.reply_seq == 5 &&
          out.capabilities == 7 && out.heartbeat_ms == 1000);
    CHECK(flipped_refused(f, n, decode_hello_only));
    fastmsg_hello w = {3, 1, 5, 0x0123456789ABCDEFull, 42, 1u << 24, 1u << 18, 0, 0, 0, 0};
    n = fastmsg_encode_hello(f, FASTMSG_WELCOME, &w);
    print("welcome", f, n);
}

static void controls(void) {
    static const struct {
        const char *name;
        uint32_t kind;
        uint64_t value;
    } v[] = {{"rack", FASTMSG_RACK, 2}, {"ack", FASTMSG_ACK, 10}, {"ping", FASTMSG_PING, 0xFEEDFACE},
             {"pong", FASTMSG_PONG, 0xFEEDFACE}, {"close", FASTMSG_CLOSE, 10}};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint8_t f[24];
        uint64_t got = 0;
        size_t n = fastmsg_encode_control(f, v[i].kind, v[i].value);
        print(v[i].name, f, n);
        CHECK(fastmsg_decode_control(f, n, &got) == FASTMSG_PERR_OK && got == v[i].value);
        CHECK(flipped_refused(f, n, decode_control_only));
    }
}

static void error_frame(void) {
    uint8_t f[FASTMSG_ERROR_FRAME_MAX];
    uint32_t code = 0, len = 0;
    const uint8_t *text = NULL;
    size_t n = fastmsg_encode_error(f, FASTMSG_PERR_CRC, "CRC32C mismatch", 15);
    print("error", f, n);
    CHECK(fastmsg_decode_error(f, n, &code, &text, &len) == FASTMSG_PERR_OK && code == FASTMSG_PERR_CRC && len == 15 &&
          memcmp(text, "CRC32C mismatch", 15) == 0);
}

/* DATA as the engine writes it: the 24 bytes from fastmsg_data_open, the records after them,
 * the CRC continued over the records. */
static void data_frame(void) {
    static const char *const msgs[] = {"hello", "", "fastmsg!!"};
    uint8_t f[128] = {0}, *rec = f + FASTMSG_DATA_FRAME_HDR;
    uint32_t records = 0;
    for (int i = 0; i < 3; i++) {
        uint32_t len = (uint32_t)strlen(msgs[i]);
        fastmsg_rec_put_hdr(rec + records, len, 0);
        memcpy(rec + records + FASTMSG_REC_HDR, msgs[i], len);
        records += (uint32_t)fastmsg_ring_slot(len);
    }
    uint32_t crc = fastmsg_data_open(f, records, 3, 7);
    fastmsg_data_set_crc(f, fastmsg_crc32c(crc, rec, records));
    size_t n = FASTMSG_DATA_FRAME_HDR + records;
    print("data", f, n);
    fastmsg_limits lim = {.max_message = 100, .max_batch = 1000};
    fastmsg_data_info info;
    CHECK(fastmsg_check_data(f, n, &lim, &info) == FASTMSG_PERR_OK && info.count == 3 && info.first_seq == 7 &&
          info.payload_bytes == 14);
    lim.max_message = 8; /* "fastmsg!!" is 9 bytes */
    CHECK(fastmsg_check_data(f, n, &lim, &info) == FASTMSG_PERR_TOO_LARGE);
    lim.max_message = 100;
    f[n - 1] ^= 1; /* (the last record's padding) */
    CHECK(fastmsg_check_data(f, n, &lim, &info) != FASTMSG_PERR_OK);
}

int main(void) {
    fastmsg_crc32c_init();
    hellos();
    controls();
    error_frame();
    data_frame();
    printf("%lu failures\n", failures);
    return failures != 0;
}
