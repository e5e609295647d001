import ipaddress
import socket
import sys

import pytest
from hypothesis import given, strategies as st

from fastmsg.endpoint import MAX_IPC_PATH, Endpoint, parse

label = st.from_regex(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,20}[A-Za-z0-9_])?", fullmatch=True)
host_names = st.lists(label, min_size=1, max_size=4).map(".".join).filter(lambda h: not h.replace(".", "").isdigit())
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ports = st.integers(0, 65535)
tcp_endpoints = st.builds(Endpoint.tcp, st.one_of(host_names, ipv4, ipv6), ports)
path_chars = st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))
ipc_paths = st.lists(st.text(path_chars, min_size=1, max_size=12), min_size=1, max_size=5).map(
    lambda parts: "/" + "/".join(parts)).filter(lambda p: len(p.encode()) <= MAX_IPC_PATH)
ipc_endpoints = st.builds(Endpoint.ipc, ipc_paths)


@given(st.one_of(tcp_endpoints, ipc_endpoints))
def test_round_trip(e):
    text = str(e)
    assert parse(text) == e
    assert str(parse(text)) == text


@given(ipv6, ports)
def test_ipv6_in_brackets(host, port):
    e = parse(f"tcp://[{host}]:{port}")
    assert (e.host, e.port) == (host, port)
    assert str(e) == f"tcp://[{host}]:{port}"
    assert e.socket_family() == socket.AF_INET6


def test_examples():
    assert parse("tcp://127.0.0.1:5555") == Endpoint("tcp", "127.0.0.1", 5555)
    assert parse("TCP://localhost:0") == Endpoint("tcp", "localhost", 0)
    assert parse("tcp://[::1]:9").sockaddr() == ("::1", 9)
    assert parse("tcp://example.com.:65535").port == 65535
    assert parse("ipc:///run/app.sock") == Endpoint("ipc", path="/run/app.sock")
    assert parse("ipc:///run/app.sock").sockaddr() == "/run/app.sock"
    assert parse("tcp://10.0.0.1:1").socket_family() == socket.AF_INET
    assert parse("tcp://db.internal:1").socket_family() == socket.AF_UNSPEC
    e = parse("tcp://127.0.0.1:1")
    assert parse(e) is e
    with pytest.raises(AttributeError):
        e.port = 2  # frozen


def test_longest_ipc_path():
    path = "/" + "p" * (MAX_IPC_PATH - 1)
    assert parse("ipc://" + path).path == path
    with pytest.raises(ValueError, match=f"path is {MAX_IPC_PATH + 1} bytes; .* at most {MAX_IPC_PATH}"):
        parse("ipc://" + path + "p")
    # the limit is in bytes of the encoded path, not characters
    with pytest.raises(ValueError, match="at most"):
        parse("ipc:///" + "é" * (MAX_IPC_PATH // 2 + 1))


BAD = [
    ("127.0.0.1:5555", "missing scheme"),
    ("", "missing scheme"),
    ("udp://127.0.0.1:5", "unknown scheme 'udp'"),
    ("://127.0.0.1:5", "unknown scheme ''"),
    ("tcp://127.0.0.1", "missing port"),
    ("tcp://127.0.0.1:", "missing port"),
    ("tcp://127.0.0.1:65536", "invalid port '65536'"),
    ("tcp://127.0.0.1:-1", "invalid port '-1'"),
    ("tcp://127.0.0.1:+1", "invalid port '\\+1'"),
    ("tcp://127.0.0.1:80x", "invalid port '80x'"),
    ("tcp://127.0.0.1:٣", "invalid port"),
    ("tcp://127.0.0.1:5/path", "invalid port '5/path'"),
    ("tcp://:5555", "empty host"),
    ("tcp://[]:5555", "empty host"),
    ("tcp://[::1:5555", "'\\[' but no '\\]'"),
    ("tcp://::1]:5555", "'\\]' but no '\\['"),
    ("tcp://::1:5555", "must be in brackets"),
    ("tcp://[::1]", "missing port after '\\]'"),
    ("tcp://[::1]5555", "unexpected '5555' after '\\]'"),
    ("tcp://[127.0.0.1]:5", "brackets hold an IPv6 address"),
    ("tcp://[::g]:5", "invalid IPv6 address '::g'"),
    ("tcp://256.1.1.1:5", "invalid IPv4 address"),
    ("tcp://host name:5", "invalid host name 'host name'"),
    ("tcp://-bad.example:5", "invalid host name"),
    ("tcp://a..b:5", "invalid host name"),
    ("tcp://*.example:5", "invalid host name"),  # ("*" alone is every interface)
    ("tcp://[*]:5", "brackets hold an IPv6 address"),
    ("ipc://", "empty path"),
    ("ipc://run/app.sock", "relative path 'run/app.sock'"),
    ("ipc://" + "/" + "x" * 200, "path is 201 bytes"),
    ("ipc:///run/a\0b", "NUL byte"),
    ("tcp://127.0.0.1:5\0", "NUL byte"),
    (" tcp://127.0.0.1:5", "unknown scheme ' tcp'"),
    ("tcp://127.0.0.1:5\n", "invalid port '5"),
]


@pytest.mark.parametrize("text,problem", BAD)
def test_bad_endpoints(text, problem):
    with pytest.raises(ValueError, match=problem) as info:
        parse(text)
    assert repr(text) in str(info.value)  # the message names the endpoint


@pytest.mark.parametrize("value", [b"tcp://127.0.0.1:5", None, 5, ("127.0.0.1", 5)])
def test_not_a_string(value):
    with pytest.raises(TypeError, match="endpoint is a str"):
        parse(value)


def test_constructor_checks():
    with pytest.raises(ValueError, match="port 70000 out of range"):
        Endpoint.tcp("localhost", 70000)
    with pytest.raises(ValueError, match="unknown scheme 'udp'"):
        Endpoint("udp", "h", 1)
    with pytest.raises(ValueError, match="relative path"):
        Endpoint.ipc("a.sock")
    with pytest.raises(TypeError):
        Endpoint.tcp("localhost", "80")
    with pytest.raises(TypeError):
        Endpoint("ipc", host="x", path="/x")


def test_ipc_is_a_unix_socket():
    family = getattr(socket, "AF_UNIX", 1)
    assert parse("ipc:///x").socket_family() == family
    assert parse("ipc:///run/a.sock").resolve() == [(family, "/run/a.sock")]


def test_ipc_resolves_where_python_has_no_unix_sockets(monkeypatch):
    """As on Windows: Python's socket module names no AF_UNIX, but the engine makes the socket,
    with Winsock's AF_UNIX (1)."""
    monkeypatch.delattr(socket, "AF_UNIX", raising=False)
    ep = parse("ipc:///run/a.sock")
    assert ep.socket_family() == 1 and ep.resolve() == [(1, "/run/a.sock")]


@pytest.mark.parametrize("path", ["C:/ProgramData/app.sock", "C:\\ProgramData\\app.sock", "d:\\a.sock",
                                  "/run/app.sock", "\\\\server\\share\\app.sock"])
def test_windows_absolute_paths(monkeypatch, path):
    monkeypatch.setattr(sys, "platform", "win32")
    assert parse("ipc://" + path).path == path
    assert str(parse("ipc://" + path)) == "ipc://" + path


@pytest.mark.parametrize("path", ["app.sock", "C:app.sock", "run/app.sock"])
def test_windows_relative_paths_are_refused(monkeypatch, path):
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(ValueError, match=r"relative path .* like ipc://C:/ProgramData/app.sock"):
        parse("ipc://" + path)


@pytest.mark.skipif(sys.platform == "win32", reason="a drive letter makes a path absolute on Windows")
def test_a_windows_path_is_relative_on_posix():
    with pytest.raises(ValueError, match="relative path 'C:/app.sock'"):
        parse("ipc://C:/app.sock")


def test_resolve():
    assert parse("tcp://127.0.0.1:7").resolve() == [(socket.AF_INET, ("127.0.0.1", 7))]
    families = {family for family, addr in parse("tcp://localhost:7").resolve()}
    assert families and families <= {socket.AF_INET, socket.AF_INET6}
    for family, addr in parse("tcp://localhost:7").resolve():
        assert ipaddress.ip_address(addr[0].split("%")[0]).is_loopback and addr[1] == 7


def test_resolve_unknown_name():
    # .invalid never resolves (RFC 6761)
    with pytest.raises(socket.gaierror, match="cannot resolve host 'no-such-host.invalid' of endpoint 'tcp://no-such-host.invalid:80'"):
        parse("tcp://no-such-host.invalid:80").resolve()


def test_star_is_every_interface_for_binding_only():
    ep = parse("tcp://*:5555")
    assert (ep.host, ep.port, str(ep)) == ("*", 5555, "tcp://*:5555")
    [(family, addr)] = ep.resolve(passive=True)
    assert (family, addr[:2]) in ((socket.AF_INET6, ("::", 5555)), (socket.AF_INET, ("0.0.0.0", 5555)))
    with pytest.raises(ValueError, match="only a Receiver can bind"):
        ep.resolve()
