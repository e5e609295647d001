# Declarations of csrc/route/: rendezvous hashing, the router state and the stateful strategies.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t

cdef extern from "route/siphash.h" nogil:
    ctypedef struct fm_sipkey:
        uint64_t k0
        uint64_t k1

    fm_sipkey fm_sipkey_from_bytes(const uint8_t *key)
    uint64_t fm_siphash13(fm_sipkey k, const void *data, size_t length)
    uint64_t fm_siphash(const uint8_t *key, const void *data, size_t length, int c_rounds, int d_rounds)
    void fm_sipkey_from_seed(const uint8_t *seed, size_t length, uint8_t *key_out)

cdef extern from "route/keyhash.h" nogil:
    void fm_keyhash_init()
    int fm_keyhash_select(const char *name)
    const char *fm_keyhash_name()
    const char *const *fm_keyhash_kernel_names()
    int fm_keyhash_runs(const char *name)

cdef extern from "route/unitlog.h" nogil:
    double fm_neg_log_unit(uint64_t h)

cdef extern from "route/rendezvous.h" nogil:
    ctypedef struct fm_rdv_member:
        uint64_t a
        uint64_t b

    ctypedef struct fm_rdv_table:
        fm_sipkey key
        const fm_rdv_member *member
        const double *inv_weight
        const uint8_t *up
        size_t n
        int all_up

    ctypedef struct fm_rdv_score:
        pass

    uint64_t fm_rdv_key_hash(const fm_rdv_table *t, const void *key, size_t length)
    int32_t fm_rdv_route(const fm_rdv_table *t, uint64_t kh)
    void fm_rdv_rank(const fm_rdv_table *t, uint64_t kh, fm_rdv_score *scratch, int32_t *out)
    void fm_rdv_route_u64(const fm_rdv_table *t, const uint64_t *keys, size_t count, int32_t *out)

cdef extern from "route/router.h" nogil:
    ctypedef enum fm_route_strategy:
        FM_ROUTE_ROUND_ROBIN
        FM_ROUTE_WEIGHTED
        FM_ROUTE_HASH
        FM_ROUTE_LEAST_LOADED
        FM_ROUTE_LATENCY
        FM_ROUTE_NEAREST
        FM_ROUTE_BROADCAST

    ctypedef struct fm_route_member:
        uint8_t up
        uint8_t saturated
        uint8_t has_rtt
        uint64_t unacked

    ctypedef struct fm_router:
        fm_route_strategy strategy
        size_t n
        fm_route_member *m
        int64_t clock_ns

    void fm_router_init(fm_router *r, fm_route_strategy strategy, const uint8_t *key)
    void fm_router_free(fm_router *r)
    int fm_router_set_members(fm_router *r, const uint64_t *ids, const double *weights,
                              const uint32_t *tiers, size_t n, size_t *dup)
    void fm_router_set_up(fm_router *r, size_t i, int up)
    void fm_router_set_load(fm_router *r, size_t i, uint64_t unacked, int saturated)
    fm_rdv_table fm_router_table(const fm_router *r)
    int64_t fm_router_now(const fm_router *r)

cdef extern from "route/ewma.h" nogil:
    void fm_ewma_observe(fm_route_member *m, uint64_t rtt_ns, int64_t now)
    double fm_ewma_at(const fm_route_member *m, int64_t now)

cdef extern from "route/pick.h" nogil:
    int32_t fm_pick(fm_router *r)
