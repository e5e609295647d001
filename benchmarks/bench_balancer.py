"""What a Balancer costs per message: one Balancer.send() per 64-byte message, round_robin (and
least_loaded, and hash with a key per message out of 1,024) over four receivers, against one
Sender.send() per message to one receiver.

Run: pytest benchmarks/bench_balancer.py --benchmark-group-by=group
  or python benchmarks/bench_balancer.py   (alternating rounds: medians of the rates and ratios)
The receivers run in a process of their own (ack="received", each message released at once), so
that the sending process has the GIL to itself; TCP loopback. A round is COUNT sends and the
flush() that waits for their acknowledgements.
"""

import subprocess
import sys
import time

import pytest

import fastmsg

COUNT = 200_000
PAYLOAD = bytes(64)
RECEIVERS = 4

_RECEIVER_PROCESS = """
import sys, threading, fastmsg
rxs = [fastmsg.Receiver("tcp://127.0.0.1:0", ack="received") for _ in range(int(sys.argv[1]))]
def drain(rx):
    while True:
        try:
            for m in rx.recv_many(4096, timeout=1.0):
                m.release()
        except fastmsg.Timeout:
            pass
        except fastmsg.Closed:
            return
for rx in rxs:
    threading.Thread(target=drain, args=(rx,), daemon=True).start()
print(" ".join(rx.endpoint for rx in rxs), flush=True)
sys.stdin.read()
"""


class Receivers:
    """RECEIVERS receivers in a child process, for as long as the context lasts."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _RECEIVER_PROCESS, str(RECEIVERS)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.endpoints = self.proc.stdout.readline().split()
        assert len(self.endpoints) == RECEIVERS, "the receivers' process did not start"
        return self

    def __exit__(self, *exc):
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait()


KEYS = [b"user-%d" % i for i in range(1024)]


def _stream(send, flush, keyed=False):
    if keyed:
        for i in range(COUNT):
            send(PAYLOAD, key=KEYS[i & 1023])
    else:
        for _ in range(COUNT):
            send(PAYLOAD)
    assert flush(30)


def sender_round(endpoints):
    with fastmsg.Sender(endpoints[0]) as tx:
        _stream(tx.send, tx.flush)  # warm-up: connected, rings touched
        t = time.perf_counter()
        _stream(tx.send, tx.flush)
        return COUNT / (time.perf_counter() - t)


def balancer_round(endpoints, strategy="round_robin"):
    with fastmsg.Balancer(endpoints, strategy) as b:
        assert b.wait_up(timeout=10)
        _stream(b.send, b.flush, strategy == "hash")
        t = time.perf_counter()
        _stream(b.send, b.flush, strategy == "hash")
        return COUNT / (time.perf_counter() - t)


@pytest.fixture(scope="module")
def receivers():
    with Receivers() as r:
        yield r.endpoints


def test_sender_send(benchmark, receivers):
    benchmark.group = "200k x 64 B, one call per message"
    benchmark.pedantic(sender_round, args=(receivers,), rounds=5, iterations=1)


@pytest.mark.parametrize("strategy", ["round_robin", "least_loaded", "hash"])
def test_balancer_send(benchmark, receivers, strategy):
    benchmark.group = "200k x 64 B, one call per message"
    benchmark.pedantic(balancer_round, args=(receivers, strategy), rounds=5, iterations=1)


if __name__ == "__main__":
    # Rounds alternate (Sender, then each strategy), so that a neighbour's load on a shared machine
    # falls on both sides of a ratio; the median of the per-pair ratios is printed.
    strategies = ("round_robin", "least_loaded", "hash")
    ratios = {s: [] for s in strategies}
    rates = {s: [] for s in ("sender",) + strategies}
    with Receivers() as r:
        for _ in range(5):
            single = sender_round(r.endpoints)
            rates["sender"].append(single)
            for strategy in strategies:
                spread = balancer_round(r.endpoints, strategy)
                rates[strategy].append(spread)
                ratios[strategy].append(spread / single)
    median = lambda xs: sorted(xs)[len(xs) // 2]
    print(f"Sender.send: median {median(rates['sender']) / 1e6:.2f} M msg/s")
    for strategy in strategies:
        print(f"Balancer.send ({strategy}, {RECEIVERS} receivers): median {median(rates[strategy]) / 1e6:.2f} M msg/s, "
              f"median ratio {median(ratios[strategy]):.2f}x (per round: "
              f"{', '.join(f'{x:.2f}' for x in ratios[strategy])})")
