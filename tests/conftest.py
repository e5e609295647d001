import asyncio
import pathlib
import sys
import warnings

import pytest

import fastmsg
from pollers import POLLERS

REPO = pathlib.Path(__file__).resolve().parent.parent

if sys.platform == "win32":
    # fastmsg.asyncio watches sockets with loop.add_reader, which Windows's default event loop (the
    # ProactorEventLoop) lacks: the tests' asyncio.run() and new_event_loop() make selector loops,
    # as fastmsg.asyncio's documentation tells users to. (The policy API is deprecated from 3.14.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        asyncio.set_event_loop_policy(asyncio.WindowsSelectorEventLoopPolicy())


def pytest_report_header(config):
    return f"fastmsg {fastmsg.__version__} from {pathlib.Path(fastmsg.__file__).parent}; CRC32C kernel {fastmsg.crc32c_implementation}"


@pytest.fixture(params=POLLERS)
def ctx(request):
    """A Context with each poller backend, so that the portable poll() path is tested here too."""
    c = fastmsg.Context(poller=request.param)
    assert c.poller == request.param
    yield c
    c.close()


def pytest_sessionstart(session):
    # Tests must exercise the installed package, so that a packaging mistake fails them.
    location = pathlib.Path(fastmsg.__file__).resolve()
    if REPO / "src" in location.parents:
        raise RuntimeError(f"tests imported fastmsg from the source tree ({location}); install it first")
