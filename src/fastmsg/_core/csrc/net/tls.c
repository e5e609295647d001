/* TLS for the engine's sockets, over the ssl module's own OpenSSL (tls.h says why and how). */
#define _GNU_SOURCE
#include "net/tls.h"

#include <errno.h>
#include <limits.h>
#include "base/thread.h"
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Headers for types and constants only: every call goes through `api` (nothing here links
 * libssl; `nm -u` on the extension shows no SSL_ symbol). */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "net/sock.h" /* (SO_NOSIGPIPE, where there is one) */
#ifdef _WIN32
#include "net/dl_win.h"
#else
#include <arpa/inet.h>
#include <dlfcn.h>
#include <signal.h>

/* dlsym on the module's handle searches it and the libraries it needs: the very libssl and
 * libcrypto the ssl module called to build the context. */
static void *fm_dl_open(const char *module_path, char *err, size_t errlen) {
    void *h = module_path ? dlopen(module_path, RTLD_NOW | RTLD_NOLOAD) : dlopen(NULL, RTLD_NOW);
    if (!h && module_path) h = dlopen(module_path, RTLD_NOW);
    if (!h) snprintf(err, errlen, "cannot open the ssl module's library: %s", dlerror());
    return h;
}
#define fm_dl_sym dlsym
#endif

/* What a batch's bytes are gathered into before SSL_write: four records' worth, so that a batch
 * goes out as few records as possible (OpenSSL cuts them at 16 KiB), and a copy per byte at most. */
#define STAGE_MAX (64 * 1024)
/* The records of one stage collect in a buffer in front of the socket and go out in one send
 * (a send per record costs the receiver a wake-up per record): four records and their overhead. */
#define WRITE_BUFFER (STAGE_MAX + 4 * 256)
/* Reads take whole runs of records at once (OpenSSL's read-ahead), not a header then a body. */
#define READ_BUFFER (STAGE_MAX + 4 * 256)

#define FN(name) __typeof__(name) *name
static struct {
    FN(SSL_new);
    FN(SSL_free);
    FN(SSL_set_connect_state);
    FN(SSL_set_accept_state);
    FN(SSL_do_handshake);
    FN(SSL_read);
    FN(SSL_write);
    FN(SSL_get_error);
    FN(SSL_ctrl);
    FN(SSL_set1_host);
    FN(SSL_get0_param);
    FN(SSL_get_verify_result);
    FN(SSL_CTX_up_ref);
    FN(SSL_CTX_free);
    FN(SSL_CTX_get_options);
    X509 *(*get1_peer_certificate)(const SSL *);
    FN(X509_free);
    FN(X509_get_ext_d2i);
    FN(X509_get_subject_name);
    FN(X509_NAME_get_text_by_NID);
    FN(X509_VERIFY_PARAM_set1_ip_asc);
    FN(X509_verify_cert_error_string);
    FN(GENERAL_NAMES_free);
    FN(OPENSSL_sk_num);
    FN(OPENSSL_sk_value);
    FN(ASN1_STRING_get0_data);
    FN(ASN1_STRING_length);
    FN(ERR_get_error);
    FN(ERR_peek_error);
    FN(ERR_clear_error);
    FN(ERR_reason_error_string);
    FN(SSL_set_bio);
    FN(SSL_has_pending);
    FN(SSL_set_default_read_buffer_len);
    FN(BIO_new);
    FN(BIO_f_buffer);
    FN(BIO_new_socket);
    FN(BIO_push);
    FN(BIO_ctrl);
    FN(BIO_int_ctrl);
    FN(BIO_test_flags);
    FN(BIO_up_ref);
    FN(BIO_free);
    FN(SSL_set_msg_callback);
    FN(SSL_CTX_get_keylog_callback); /* (OpenSSL 1.1.1 and later: NULL where absent) */
} api;
#undef FN

static fm_mutex load_lock = FM_MUTEX_INIT;
static int loaded;

int fm_tls_load(const char *module_path, char *err, size_t errlen) {
    fm_mutex_lock(&load_lock);
    if (loaded) {
        fm_mutex_unlock(&load_lock);
        return 0;
    }
    void *h = fm_dl_open(module_path, err, errlen);
    const char *missing = NULL;
    if (!h) {
        fm_mutex_unlock(&load_lock);
        return -1;
    }
#define LOAD(field, sym) \
    if (!missing && !(*(void **)&api.field = fm_dl_sym(h, sym))) missing = sym
    LOAD(SSL_new, "SSL_new");
    LOAD(SSL_free, "SSL_free");
    LOAD(SSL_set_connect_state, "SSL_set_connect_state");
    LOAD(SSL_set_accept_state, "SSL_set_accept_state");
    LOAD(SSL_do_handshake, "SSL_do_handshake");
    LOAD(SSL_read, "SSL_read");
    LOAD(SSL_write, "SSL_write");
    LOAD(SSL_get_error, "SSL_get_error");
    LOAD(SSL_ctrl, "SSL_ctrl");
    LOAD(SSL_set1_host, "SSL_set1_host");
    LOAD(SSL_get0_param, "SSL_get0_param");
    LOAD(SSL_get_verify_result, "SSL_get_verify_result");
    LOAD(SSL_CTX_up_ref, "SSL_CTX_up_ref");
    LOAD(SSL_CTX_free, "SSL_CTX_free");
    LOAD(SSL_CTX_get_options, "SSL_CTX_get_options");
    LOAD(X509_free, "X509_free");
    LOAD(X509_get_ext_d2i, "X509_get_ext_d2i");
    LOAD(X509_get_subject_name, "X509_get_subject_name");
    LOAD(X509_NAME_get_text_by_NID, "X509_NAME_get_text_by_NID");
    LOAD(X509_VERIFY_PARAM_set1_ip_asc, "X509_VERIFY_PARAM_set1_ip_asc");
    LOAD(X509_verify_cert_error_string, "X509_verify_cert_error_string");
    LOAD(GENERAL_NAMES_free, "GENERAL_NAMES_free");
    LOAD(OPENSSL_sk_num, "OPENSSL_sk_num");
    LOAD(OPENSSL_sk_value, "OPENSSL_sk_value");
    LOAD(ASN1_STRING_get0_data, "ASN1_STRING_get0_data");
    LOAD(ASN1_STRING_length, "ASN1_STRING_length");
    LOAD(ERR_get_error, "ERR_get_error");
    LOAD(ERR_peek_error, "ERR_peek_error");
    LOAD(ERR_clear_error, "ERR_clear_error");
    LOAD(ERR_reason_error_string, "ERR_reason_error_string");
    LOAD(SSL_set_bio, "SSL_set_bio");
    LOAD(SSL_has_pending, "SSL_has_pending");
    LOAD(SSL_set_default_read_buffer_len, "SSL_set_default_read_buffer_len");
    LOAD(BIO_new, "BIO_new");
    LOAD(BIO_f_buffer, "BIO_f_buffer");
    LOAD(BIO_new_socket, "BIO_new_socket");
    LOAD(BIO_push, "BIO_push");
    LOAD(BIO_ctrl, "BIO_ctrl");
    LOAD(BIO_int_ctrl, "BIO_int_ctrl");
    LOAD(BIO_test_flags, "BIO_test_flags");
    LOAD(BIO_up_ref, "BIO_up_ref");
    LOAD(BIO_free, "BIO_free");
    LOAD(SSL_set_msg_callback, "SSL_set_msg_callback");
    *(void **)&api.SSL_CTX_get_keylog_callback = fm_dl_sym(h, "SSL_CTX_get_keylog_callback");
    /* OpenSSL 3 renamed it; 1.1.1 has only the old name */
    *(void **)&api.get1_peer_certificate = fm_dl_sym(h, "SSL_get1_peer_certificate");
    if (!api.get1_peer_certificate) LOAD(get1_peer_certificate, "SSL_get_peer_certificate");
#undef LOAD
    if (missing) {
        snprintf(err, errlen, "the ssl module's OpenSSL does not export %s (OpenSSL 1.1.1 or later, "
                 "as a shared library, is needed for ssl=)", missing);
        fm_mutex_unlock(&load_lock);
        return -1;
    }
    loaded = 1; /* (the handle stays open: the module is never unloaded) */
    fm_mutex_unlock(&load_lock);
    return 0;
}

struct fm_tls_ctx {
    SSL_CTX *ctx;
    int server, check_host, host_is_ip;
    char *host;
};

/* strndup, which Windows lacks. */
static char *copy_name(const unsigned char *s, size_t len) {
    char *p = malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = 0;
    }
    return p;
}

uint64_t fm_tls_ctx_options(void *ssl_ctx) { return (uint64_t)api.SSL_CTX_get_options((SSL_CTX *)ssl_ctx); }

static int is_ip(const char *host) {
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

fm_tls_ctx *fm_tls_ctx_new(void *ssl_ctx, int server, const char *host, int check_host) {
    fm_tls_ctx *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (host && !(c->host = strdup(host))) {
        free(c);
        return NULL;
    }
    c->ctx = ssl_ctx;
    c->server = server;
    c->check_host = check_host && host;
    c->host_is_ip = host && is_ip(host);
    api.SSL_CTX_up_ref(c->ctx);
    return c;
}

void fm_tls_ctx_free(fm_tls_ctx *c) {
    if (!c) return;
    api.SSL_CTX_free(c->ctx);
    free(c->host);
    free(c);
}

struct fm_tls {
    SSL *ssl;
    BIO *wbio;                /* the write buffer, in front of the socket */
    int done;                 /* handshake complete */
    int read_failed;          /* a read returned data before a failure, which comes next */
    uint8_t *stage;           /* pending output: stage[off, len) is SSL_write's until written */
    size_t stage_off, stage_len, stage_cap;
    int nnames, cn;           /* cn: the index of the subject CN among names, or -1 */
    char *names[FM_TLS_MAX_NAMES];
    char err[FM_TLS_ERROR_MAX];
};

/* Reads straight from the socket, read-ahead; writes through a buffer (WRITE_BUFFER), flushed by
 * fm_tls_flush. 1, or 0 without memory. */
static int attach_socket(fm_tls *t, int fd) {
    BIO *sock = api.BIO_new_socket(fd, BIO_NOCLOSE), *buf = api.BIO_new(api.BIO_f_buffer());
    if (!sock || !buf || api.BIO_int_ctrl(buf, BIO_C_SET_BUFF_SIZE, WRITE_BUFFER, 1) != 1 || !api.BIO_up_ref(sock)) {
        if (sock) api.BIO_free(sock);
        if (buf) api.BIO_free(buf);
        return 0;
    }
    api.BIO_push(buf, sock);
    api.SSL_set_bio(t->ssl, sock, buf); /* (it owns one reference to each: sock is in both) */
    t->wbio = buf;
    api.SSL_ctrl(t->ssl, SSL_CTRL_SET_READ_AHEAD, 1, NULL);
    api.SSL_set_default_read_buffer_len(t->ssl, READ_BUFFER);
    return 1;
}

fm_tls *fm_tls_new(const fm_tls_ctx *c, int fd, char *err, size_t errlen) {
    fm_tls *t = calloc(1, sizeof *t);
    if (!t) {
        if (err) snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->cn = -1;
    /* The ssl module's keylog and message callbacks read the connection's ssl socket object,
     * which these connections have none of: set on the context after it was handed over, they
     * would crash (they are refused when it is handed over). */
    if (api.SSL_CTX_get_keylog_callback && api.SSL_CTX_get_keylog_callback(c->ctx)) {
        if (err) snprintf(err, errlen, "the SSLContext's keylog_filename was set after it was given to fastmsg");
        free(t);
        return NULL;
    }
    api.ERR_clear_error();
    t->ssl = api.SSL_new(c->ctx);
    if (t->ssl) api.SSL_set_msg_callback(t->ssl, NULL);
#ifdef SO_NOSIGPIPE
    int one = 1; /* (the SIGPIPE guard relies on it: see guard_on) */
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    int ok = t->ssl && attach_socket(t, fd);
    if (ok) {
        /* The stage is a stable buffer, retried from where it stopped; records are written one by
         * one so that what reached the socket is known. */
        api.SSL_ctrl(t->ssl, SSL_CTRL_MODE, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER, NULL);
        if (c->server) {
            api.SSL_set_accept_state(t->ssl);
        } else {
            api.SSL_set_connect_state(t->ssl);
            /* as the ssl module does: SNI for a DNS name, and the name check the context asks for */
            if (c->host && !c->host_is_ip)
                ok = api.SSL_ctrl(t->ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name, c->host) == 1;
            if (ok && c->check_host)
                ok = c->host_is_ip ? api.X509_VERIFY_PARAM_set1_ip_asc(api.SSL_get0_param(t->ssl), c->host) == 1
                                   : api.SSL_set1_host(t->ssl, c->host) == 1;
        }
    }
    if (!ok) {
        if (err) snprintf(err, errlen, "cannot set up TLS on the connection");
        fm_tls_free(t);
        return NULL;
    }
    return t;
}

void fm_tls_free(fm_tls *t) {
    if (!t) return;
    if (t->ssl) api.SSL_free(t->ssl);
    for (int i = 0; i < t->nnames; i++) free(t->names[i]);
    free(t->stage);
    free(t);
}

const char *fm_tls_error(const fm_tls *t) { return t->err; }

int fm_tls_peer_names(const fm_tls *t, const char *const **names) {
    *names = (const char *const *)t->names;
    return t->nnames;
}

int fm_tls_peer_has_name(const fm_tls *t, const char *name, int kind) {
    for (int i = 0; i < t->nnames; i++) {
        int is_cn = i == t->cn;
        if ((kind == FM_TLS_NAME_CN && !is_cn) || (kind == FM_TLS_NAME_SAN && is_cn)) continue;
        if (strcmp(t->names[i], name) == 0) return 1;
    }
    return 0;
}

/* Records OpenSSL's reason for a failure, with the certificate check's where it failed. */
static void note_failure(fm_tls *t, const char *what) {
    unsigned long code = api.ERR_get_error();
    const char *reason = code ? api.ERR_reason_error_string(code) : NULL;
    long verify = api.SSL_get_verify_result(t->ssl);
    int reason_no = code ? ERR_GET_REASON(code) : 0;
    const char *hint = "";
    if (reason_no == SSL_R_WRONG_VERSION_NUMBER || reason_no == SSL_R_PACKET_LENGTH_TOO_LONG ||
        reason_no == SSL_R_HTTP_REQUEST || reason_no == SSL_R_RECORD_LENGTH_MISMATCH)
        hint = " (is the peer using TLS?)";
    if (verify != X509_V_OK && reason_no == SSL_R_CERTIFICATE_VERIFY_FAILED)
        snprintf(t->err, sizeof t->err, "%s: %s: %s", what, reason ? reason : "certificate verify failed",
                 api.X509_verify_cert_error_string(verify));
    else
        snprintf(t->err, sizeof t->err, "%s: %s%s", what, reason ? reason : "unknown error", hint);
    while (api.ERR_get_error()) { /* the rest of the queue, which would confuse the next call */
    }
}

/* A failed call's outcome: 0 for the end of the stream (a close_notify, or the socket's EOF
 * without one: the frames above carry their own lengths and CRCs), -EAGAIN when the socket must
 * become ready first, else -errno or -EPROTO (the reason noted). */
static ptrdiff_t failure(fm_tls *t, int rc, int saved_errno, const char *what) {
    int e = api.SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -EAGAIN;
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    if (e == SSL_ERROR_SYSCALL) {
        api.ERR_clear_error();
        if (saved_errno) {
            snprintf(t->err, sizeof t->err, "%s: %s", what, strerror(saved_errno));
            return -saved_errno;
        }
        return 0;
    }
#ifdef SSL_R_UNEXPECTED_EOF_WHILE_READING
    /* (OpenSSL 3 reports an EOF without close_notify this way) */
    if (e == SSL_ERROR_SSL && ERR_GET_REASON(api.ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        api.ERR_clear_error();
        return 0;
    }
#endif
    note_failure(t, what);
    return -EPROTO;
}

/* Collects the verified peer's names: DNS subjectAltNames, then the subject's CN. */
static void take_names(fm_tls *t) {
    X509 *cert = api.get1_peer_certificate(t->ssl);
    if (!cert) return;
    if (api.SSL_get_verify_result(t->ssl) == X509_V_OK) {
        GENERAL_NAMES *sans = api.X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
        int n = sans ? api.OPENSSL_sk_num((const OPENSSL_STACK *)sans) : 0;
        for (int i = 0; i < n && t->nnames < FM_TLS_MAX_NAMES; i++) {
            const GENERAL_NAME *g = api.OPENSSL_sk_value((const OPENSSL_STACK *)sans, i);
            if (g->type != GEN_DNS) continue;
            int len = api.ASN1_STRING_length(g->d.dNSName);
            const unsigned char *s = api.ASN1_STRING_get0_data(g->d.dNSName);
            if (len <= 0 || len >= FM_TLS_NAME_MAX || memchr(s, 0, (size_t)len)) continue;
            t->names[t->nnames] = copy_name(s, (size_t)len);
            if (t->names[t->nnames]) t->nnames++;
        }
        if (sans) api.GENERAL_NAMES_free(sans);
        char cn[FM_TLS_NAME_MAX];
        X509_NAME *subject = api.X509_get_subject_name(cert);
        int len = subject ? api.X509_NAME_get_text_by_NID(subject, NID_commonName, cn, sizeof cn) : -1;
        /* (a CN as long as the buffer may have been cut: a prefix must never pass for the name) */
        if (len > 0 && len < FM_TLS_NAME_MAX - 1 && (size_t)len == strlen(cn) && t->nnames < FM_TLS_MAX_NAMES) {
            t->names[t->nnames] = strdup(cn);
            if (t->names[t->nnames]) t->cn = t->nnames++;
        }
    }
    api.X509_free(cert);
}

static int handshake(fm_tls *t) {
    if (t->done) return FM_TLS_DONE;
    api.ERR_clear_error();
    errno = 0;
    int rc = api.SSL_do_handshake(t->ssl);
    int saved = errno;
    if (rc == 1) {
        t->done = 1;
        take_names(t);
        return FM_TLS_DONE;
    }
    int e = api.SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) return FM_TLS_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE) return FM_TLS_WANT_WRITE;
    if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
        api.ERR_clear_error();
        snprintf(t->err, sizeof t->err, "TLS handshake failed: %s",
                 saved ? strerror(saved) : "the peer closed the connection (is it using TLS, and does it accept this side?)");
        return -1;
    }
    note_failure(t, "TLS handshake failed");
    return -1;
}

static ptrdiff_t read_some(fm_tls *t, void *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        size_t want = len - got < INT_MAX ? len - got : INT_MAX;
        api.ERR_clear_error();
        errno = 0;
        int rc = api.SSL_read(t->ssl, (uint8_t *)buf + got, (int)want);
        int saved = errno;
        if (rc > 0) {
            got += (size_t)rc;
            continue;
        }
        /* What was decrypted goes first; a failure comes again at the next read (OpenSSL keeps
         * it). The socket may have nothing more to report: fm_tls_pending says to read on. */
        if (got) {
            int e = api.SSL_get_error(t->ssl, rc);
            t->read_failed = e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE;
            api.ERR_clear_error();
            break;
        }
        return failure(t, rc, saved, "TLS read failed");
    }
    return (ptrdiff_t)got;
}

static int flush(fm_tls *t) {
    while (t->stage_off < t->stage_len) {
        size_t want = t->stage_len - t->stage_off;
        api.ERR_clear_error();
        errno = 0;
        int rc = api.SSL_write(t->ssl, t->stage + t->stage_off, (int)want);
        int saved = errno;
        if (rc > 0) {
            t->stage_off += (size_t)rc;
            continue;
        }
        ptrdiff_t r = failure(t, rc, saved, "TLS write failed");
        return r == 0 ? -EPIPE : (int)r;
    }
    t->stage_off = t->stage_len = 0;
    errno = 0;
    if (api.BIO_ctrl(t->wbio, BIO_CTRL_FLUSH, 0, NULL) > 0) return 0;
    if (api.BIO_test_flags(t->wbio, BIO_FLAGS_SHOULD_RETRY)) return -EAGAIN;
    int saved = errno ? errno : EPIPE;
    snprintf(t->err, sizeof t->err, "TLS write failed: %s", strerror(saved));
    return -saved;
}

int fm_tls_pending(const fm_tls *t) { return t->read_failed || api.SSL_has_pending(t->ssl) == 1; }

/* OpenSSL writes with write(), which raises SIGPIPE on a connection the peer has closed (the
 * plain path sends with MSG_NOSIGNAL). Windows has no signals (a closed peer is an error code).
 * Where the socket itself can refuse to raise it (macOS and the BSDs: SO_NOSIGPIPE, set on every
 * socket netio.c makes, and again in fm_tls_new), the failure is an EPIPE already and nothing
 * more is done. Elsewhere, unless the process ignores SIGPIPE (Python does, unless told
 * otherwise), each call that may write runs with SIGPIPE blocked in this thread, and a SIGPIPE it
 * raised is taken back before the mask is restored. */
#if defined(_WIN32) || defined(SO_NOSIGPIPE)
typedef struct {
    int unused;
} sigpipe_guard;

static void guard_on(sigpipe_guard *g) { (void)g; }
static void guard_off(sigpipe_guard *g) { (void)g; }
#else
typedef struct {
    int on, was_pending;
    sigset_t old;
} sigpipe_guard;

static void guard_on(sigpipe_guard *g) {
    struct sigaction sa;
    g->on = sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler != SIG_IGN;
    if (!g->on) return;
    sigset_t block, pending;
    sigemptyset(&block);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &g->old);
    g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
}

static void guard_off(sigpipe_guard *g) {
    if (!g->on) return;
    sigset_t pending;
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        sigset_t pipe_only;
        sigemptyset(&pipe_only);
        sigaddset(&pipe_only, SIGPIPE);
#if defined(__OpenBSD__) /* (no sigtimedwait; the signal is pending, so this returns at once) */
        int taken;
        sigwait(&pipe_only, &taken);
#else
        struct timespec now = {0, 0};
        sigtimedwait(&pipe_only, NULL, &now);
#endif
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}
#endif

int fm_tls_handshake(fm_tls *t) {
    sigpipe_guard g;
    guard_on(&g);
    int rc = handshake(t);
    guard_off(&g);
    return rc;
}

ptrdiff_t fm_tls_read(fm_tls *t, void *buf, size_t len) {
    sigpipe_guard g; /* (a read may write: an alert, a key update's answer) */
    guard_on(&g);
    ptrdiff_t n = read_some(t, buf, len);
    guard_off(&g);
    return n;
}

int fm_tls_flush(fm_tls *t) {
    sigpipe_guard g;
    guard_on(&g);
    int rc = flush(t);
    guard_off(&g);
    return rc;
}

/* (one SIGPIPE guard for the whole call: flush() inside it is unguarded) */
static ptrdiff_t writev_held(fm_tls *t, const struct iovec *iov, int n);

ptrdiff_t fm_tls_writev(fm_tls *t, const struct iovec *iov, int n) {
    sigpipe_guard g;
    guard_on(&g);
    ptrdiff_t w = writev_held(t, iov, n);
    guard_off(&g);
    return w;
}

static ptrdiff_t writev_held(fm_tls *t, const struct iovec *iov, int n) {
    int rc = flush(t);
    if (rc) return rc;
    size_t total = 0;
    for (int i = 0; i < n && total < STAGE_MAX; i++) total += iov[i].iov_len;
    if (total > STAGE_MAX) total = STAGE_MAX;
    if (!total) return 0;
    if (t->stage_cap < total) {
        size_t cap = total < 4096 ? 4096 : STAGE_MAX; /* small for a connection that writes little */
        uint8_t *p = realloc(t->stage, cap);
        if (!p) return -ENOMEM;
        t->stage = p;
        t->stage_cap = cap;
    }
    size_t off = 0;
    for (int i = 0; i < n && off < total; i++) {
        size_t take = iov[i].iov_len < total - off ? iov[i].iov_len : total - off;
        memcpy(t->stage + off, iov[i].iov_base, take);
        off += take;
    }
    t->stage_len = total;
    t->stage_off = 0;
    /* The bytes are taken whatever the socket says now: what it did not take stays pending. */
    rc = flush(t);
    if (rc && rc != -EAGAIN) return rc;
    return (ptrdiff_t)total;
}
