"""The public surface: which errors are raised (and what they carry), ipc:// socket files left by a
dead receiver, tcp://*:port, ending an iteration at close(), what close() returns, and a Message
used like bytes."""

import asyncio
import errno
import os
import socket
import subprocess
import sys
import tempfile
import threading

import pytest

import fastmsg
import fastmsg.asyncio as fa
from platforms import UNIX_SOCKETS, is_unix_socket_file, needs_unix_sockets
from transport_helpers import free_port, recv_n, wait_for


@pytest.fixture
def ipc_path(tmp_path):
    if not UNIX_SOCKETS:
        pytest.skip("ipc:// endpoints are Unix sockets, which Windows has only from 10 1803 on")
    path = str(tmp_path / "fm.sock")
    if len(path.encode()) > 100:  # (sun_path is short)
        path = os.path.join(tempfile.mkdtemp(prefix="fm", dir=tempfile.gettempdir()), "s")
    yield path
    if os.path.lexists(path) and not os.path.isdir(path):
        os.unlink(path)


def assert_delivers(endpoint, rx):
    """A Sender to `endpoint` gets a message through to `rx`."""
    with fastmsg.Sender(endpoint) as tx:
        tx.send(b"through")
        assert recv_n(rx, 1) == [b"through"]
        assert tx.flush(timeout=10)


# ---- 1. errors ----

def test_bind_in_use_is_a_bind_error():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        with pytest.raises(fastmsg.BindError) as e:
            fastmsg.Receiver(rx.endpoint)
    assert isinstance(e.value, fastmsg.FastmsgError) and isinstance(e.value, OSError)
    assert e.value.errno == errno.EADDRINUSE and e.value.endpoint == rx.endpoint
    assert rx.endpoint in str(e.value)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX only: Windows reserves no port range")
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may bind any port")
def test_bind_not_permitted_is_a_bind_error():
    try:  # (a host may lower the privileged range: then there is nothing to test)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 1))
        pytest.skip("this host lets anyone bind port 1")
    except PermissionError:
        pass
    with pytest.raises(fastmsg.BindError) as e:
        fastmsg.Receiver("tcp://127.0.0.1:1")
    assert e.value.errno == errno.EACCES


@needs_unix_sockets
def test_bind_in_missing_directory_is_a_bind_error(tmp_path):
    with pytest.raises(fastmsg.BindError) as e:
        fastmsg.Receiver("ipc://" + str(tmp_path / "missing" / "sock"))
    assert e.value.errno == errno.ENOENT


@pytest.mark.parametrize("make", [
    lambda ep: fastmsg.Sender(ep),
    lambda ep: fastmsg.Receiver(ep),
    lambda ep: fastmsg.Balancer([ep]),
], ids=["Sender", "Receiver", "Balancer"])
def test_unknown_host_is_a_resolve_error(make):
    with pytest.raises(fastmsg.ResolveError) as e:
        make("tcp://no-such-host.invalid:5555")  # .invalid never resolves (RFC 6761)
    assert isinstance(e.value, fastmsg.FastmsgError) and isinstance(e.value, socket.gaierror)
    assert e.value.errno in (socket.EAI_NONAME, socket.EAI_AGAIN, getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
    assert "no-such-host.invalid" in str(e.value)


def test_argument_errors_stay_value_and_type_errors():
    for bad in ("tcp://127.0.0.1", "udp://127.0.0.1:5", "ipc://relative"):
        with pytest.raises(ValueError) as e:
            fastmsg.Receiver(bad)
        assert not isinstance(e.value, fastmsg.FastmsgError)
    with pytest.raises(TypeError):
        fastmsg.Sender(5555)


def test_error_classes_are_exported():
    import fastmsg.errors
    for name in ("BindError", "ResolveError"):
        assert name in fastmsg.__all__ and getattr(fastmsg, name) is getattr(fastmsg.errors, name)
        assert issubclass(getattr(fastmsg, name), fastmsg.FastmsgError)


# ---- 2. Unix socket files ----

RECEIVER_THEN_WAIT = """
import sys, fastmsg
rx = fastmsg.Receiver(sys.argv[1])
print("bound", flush=True)
sys.stdin.read()
"""


def test_stale_socket_of_a_killed_receiver_is_replaced(ipc_path):
    child = subprocess.Popen([sys.executable, "-c", RECEIVER_THEN_WAIT, "ipc://" + ipc_path],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline() == b"bound\n"
    finally:
        child.kill()  # (SIGKILL; TerminateProcess on Windows)
        child.wait(timeout=30)
    assert is_unix_socket_file(ipc_path)  # left behind: nobody unlinked it
    with fastmsg.Receiver("ipc://" + ipc_path) as rx:
        assert_delivers("ipc://" + ipc_path, rx)


def test_live_socket_stays_in_use(ipc_path):
    with fastmsg.Receiver("ipc://" + ipc_path) as rx:
        with pytest.raises(fastmsg.BindError) as e:
            fastmsg.Receiver("ipc://" + ipc_path)
        assert e.value.errno == errno.EADDRINUSE
        assert_delivers("ipc://" + ipc_path, rx)  # the live receiver kept its socket


@pytest.mark.parametrize("kind", ["regular file", "directory"])
def test_non_socket_at_the_path_is_refused_saying_what_it_is(ipc_path, kind):
    if kind == "directory":
        os.mkdir(ipc_path)
    else:
        with open(ipc_path, "w") as f:
            f.write("keep me")
    try:
        with pytest.raises(fastmsg.BindError) as e:
            fastmsg.Receiver("ipc://" + ipc_path)
        assert f"{ipc_path} is a {kind}" in str(e.value)
        assert "in use" not in str(e.value) and e.value.errno != errno.EADDRINUSE
        if kind == "regular file":
            with open(ipc_path) as f:
                assert f.read() == "keep me"
        else:
            assert os.path.isdir(ipc_path)
    finally:
        if kind == "directory":
            os.rmdir(ipc_path)


# ---- 3. tcp://*:port ----

def test_star_binds_every_interface():
    port = free_port()
    with fastmsg.Receiver(f"tcp://*:{port}") as rx:
        assert rx.endpoint in (f"tcp://0.0.0.0:{port}", f"tcp://[::]:{port}")
        assert_delivers(f"tcp://127.0.0.1:{port}", rx)
        if rx.endpoint.startswith("tcp://[::]"):  # dual stack: IPv6 too
            assert_delivers(f"tcp://[::1]:{port}", rx)


def test_star_is_an_error_for_a_sender():
    for make in (fastmsg.Sender, lambda ep: fastmsg.Balancer([ep])):
        with pytest.raises(ValueError, match=r"'tcp://\*:5555' means every interface.*name the host"):
            make("tcp://*:5555")


# ---- 5. iteration ends at close() ----

def test_iteration_ends_when_closed_from_another_thread():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    got, failed = [], []

    def consume():
        try:
            for m in rx:
                with m:
                    got.append(bytes(m))
        except BaseException as exc:  # noqa: BLE001 (reported by the test)
            failed.append(exc)

    t = threading.Thread(target=consume)
    t.start()
    with fastmsg.Sender(rx.endpoint) as tx:
        tx.send_many([b"a", b"b"])
        wait_for(lambda: len(got) == 2, what="both messages")
        rx.close()  # the consumer waits in recv() by now, or soon will
        t.join(timeout=30)
        tx.close(linger=0)
    assert not t.is_alive() and failed == [] and got == [b"a", b"b"]


def test_iteration_ends_when_closed_between_messages():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    with fastmsg.Sender(rx.endpoint) as tx:
        tx.send(b"one")
        it = iter(rx)
        assert next(it) == b"one"
        rx.close()
        assert list(it) == []
        tx.close(linger=0)


def test_async_iteration_ends_when_closed():
    async def main():
        rx = fa.Receiver("tcp://127.0.0.1:0")
        tx = fa.Sender(rx.endpoint)
        got, first = [], asyncio.Event()

        async def consume():
            async for m in rx:
                with m:
                    got.append(bytes(m))
                first.set()
            return "ended"

        task = asyncio.create_task(consume())
        await tx.send(b"x")
        await asyncio.wait_for(first.wait(), 10)
        await asyncio.sleep(0)  # (the task is back in its recv())
        rx.close()
        assert await asyncio.wait_for(task, 10) == "ended" and got == [b"x"]
        tx.close(linger=0)

    asyncio.run(asyncio.wait_for(main(), 30))


# ---- 6. close() ----

def test_receiver_close_says_whether_something_was_left():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    with fastmsg.Sender(rx.endpoint) as tx:
        tx.send(b"left")
        assert fastmsg.poll([rx], timeout=10) == [rx]  # arrived, not taken
        assert rx.close() is False
        assert rx.close() is True  # (already closed)
        tx.close(linger=0)
    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    with fastmsg.Sender(rx.endpoint) as tx:
        tx.send(b"taken")
        assert recv_n(rx, 1) == [b"taken"]
        assert tx.flush(timeout=10)
        assert rx.close() is True


def test_receiver_close_takes_no_linger():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        with pytest.raises(TypeError):
            rx.close(linger=1.0)


def test_every_close_returns_a_bool():
    rx = fastmsg.Receiver("tcp://127.0.0.1:0")
    tx = fastmsg.Sender(rx.endpoint)
    balancer = fastmsg.Balancer([rx.endpoint])
    relay = fastmsg.Relay("tcp://127.0.0.1:0", [rx.endpoint])
    arx = fa.Receiver("tcp://127.0.0.1:0")
    atx = fa.Sender(arx.endpoint)
    for obj in (tx, balancer, relay, atx, arx, rx):
        result = obj.close(0) if obj in (tx, atx, balancer, relay) else obj.close()
        assert result is True, obj


def test_sender_close_false_when_unacknowledged():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        tx = fastmsg.Sender(rx.endpoint)
        tx.send(b"kept")
        held = rx.recv(timeout=10)  # (ack="released": unacknowledged while held)
        assert tx.close(linger=0) is False
        assert tx.unacknowledged == 1  # what close() gave up
        held.release()


def test_connected_is_false_after_close():
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        tx = fastmsg.Sender(rx.endpoint)
        wait_for(lambda: tx.connected, what="the connection")
        tx.close()
        assert tx.connected is False and tx.unacknowledged == 0
        atx = fa.Sender(rx.endpoint)
        atx.close(0)
        assert atx.connected is False


# ---- 7. Message like bytes ----

def test_message_index_slice_decode():
    data = "grüße, fastmsg".encode()
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx, fastmsg.Sender(rx.endpoint) as tx:
        tx.send(data)
        m = rx.recv(timeout=10)
        assert m[0] == data[0] and m[-1] == data[-1] and type(m[0]) is int
        for s in (slice(2, 10), slice(None, 3), slice(-5, None), slice(None, None, 2), slice(8, 2), slice(-100, 100)):
            assert m[s] == data[s] and type(m[s]) is bytes, s
        with pytest.raises(IndexError):
            m[len(data)]
        with pytest.raises(TypeError):
            m["a"]
        assert m.decode() == data.decode() and m.decode("latin-1") == data.decode("latin-1")
        assert m[:4].decode() == "gr\u00fc"
        with pytest.raises(UnicodeDecodeError):
            m.decode("ascii")
        assert m.decode("ascii", errors="replace") == data.decode("ascii", errors="replace")
        assert m.tobytes() == data and len(m) == len(data)
        assert m == data and m == bytearray(data) and m == memoryview(data) and m != data + b"!"
        assert m == memoryview(bytes(b for c in data for b in (c, 0)))[::2]  # (a strided view)
        assert b"fast" in m and b"slow" not in m and data[0] in m
        m.release()
        for use in (lambda: m[0], lambda: m[1:3], lambda: m.decode(), lambda: m.tobytes(),
                    lambda: m == data, lambda: b"a" in m, lambda: len(m)):
            with pytest.raises(fastmsg.Closed):
                use()
