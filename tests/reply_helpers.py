"""Helpers for tests/test_replies.py: a replier that runs in a thread or in a spawned child process
(whose entry point must be importable by name), and the answer every request expects."""

import threading

import fastmsg


def answer(request):
    """The reply a replier gives to `request` (bytes): checkable, and different from it."""
    return b"re:" + bytes(request)[::-1]


def serve(rx, stop, seen=None):
    """Answers every request on rx until `stop` is set; counts each request's bytes in `seen`."""
    while not stop.is_set():
        try:
            batch = rx.recv_many(256, timeout=0.1)
        except fastmsg.Timeout:
            continue
        except fastmsg.Closed:
            return
        for m in batch:
            with m:
                if seen is not None:
                    key = bytes(m)
                    seen[key] = seen.get(key, 0) + 1
                m.reply(answer(m))


def serve_in_thread(rx, seen=None):
    """A replier thread on rx; returns (thread, stop event)."""
    stop = threading.Event()
    t = threading.Thread(target=serve, args=(rx, stop, seen), daemon=True)
    t.start()
    return t, stop


def serve_process(port, ready):
    """A replier process on 127.0.0.1:port that answers until killed."""
    rx = fastmsg.Receiver(f"tcp://127.0.0.1:{port}")
    ready.set()
    serve(rx, threading.Event())
