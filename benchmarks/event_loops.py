"""What the asyncio benchmarks share: optional peers (pyzmq) and the event loops to run on
(the default loop, and uvloop when installed)."""

import asyncio
import importlib


def optional(module):
    """The module, or None where it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


zmq = optional("zmq")
uvloop = optional("uvloop")
LOOPS = {"asyncio": asyncio.new_event_loop, **({"uvloop": uvloop.new_event_loop} if uvloop else {})}
