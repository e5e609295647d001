"""Membership by DNS: an endpoint whose host is a name stands for one member per address the name
resolves to, looked up again every `resolve_interval` seconds."""

import ipaddress
import socket

from fastmsg.endpoint import Endpoint, parse
from fastmsg.errors import ResolveError


def system_resolver(host, port):
    """The addresses `host` resolves to for TCP, in the resolver's order, each once; ResolveError
    if it resolves to nothing."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ResolveError(e.errno, f"cannot resolve host {host!r}: {e.strerror}") from e
    seen = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and sockaddr[0] not in seen:
            seen.append(sockaddr[0])
    return seen


def is_name(endpoint):
    """True if the endpoint's host is a name (to resolve) rather than an address or a path."""
    ep = parse(endpoint)
    if ep.scheme != "tcp" or ep.host == "*":  # (a Sender refuses "*", saying why)
        return False
    try:
        ipaddress.ip_address(ep.host.split("%")[0])
    except ValueError:
        return True
    return False


def expand(endpoint, resolver):
    """The endpoints `endpoint` stands for now: itself, or one per address of its host name.
    An empty list if the name resolves to nothing (the resolver's error is raised)."""
    if not is_name(endpoint):
        return [str(parse(endpoint))]
    ep = parse(endpoint)
    return [str(Endpoint.tcp(address, ep.port)) for address in resolver(ep.host, ep.port)]
