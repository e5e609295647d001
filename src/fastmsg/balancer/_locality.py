"""Locality tiers for the "nearest" strategy: 0 for this host (ipc://, or an address of one of its
interfaces), 1 for the Balancer's own zone, 2 for the rest."""

import ipaddress
import socket

from fastmsg.endpoint import parse

THIS_HOST, SAME_ZONE, ELSEWHERE = 0, 1, 2


def is_local_address(host):
    """True if `host` (an IP address) belongs to this host: a loopback address, or one that a
    socket can bind to (the kernel's own answer, with no interface list to parse)."""
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if address.is_loopback:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
    except OSError:
        return False
    return True


def tier(endpoint, zone, own_zone):
    """The tier of `endpoint` (a resolved endpoint string) for a Balancer in `own_zone`."""
    ep = parse(endpoint)
    if ep.scheme == "ipc" or is_local_address(ep.host):
        return THIS_HOST
    if zone is not None and zone == own_zone:
        return SAME_ZONE
    return ELSEWHERE
