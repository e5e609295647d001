"""Fixtures and helpers for the fastmsg.asyncio tests (test_asyncio.py, test_asyncio_requests.py):
each test runs on a new loop of each kind, the default one and uvloop."""

import asyncio

import pytest

import fastmsg.asyncio as fa

TEST_TIMEOUT = 30.0  # each test's coroutine, so that a lost wake-up fails instead of hanging


def _loop_factory(name):
    if name == "uvloop":
        uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (pip install '.[test]')")
        return uvloop.new_event_loop
    return asyncio.new_event_loop


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    """run(coro_fn, *args): runs coro_fn(*args) on a new loop of the parametrized kind."""
    factory = _loop_factory(request.param)

    def run(coro_fn, *args):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(asyncio.wait_for(coro_fn(*args), TEST_TIMEOUT))

    return run


@pytest.fixture
def pair():
    rx = fa.Receiver("tcp://127.0.0.1:0")
    tx = fa.Sender(rx.endpoint)
    yield rx, tx
    tx.close(linger=0)
    rx.close()


async def until_waiting(task):
    """Lets the loop run `task` up to its first await (it then waits on its future)."""
    await asyncio.sleep(0)
    assert not task.done()
