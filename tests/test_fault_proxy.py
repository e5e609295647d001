"""fastmsg.testing.FaultProxy against a plain echo server: each fault does what it says."""

import socket
import threading
import time

import pytest

from fastmsg.testing import FaultProxy
from transport_helpers import wait_for


class EchoServer:
    """Echoes every byte back on each accepted connection; keeps what it received; counts
    connections that ended in an RST."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.resets = 0
        self.received = bytearray()
        self.threads = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _echo(self, conn):
        conn.settimeout(10)
        with conn:
            try:
                while data := conn.recv(65536):
                    self.received += data
                    conn.sendall(data)
            except ConnectionResetError:
                self.resets += 1
            except OSError:
                pass

    def close(self):
        self.sock.close()
        for t in self.threads:
            t.join(timeout=10)


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


def client(proxy):
    host, port = proxy.endpoint[len("tcp://"):].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def echo_round(sock, data):
    sock.sendall(data)
    got = bytearray()
    while len(got) < len(data):
        chunk = sock.recv(65536)
        assert chunk, "the connection ended early"
        got += chunk
    return bytes(got)


def test_forwards_faithfully_until_told(echo):
    data = bytes(range(256)) * 4096  # 1 MiB
    with FaultProxy(echo.endpoint, seed=1) as proxy, client(proxy) as sock:
        assert echo_round(sock, data) == data
        # (the proxy counts a chunk just after writing it: the echo may be read first)
        wait_for(lambda: proxy.stats()["bytes_forwarded"] == 2 * len(data), what="the count")


def test_reset_after_resets_both_sides(echo):
    with FaultProxy(echo.endpoint, seed=2) as proxy:
        proxy.reset_after(3000)
        with client(proxy) as sock:
            with pytest.raises(ConnectionError):
                for _ in range(100):
                    echo_round(sock, b"x" * 1000)
        deadline = time.monotonic() + 10
        while echo.resets < 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # polling interval only: the server's count is what is awaited
        assert echo.resets == 1, "the server side did not see an RST"
        stats = proxy.stats()
        assert stats["resets"] == 1
        assert stats["bytes_forwarded"] <= 3000


def test_flip_bits_changes_bits_and_counts_them(echo):
    data = bytes(200_000)
    with FaultProxy(echo.endpoint, seed=3) as proxy, client(proxy) as sock:
        proxy.flip_bits(1e-4)
        got = echo_round(sock, data)
        flipped = sum(bin(b).count("1") for b in got)  # the data was all zero bits
        counted = proxy.stats()["bits_flipped"]
        assert 0 < flipped <= counted  # two flips of one bit (once each way) cancel out
        proxy.heal()
        assert echo_round(sock, data) == data


@pytest.mark.parametrize("direction", ["to_target", "to_client"])
def test_flip_bits_one_way_only(echo, direction):
    data = bytes(200_000)
    with FaultProxy(echo.endpoint, seed=6) as proxy, client(proxy) as sock:
        proxy.flip_bits(1e-4, direction=direction)
        got = echo_round(sock, data)
        assert got != data  # flipped on one of the two ways
        assert (bytes(echo.received) == data) == (direction == "to_client"), "flipped the wrong way"
        assert proxy.stats()["bits_flipped"] > 0


def test_black_hole_forwards_nothing_and_closes_nothing(echo):
    with FaultProxy(echo.endpoint, seed=4) as proxy, client(proxy) as sock:
        assert echo_round(sock, b"before") == b"before"
        proxy.black_hole()
        sock.sendall(b"into the hole")
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(100)  # neither data nor EOF nor a reset
        sock.settimeout(5)
        proxy.heal()
        got = b""
        while len(got) < len(b"into the hole"):
            got += sock.recv(100)
        assert got == b"into the hole"


def test_delay_holds_each_chunk(echo):
    with FaultProxy(echo.endpoint, seed=5) as proxy, client(proxy) as sock:
        proxy.delay(0.15)
        start = time.monotonic()
        assert echo_round(sock, b"late") == b"late"
        assert time.monotonic() - start >= 0.3  # held once each way


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="TCP only"):
        FaultProxy("ipc:///tmp/x")
    with FaultProxy("tcp://127.0.0.1:9") as proxy:
        with pytest.raises(ValueError, match="low <= high"):
            proxy.reset_after(10, 5)
        with pytest.raises(ValueError, match="rate"):
            proxy.flip_bits(2)
        with pytest.raises(ValueError, match="direction"):
            proxy.flip_bits(0.1, direction="up")
