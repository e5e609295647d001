/* TLS on an engine's socket, with the OpenSSL that Python's ssl module uses: the user's
 * ssl.SSLContext holds an SSL_CTX of that library, so every OpenSSL call here goes through
 * functions looked up in it (fm_tls_load), never through a copy of OpenSSL of our own, which
 * could not safely touch that context (docs/architecture.md, "TLS").
 *
 * An fm_tls is one connection's TLS state over a non-blocking socket. Its read and writev keep the
 * plain socket's contract, so that the engine's loops stay as they are:
 *  - a read fills the buffer until it is full or nothing more can be decrypted now, so a short
 *    read still means "drained": nothing waits inside OpenSSL that the poller cannot see;
 *  - a writev takes bytes and never gives them back: what OpenSSL could not put on the socket yet
 *    stays in the connection's own buffer (the pending output), which fm_tls_flush writes; the
 *    engine watches for POLLOUT while fm_tls_flush says -EAGAIN.
 * Each function is called by whoever holds the connection's token: never two threads at once. */
#ifndef FASTMSG_TLS_H
#define FASTMSG_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "net/sock.h"

typedef struct fm_tls_ctx fm_tls_ctx;
typedef struct fm_tls fm_tls;

/* Most certificate names kept per peer (its DNS subjectAltNames, then its subject CN). */
#define FM_TLS_MAX_NAMES 8
#define FM_TLS_NAME_MAX 256
#define FM_TLS_ERROR_MAX 200

/* Looks up OpenSSL's functions in the library loaded with `module_path` (the ssl module's
 * extension; NULL: the process's global symbols, for an interpreter with ssl built in). 0, or -1
 * with the reason in err. Idempotent; the first success holds. */
int fm_tls_load(const char *module_path, char *err, size_t errlen);

/* A context over `ssl_ctx` (an SSL_CTX *, referenced while this lives). A client context checks
 * the peer's name `host` when check_host is set (an IP address, or a DNS name that SNI also
 * carries); host may be NULL otherwise. NULL without memory. */
fm_tls_ctx *fm_tls_ctx_new(void *ssl_ctx, int server, const char *host, int check_host);
void fm_tls_ctx_free(fm_tls_ctx *c);
/* SSL_CTX_get_options of an SSL_CTX: the caller compares it with the context's own view of its
 * options, to check that the pointer it took out of an ssl.SSLContext is one. */
uint64_t fm_tls_ctx_options(void *ssl_ctx);

/* TLS over connected socket fd, handshake not yet started. NULL on failure (the reason goes to
 * err when not NULL). */
fm_tls *fm_tls_new(const fm_tls_ctx *c, int fd, char *err, size_t errlen);
void fm_tls_free(fm_tls *t);

enum { FM_TLS_DONE = 0, FM_TLS_WANT_READ = 1, FM_TLS_WANT_WRITE = 2 };
/* Advances the handshake: FM_TLS_DONE once it is complete (the peer's names are then known),
 * FM_TLS_WANT_READ/WRITE for what the socket must become before the next call, or -1 when it
 * failed (fm_tls_error says why). */
int fm_tls_handshake(fm_tls *t);

/* As fastmsg_read and fastmsg_writev (net/netio.h); failures are -errno, -EPROTO for a TLS error
 * (fm_tls_error says which). */
ptrdiff_t fm_tls_read(fm_tls *t, void *buf, size_t len);
ptrdiff_t fm_tls_writev(fm_tls *t, const struct iovec *iov, int n);
/* Writes the pending output: 0 once none is left, -EAGAIN while the socket is full, or -errno. */
int fm_tls_flush(fm_tls *t);

/* 1 if TLS holds bytes not yet read (records read ahead, or the rest of one): a read that filled
 * its buffer may leave some, which no poller reports (the socket may be empty). */
int fm_tls_pending(const fm_tls *t);

/* Why the last call failed. */
const char *fm_tls_error(const fm_tls *t);
/* The peer's verified certificate names (0 without a certificate): names[0] is its identity. */
int fm_tls_peer_names(const fm_tls *t, const char *const **names);
/* 1 if the peer's verified certificate has `name` as a DNS subjectAltName (FM_TLS_NAME_SAN), as
 * its subject CN (FM_TLS_NAME_CN), or either (FM_TLS_NAME_ANY). */
enum { FM_TLS_NAME_ANY = 0, FM_TLS_NAME_CN = 1, FM_TLS_NAME_SAN = 2 };
int fm_tls_peer_has_name(const fm_tls *t, const char *name, int kind);

#endif
