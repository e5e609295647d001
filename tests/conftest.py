import pathlib

import pytest

import fastmsg
from pollers import POLLERS

REPO = pathlib.Path(__file__).resolve().parent.parent


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
