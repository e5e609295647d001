# Who may talk to whom: shared keys (secret=, secrets=, key_id=) and a Receiver's allow list, as
# the engine takes them (docs/security.md). Checked here, once, at construction.

import hashlib
import ipaddress

MIN_SECRET_BYTES = 16  # shorter keys are guessable offline from one captured handshake


def key_id_number(key_id):
    """The 64-bit id a key has on the wire: an int as it is, a str by the first 8 bytes (little
    endian) of its SHA-256, so that both sides name a key the same way."""
    if isinstance(key_id, bool) or not isinstance(key_id, (int, str)):
        raise TypeError(f"a key id is an int or a str, got {key_id!r}")
    if isinstance(key_id, str):
        return int.from_bytes(hashlib.sha256(key_id.encode()).digest()[:8], "little")
    if not 0 <= key_id < 1 << 64:
        raise ValueError(f"a key id must be in 0..2**64-1, got {key_id}")
    return key_id


cdef int _fill_key(fm_auth_key *k, object key_id, object secret) except -1:
    cdef bytes raw = bytes(memoryview(secret).cast("B"))
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(f"a secret must have at least {MIN_SECRET_BYTES} bytes, got {len(raw)}")
    if len(raw) > FASTMSG_AUTH_KEY_MAX:  # (as HMAC itself does with a longer key)
        raw = hashlib.sha256(raw).digest()
    k.id = key_id_number(key_id)
    k.len = len(raw)
    memcpy(k.bytes, <const char *>raw, len(raw))
    return 0


cdef int _sender_key(fm_sender_config *cfg, object secret, object key_id) except -1:
    memset(&cfg.key, 0, sizeof(cfg.key))
    if secret is None:
        if key_id is not None:
            raise ValueError("key_id= needs secret=")
        return 0
    return _fill_key(&cfg.key, 0 if key_id is None else key_id, secret)


def _parse_allow(allow):
    """(networks, key ids, certificate names) of an allow list; ValueError naming a bad entry."""
    nets, keys, names = [], [], []
    for entry in allow:
        if not isinstance(entry, str):
            raise TypeError(f"allow= entries are strings, got {entry!r}")
        if entry.startswith("key:"):
            rest = entry[4:]
            keys.append(key_id_number(int(rest) if rest.isdigit() else rest))
        elif entry.startswith(("cn:", "san:", "cert:")):
            prefix, _, name = entry.partition(":")
            names.append(({"cn": FM_TLS_NAME_CN, "san": FM_TLS_NAME_SAN, "cert": FM_TLS_NAME_ANY}[prefix], name))
        else:
            try:
                nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(f"allow= entry {entry!r} is neither a network (10.0.0.0/8, ::1/128, "
                                 "127.0.0.1), nor key:<id>, nor cert:<name> / cn:<name> / san:<name>") from None
    return nets, keys, names


cdef int _receiver_access(fm_receiver_config *cfg, object secret, object secrets, object allow,
                          object max_connections_per_source, bint tls) except -1:
    cfg.nkeys = cfg.nnets = cfg.nallowed_keys = 0
    if secret is not None and secrets is not None:
        raise ValueError("give secret= or secrets=, not both")
    keys = {0: secret} if secret is not None else dict(secrets or {})
    if secrets is not None and not keys:
        raise ValueError("secrets= holds no key")
    if len(keys) > FM_MAX_KEYS:
        raise ValueError(f"a Receiver holds at most {FM_MAX_KEYS} keys, got {len(keys)}")
    seen = set()
    for kid, key in keys.items():
        _fill_key(&cfg.keys[cfg.nkeys], kid, key)
        if cfg.keys[cfg.nkeys].id in seen:
            raise ValueError(f"two keys have the id {kid!r}")
        seen.add(cfg.keys[cfg.nkeys].id)
        cfg.nkeys += 1
    nets, allowed, names = _parse_allow(allow or ())
    if names and not tls:  # they name a certificate's subject: only a TLS handshake can show one
        raise ValueError(f"allow= entries {[n for _, n in names]} match certificate names, which need ssl=")
    if allowed and not keys:
        raise ValueError("allow= key:<id> entries need secret= or secrets=")
    if len(nets) > FM_MAX_ALLOW or len(allowed) > FM_MAX_ALLOW or len(names) > FM_MAX_ALLOW:
        raise ValueError(f"allow= holds at most {FM_MAX_ALLOW} networks, {FM_MAX_ALLOW} key ids and "
                         f"{FM_MAX_ALLOW} certificate names")
    for kind, name in names:
        raw = name.encode()
        if not 0 < len(raw) < FM_TLS_NAME_MAX or b"\0" in raw:
            raise ValueError(f"allow= certificate name {name!r} must have 1..{FM_TLS_NAME_MAX - 1} bytes")
        cfg.names[cfg.nnames].kind = kind
        memcpy(cfg.names[cfg.nnames].name, <const char *>raw, len(raw) + 1)
        cfg.nnames += 1
    for net in nets:
        packed = net.network_address.packed
        cfg.nets[cfg.nnets].family = net.version
        cfg.nets[cfg.nnets].prefix = net.prefixlen
        memset(cfg.nets[cfg.nnets].addr, 0, 16)
        memcpy(cfg.nets[cfg.nnets].addr, <const char *>packed, len(packed))
        cfg.nnets += 1
    for kid in allowed:
        cfg.allowed_keys[cfg.nallowed_keys] = kid
        cfg.nallowed_keys += 1
    if max_connections_per_source is None:
        cfg.max_per_source = 0
    elif not 1 <= max_connections_per_source <= MAX_RECEIVER_LIMIT:
        raise ValueError(f"max_connections_per_source must be in 1..{MAX_RECEIVER_LIMIT}, "
                         f"got {max_connections_per_source}")
    else:
        cfg.max_per_source = max_connections_per_source
    return 0


cdef int _receiver_rate(fm_receiver_config *cfg, object rate_limit) except -1:
    """rate_limit=(messages_per_s, burst): each connection's token bucket, or None."""
    cfg.rate_msgs = cfg.rate_burst = 0
    if rate_limit is None:
        return 0
    try:
        rate, burst = rate_limit
    except (TypeError, ValueError):
        raise TypeError(f"rate_limit is (messages_per_s, burst), got {rate_limit!r}") from None
    if not 1 <= rate <= 1 << 31 or not 1 <= burst <= 1 << 31:
        raise ValueError(f"rate_limit's rate and burst must be in 1..{1 << 31}, got {rate_limit!r}")
    cfg.rate_msgs, cfg.rate_burst = rate, burst
    return 0
