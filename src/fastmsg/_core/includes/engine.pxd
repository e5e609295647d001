# Declarations of csrc/engine.h: the I/O engine, callable without the GIL.
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from fastmsg._core.includes.layout cimport FM_REC_EXTERNAL, FM_RX_EXTERNAL
from fastmsg._core.includes.notifier cimport fm_notifier
from fastmsg._core.includes.ring cimport fastmsg_ring, fastmsg_ring_ctl

# net/sock.h: <sys/socket.h> on POSIX, Winsock's headers on Windows.
cdef extern from "net/sock.h" nogil:
    ctypedef unsigned int socklen_t
    struct sockaddr:
        pass
    struct sockaddr_storage:
        unsigned short ss_family

cdef extern from "net/poller.h" nogil:
    ctypedef enum fastmsg_poller_kind:
        FASTMSG_POLLER_AUTO
        FASTMSG_POLLER_EPOLL
        FASTMSG_POLLER_POLL
        FASTMSG_POLLER_KQUEUE

cdef extern from "net/tls.h" nogil:
    ctypedef struct fm_tls_ctx:
        pass
    enum: FM_TLS_NAME_MAX
    enum: FM_TLS_ERROR_MAX
    int FM_TLS_NAME_ANY
    int FM_TLS_NAME_CN
    int FM_TLS_NAME_SAN
    int fm_tls_load(const char *module_path, char *err, size_t errlen)
    fm_tls_ctx *fm_tls_ctx_new(void *ssl_ctx, int server, const char *host, int check_host)
    void fm_tls_ctx_free(fm_tls_ctx *c)
    uint64_t fm_tls_ctx_options(void *ssl_ctx)

cdef extern from "engine/gated_lock.h" nogil:
    ctypedef struct fm_gated_lock:
        pass
    bint fm_glock_try(fm_gated_lock *l)
    void fm_glock_announce(fm_gated_lock *l)
    void fm_glock_withdraw(fm_gated_lock *l)
    bint fm_glock_release(fm_gated_lock *l)
    void fm_glock_passed(fm_gated_lock *l)

cdef extern from "engine/busy_poll.h" nogil:
    const uint32_t FM_BUSY_POLL_AUTO_NS

cdef extern from "engine/engine.h" nogil:
    ctypedef struct fm_ctx:
        pass
    ctypedef struct fm_sender:
        pass
    ctypedef struct fm_receiver:
        pass
    ctypedef struct fm_rxbuf:
        pass
    ctypedef struct fm_request:
        pass

    enum:
        FM_STAT_COUNT
        FM_ERROR_TEXT_MAX
        FM_LAST_ERROR_MAX           # room for fm_sender_last_error's text
    const uint32_t FASTMSG_MAX_MESSAGE_SIZE  # the largest max_message_size accepted

    # why fm_*_new failed: a positive errno value and a sentence
    ctypedef struct fm_error:
        int errnum
        char text[FM_ERROR_TEXT_MAX]
    const char *const fm_stat_names[]

    fm_ctx *fm_ctx_new(fastmsg_poller_kind poller, fm_error *err)
    void fm_ctx_free(fm_ctx *ctx)
    const char *fm_ctx_poller_name(const fm_ctx *ctx)

    enum:
        FM_MAX_KEYS
        FM_MAX_ALLOW
        FASTMSG_AUTH_KEY_MAX

    ctypedef struct fm_auth_key:
        uint64_t id
        uint32_t len                    # 0: no key
        uint8_t bytes[64]               # FASTMSG_AUTH_KEY_MAX

    ctypedef struct fm_allow_net:
        uint8_t family                  # 4 or 6
        uint8_t prefix
        uint8_t addr[16]

    ctypedef struct fm_allow_name:
        uint32_t kind                   # FM_TLS_NAME_ANY, _CN or _SAN
        char name[256]                  # FM_TLS_NAME_MAX

    ctypedef struct fm_sender_config:
        uint64_t ring_capacity
        uint64_t hwm_bytes
        uint32_t max_message
        uint32_t max_batch
        uint64_t session_id
        uint32_t handshake_timeout_ms   # 0: the default (5 s)
        uint32_t heartbeat_ms           # PING interval; 0: no heartbeats
        uint32_t dead_peer_ms           # nothing received this long: the peer is gone
        fm_auth_key key                 # len 0: no secret
        fm_tls_ctx *tls                 # NULL: plaintext; the engine frees it
        uint32_t busy_poll_ns           # polling before sleeping in a wait; 0: never
        uint32_t busy_poll_auto         # ...only after a short wait

    fm_sender *fm_sender_new(fm_ctx *ctx, const sockaddr *addr, socklen_t addrlen, const fm_sender_config *cfg,
                             fm_error *err)
    fastmsg_ring *fm_sender_ring(fm_sender *s)
    uint64_t fm_sender_queued(fm_sender *s)
    uint64_t fm_sender_released(fm_sender *s)
    uint64_t fm_sender_unacked(fm_sender *s)
    bint fm_sender_all_written(fm_sender *s)
    int64_t fm_sender_written_ns(fm_sender *s)
    void fm_sender_kick(fm_sender *s)
    void fm_sender_ask_ack(fm_sender *s)
    int fm_sender_write_direct(fm_sender *s)
    int fm_sender_flush(fm_sender *s, int64_t deadline_ns)
    int fm_sender_connected(fm_sender *s)
    void fm_sender_settle(fm_sender *s, int64_t deadline_ns)
    uint32_t fm_sender_peer_max_message(fm_sender *s)
    uint64_t fm_sender_refused(fm_sender *s, uint64_t *last_size)
    void fm_sender_stats(fm_sender *s, uint64_t *out)
    void fm_sender_last_error(fm_sender *s, char *buf, size_t length)
    uint64_t fm_sender_done(fm_sender *s)       # messages acknowledged or refused, ever
    uint64_t fm_sender_rtt(fm_sender *s, uint64_t *last_ns, int64_t *timing_since_ns)  # samples so far
    void fm_sender_stop(fm_sender *s)           # the I/O thread lets go; the ring stays readable
    bint fm_sender_next_unacked(fm_sender *s, uint64_t *pos, const uint8_t **payload, uint64_t *length,
                                uint32_t *flags)
    void fm_sender_close(fm_sender *s)
    fm_notifier *fm_sender_notifier(fm_sender *s)

    # requests: registered before the message is queued, waited for (or polled), then ended
    fm_request *fm_request_new(fm_sender *s, uint64_t id, int more)
    bint fm_request_ready(fm_request *r)
    int fm_request_wait(fm_request *r, int64_t deadline_ns)
    int fm_request_wait_direct(fm_sender *s, fm_request *r, uint32_t own, int64_t deadline_ns, int unwritten)
    void fm_sender_revoke_lease(fm_sender *s)
    int fm_sender_lend_fd(fm_sender *s, uint64_t *conn)
    int fm_sender_read_lent(fm_sender *s, uint64_t conn)
    uint8_t *fm_request_take_reply(fm_request *r, size_t *length)   # malloc'd: the caller frees it
    void fm_request_end(fm_sender *s, fm_request *r)

    ctypedef struct fm_receiver_config:
        uint64_t conn_ring_capacity
        uint32_t max_message
        uint32_t max_batch
        uint32_t max_connections
        uint32_t handshake_timeout_ms
        uint32_t max_sessions
        uint32_t ack_on_receipt
        uint32_t heartbeat_ms
        uint32_t dead_peer_ms
        uint64_t reply_hwm_bytes
        uint32_t dual_stack             # an IPv6 address takes IPv4 too (tcp://*:port)
        fm_auth_key keys[8]             # FM_MAX_KEYS; nkeys 0: no secret
        uint32_t nkeys
        fm_allow_net nets[32]           # FM_MAX_ALLOW; nnets 0: any address
        uint32_t nnets
        uint64_t allowed_keys[32]       # nallowed_keys 0: any key held
        uint32_t nallowed_keys
        uint32_t max_per_source         # 0: no limit
        uint32_t rate_msgs              # messages per second per connection; 0: no limit
        uint32_t rate_burst
        fm_tls_ctx *tls                 # NULL: plaintext; the engine frees it
        uint32_t busy_poll_ns           # polling before sleeping in a wait; 0: never
        uint32_t busy_poll_auto         # ...only after a short wait
        fm_allow_name names[32]         # FM_MAX_ALLOW; nnames 0: any certificate
        uint32_t nnames

    fm_receiver *fm_receiver_new(fm_ctx *ctx, const sockaddr *addr, socklen_t addrlen,
                                 const fm_receiver_config *cfg, fm_error *err)
    int fm_receiver_local_addr(fm_receiver *rx, sockaddr_storage *out, socklen_t *length)
    fm_rxbuf *fm_receiver_next_ready(fm_receiver *rx)
    void fm_receiver_done(fm_receiver *rx, fm_rxbuf *b, uint64_t consumed)
    int fm_receiver_wait(fm_receiver *rx, int64_t deadline_ns)
    int fm_receiver_wait_direct(fm_receiver *rx, int64_t deadline_ns)
    int fm_receiver_write_acks(fm_receiver *rx)
    void fm_receiver_send_replies(fm_receiver *rx)
    void fm_receiver_interrupt(fm_receiver *rx)
    void fm_receiver_stats(fm_receiver *rx, uint64_t *out)
    uint64_t fm_receiver_reply_bytes(fm_receiver *rx)
    # 0, -EAGAIN (reply_hwm_bytes reached), -EMSGSIZE, -ENOMEM
    int fm_receiver_reply(fm_receiver *rx, uint64_t session_id, uint64_t request_id, const uint8_t *data,
                          size_t len, int write_now)
    int fm_receiver_accept_error(fm_receiver *rx)
    void fm_receiver_last_refusal(fm_receiver *rx, char *buf, size_t length)
    void fm_receiver_close(fm_receiver *rx)
    fm_notifier *fm_receiver_notifier(fm_receiver *rx)

    fastmsg_ring_ctl *fm_rxbuf_ctl(fm_rxbuf *b)
    uint8_t *fm_rxbuf_data(fm_rxbuf *b)
    uint64_t fm_rxbuf_capacity(fm_rxbuf *b)
    int fm_rxbuf_closed(fm_rxbuf *b)
    uint64_t fm_rxbuf_session(fm_rxbuf *b)
    const char *fm_rxbuf_peer(fm_rxbuf *b)
    ctypedef struct fm_conn_info:
        sockaddr_storage addr
        char peer[256]                  # FM_TLS_NAME_MAX; "": none
    size_t fm_receiver_connections(fm_receiver *rx, fm_conn_info *out, size_t max)
    void fm_sender_peer(fm_sender *s, char *buf, size_t length)
    int fm_rxbuf_space_released(fm_rxbuf *b)
    void fm_rxbuf_ack_kick(fm_rxbuf *b)
    void fm_rxbuf_incref(fm_rxbuf *b)
    void fm_rxbuf_decref(fm_rxbuf *b)

cdef extern from "net/netio.h" nogil:
    int fastmsg_make_sockaddr(int family, const char *host, int port, uint32_t scope_id, const char *path,
                              sockaddr_storage *out, socklen_t *length)
    int fastmsg_sockaddr_host_port(const sockaddr_storage *addr, char *host, size_t hostlen, int *port)
    int fastmsg_probe_listener(const sockaddr *addr, socklen_t length, int64_t timeout_ns)
    int fastmsg_family_supported(int family)
