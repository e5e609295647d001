"""Endpoints: ``tcp://host:port`` and ``ipc:///absolute/path`` (on Windows also ``ipc://C:/path``).

``parse(text)`` checks an endpoint and returns an `Endpoint`; ``str(endpoint)`` gives the text back
(an IPv6 address in brackets). Nothing is resolved or opened here except by `Endpoint.resolve`.
``tcp://*:port`` is every interface, for a Receiver to bind; a Sender needs a host to connect to.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from dataclasses import dataclass
from typing import NoReturn, cast

from fastmsg.errors import ResolveError

__all__ = ["ANY_HOST", "MAX_IPC_PATH", "Endpoint", "parse"]

ANY_HOST = "*"  # tcp://*:port: every interface (IPv6 and IPv4 where the host has IPv6)

# sockaddr_un.sun_path is 108 bytes on Linux and Windows and 104 on macOS and the BSDs; a path must leave room
# for its terminating NUL, so the longest usable path is one byte less.
_SUN_PATH = 104 if sys.platform == "darwin" or "bsd" in sys.platform else 108
MAX_IPC_PATH = _SUN_PATH - 1

_SCHEMES = ("tcp", "ipc")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")


def _check_host(host: str) -> str | None:
    """None if `host` is a valid IPv4 address, IPv6 address or host name; else what is wrong."""
    if not host:
        return "empty host"
    if host == ANY_HOST:
        return None
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"invalid IPv6 address {host!r}"
        return None
    if host.replace(".", "").isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"invalid IPv4 address {host!r}"
        return None
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253 or not name or not all(_LABEL.match(label) for label in name.split(".")):
        return f"invalid host name {host!r} (letters, digits, '-', '_' and dots)"
    return None


@dataclass(frozen=True)
class Endpoint:
    """A checked endpoint: ``scheme`` is "tcp" (with ``host``, ``port``) or "ipc" (with ``path``)."""

    scheme: str
    host: str | None = None
    port: int | None = None
    path: str | None = None

    def __post_init__(self) -> None:
        if self.scheme == "tcp":
            if not isinstance(self.host, str) or type(self.port) is not int or self.path is not None:
                raise TypeError("a tcp Endpoint needs host (str) and port (int), and no path")
            problem = _check_host(self.host)
            if problem is None and not 0 <= self.port <= 65535:
                problem = f"port {self.port} out of range 0..65535"
        elif self.scheme == "ipc":
            if not isinstance(self.path, str) or self.host is not None or self.port is not None:
                raise TypeError("an ipc Endpoint needs path (str), and no host or port")
            problem = _check_path(self.path)
        else:
            problem = f"unknown scheme {self.scheme!r} (expected tcp or ipc)"
        if problem is not None:
            raise ValueError(f"invalid endpoint {str(self)!r}: {problem}")

    @classmethod
    def tcp(cls, host: str, port: int) -> Endpoint:
        """tcp://host:port, checked."""
        return cls("tcp", host=host, port=port)

    @classmethod
    def ipc(cls, path: str) -> Endpoint:
        """ipc://path, checked (an absolute path)."""
        return cls("ipc", path=path)

    def __str__(self) -> str:
        if self.scheme == "ipc":
            return f"ipc://{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def socket_family(self) -> int:
        """AF_UNIX for ipc, AF_INET / AF_INET6 for an address, AF_UNSPEC for a host name."""
        if self.scheme == "ipc":
            return self._unix_family()
        if ":" in cast(str, self.host):  # (a tcp Endpoint has a host)
            return socket.AF_INET6
        if self.host == ANY_HOST:
            return socket.AF_INET6 if _dual_stack() else socket.AF_INET
        try:
            ipaddress.IPv4Address(self.host)
        except ValueError:
            return socket.AF_UNSPEC
        return socket.AF_INET

    def _unix_family(self) -> int:
        """AF_UNIX. Python's socket module on Windows does not name it, though Windows 10 (1803
        and later) has Unix sockets: the engine makes them, with Winsock's AF_UNIX, also 1."""
        return cast(int, getattr(socket, "AF_UNIX", 1))

    def sockaddr(self) -> str | tuple[str, int]:
        """The address as the socket module takes it: the path for ipc, (host, port) for tcp."""
        if self.scheme == "ipc":
            return cast(str, self.path)
        return (cast(str, self.host), cast(int, self.port))

    def resolve(self, passive: bool = False) -> list[tuple[int, object]]:
        """[(family, sockaddr), ...] to try in order; host names are looked up with getaddrinfo.

        `passive` asks for addresses to bind to. An unresolvable name raises ResolveError (a
        FastmsgError and a socket.gaierror) naming the endpoint. The host "*" is for binding:
        [::] taking IPv4 too where the host has IPv6, else 0.0.0.0; not passive, ValueError."""
        if self.scheme == "ipc":
            return [(self._unix_family(), self.path)]
        if self.host == ANY_HOST:
            if not passive:
                raise ValueError(f"'{self}' means every interface, which only a Receiver can bind; "
                                 f"name the host to connect to, like tcp://127.0.0.1:{self.port}")
            return [(socket.AF_INET6, ("::", self.port, 0, 0)) if _dual_stack() else (socket.AF_INET, ("0.0.0.0", self.port))]
        flags = socket.AI_PASSIVE if passive else 0
        try:
            infos = socket.getaddrinfo(self.host, self.port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, flags)
        except socket.gaierror as e:
            raise ResolveError(e.errno, f"cannot resolve host {self.host!r} of endpoint '{self}': {e.strerror}") from e
        out: list[tuple[int, object]] = []
        for family, _type, _proto, _name, addr in infos:
            if (family, addr) not in out:
                out.append((family, addr))
        return out


_dual_stack_here: bool | None = None  # (found once per process)


def _dual_stack() -> bool:
    """True if this host can bind an IPv6 socket that takes IPv4 too (a host without IPv6, or
    with it switched off, binds tcp://*:port on IPv4 only)."""
    global _dual_stack_here
    if _dual_stack_here is None:
        _dual_stack_here = _probe_dual_stack()
    return _dual_stack_here


def _probe_dual_stack() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(("::", 0))
    except OSError:
        return False
    return True


# An absolute path: /... on POSIX; on Windows also C:\... or C:/..., and \\server\share\...
_WINDOWS_ABSOLUTE = re.compile(r"[A-Za-z]:[\\/]|[\\/]")


def _is_absolute(path: str) -> bool:
    if sys.platform == "win32":
        return _WINDOWS_ABSOLUTE.match(path) is not None
    return path.startswith("/")


def _check_path(path: str) -> str | None:
    if "\0" in path:
        return "contains a NUL byte"
    if not path:
        return "empty path (expected ipc:///absolute/path)"
    if not _is_absolute(path):
        example = "ipc://C:/ProgramData/app.sock" if sys.platform == "win32" else "ipc:///run/app.sock"
        return f"relative path {path!r}; ipc needs an absolute path, like {example}"
    size = len(os.fsencode(path))
    if size > MAX_IPC_PATH:
        return (f"path is {size} bytes; a Unix socket path holds at most {MAX_IPC_PATH} on this "
                f"platform (sockaddr_un has {_SUN_PATH} with the terminating NUL)")
    return None


def _fail(text: str, problem: str) -> NoReturn:
    raise ValueError(f"invalid endpoint {text!r}: {problem}")


def parse(text: str | Endpoint) -> Endpoint:
    """Check `text` and return its Endpoint; ValueError naming `text` and the problem if invalid."""
    if isinstance(text, Endpoint):
        return text
    if not isinstance(text, str):
        raise TypeError(f"an endpoint is a str like 'tcp://127.0.0.1:5555', not {type(text).__name__}")
    if "\0" in text:
        _fail(text, "contains a NUL byte")
    scheme, sep, rest = text.partition("://")
    if not sep:
        _fail(text, "missing scheme (expected tcp://host:port or ipc:///path)")
    scheme_l = scheme.lower()
    if scheme_l not in _SCHEMES:
        _fail(text, f"unknown scheme {scheme!r} (expected tcp or ipc)")
    if scheme_l == "ipc":
        problem = _check_path(rest)
        if problem:
            _fail(text, problem)
        return Endpoint("ipc", path=rest)

    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            _fail(text, "IPv6 address has '[' but no ']'")
        host, after = rest[1:close], rest[close + 1:]
        if not host:
            _fail(text, "empty host")
        if ":" not in host:
            _fail(text, f"brackets hold an IPv6 address, not {host!r}")
        if not after.startswith(":"):
            _fail(text, "missing port after ']' (expected [address]:port)" if not after
                  else f"unexpected {after!r} after ']' (expected :port)")
        port_text = after[1:]
    else:
        if "]" in rest:
            _fail(text, "IPv6 address has ']' but no '['")
        host, sep, port_text = rest.rpartition(":")
        if not sep:
            _fail(text, "missing port (expected tcp://host:port; 0 picks a free port)")
        if ":" in host:
            _fail(text, "an IPv6 address must be in brackets, like tcp://[::1]:5555")
    if not port_text:
        _fail(text, "missing port (expected tcp://host:port; 0 picks a free port)")
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5 or int(port_text) > 65535:
        _fail(text, f"invalid port {port_text!r} (expected 0..65535)")
    problem = _check_host(host)
    if problem:
        _fail(text, problem)
    return Endpoint("tcp", host=host, port=int(port_text))
