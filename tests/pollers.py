"""The poller backends the tests use: the platform's own (epoll on Linux, kqueue on macOS and the
BSDs) and poll(), so that the portable path is tested everywhere. On Windows the only one is
WSAPoll ("poll" names it there too)."""

import sys

NATIVE_POLLER = ("epoll" if sys.platform.startswith("linux") else "kqueue" if sys.platform == "darwin" or "bsd" in sys.platform
                 else "wsapoll" if sys.platform == "win32" else None)
POLLERS = ["wsapoll"] if sys.platform == "win32" else [p for p in (NATIVE_POLLER, "poll") if p]
