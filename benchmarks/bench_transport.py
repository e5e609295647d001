"""Two processes on loopback: fastmsg against pyzmq and plain sockets, throughput and round trip.

Run: pytest benchmarks/bench_transport.py --benchmark-group-by=group
Each round moves a fixed number of messages from a sender process to a receiver process (the
`fastmsg bench` workers: pinned, every message counted and checksummed), so the time per round
is the transfer time and lower is better; extra_info holds the receiver-timed msgs/s. Pinning:
"split" puts the receiver on the first CPU and the sender on the second; "same" both on the first.
"""

import importlib
import tempfile

import pytest

from fastmsg._bench import runner

# case: (mode, message size, messages per round); sizes are sent batched, "64B-send" by one
# send() call per message
CASES = {"64B": ("throughput", 64, 200_000), "1KiB": ("throughput", 1024, 100_000),
         "64KiB": ("throughput", 64 << 10, 8_000), "1MiB": ("throughput", 1 << 20, 600),
         "64B-send": ("single", 64, 200_000)}
PEERS = [p for p in runner.PEERS if importlib.import_module(f"fastmsg._bench.peer_{p}").unavailable() is None]
PLANS = {name: (rx, tx) for name, rx, tx in runner.pinnings("both")[0]}


@pytest.fixture(scope="module", params=list(PLANS))
def pair(request):
    rx_cpu, tx_cpu = PLANS[request.param]
    p = runner.Pair(rx_cpu, tx_cpu)
    p.pin = request.param
    yield p
    p.close()


@pytest.fixture(scope="module")
def ipc_dir():
    with tempfile.TemporaryDirectory(prefix="fmb-") as d:
        yield d


def _spec(transport, mode, size, count, ipc_dir, warmup=0):
    return {"transport": transport, "mode": mode, "size": size, "count": count, "warmup": warmup,
            "timeout": 10.0, "ipc_dir": ipc_dir}


@pytest.mark.parametrize("transport", runner.TRANSPORTS)
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("peer", PEERS)
def test_throughput(benchmark, pair, ipc_dir, peer, case, transport):
    mode, nbytes, count = CASES[case]
    benchmark.group = f"throughput {case} {transport} {pair.pin}"
    rates = []

    def transfer():
        got, sent = pair.run(peer, _spec(transport, mode, nbytes, count, ipc_dir), 120)
        assert sent["sent"] == count and got["received"] == count
        rates.append(got["timed"] / max(got["elapsed_ns"], 1) * 1e9)

    benchmark.pedantic(transfer, rounds=3, iterations=1, warmup_rounds=1)
    rates.sort()
    benchmark.extra_info.update(msgs_per_s=round(rates[len(rates) // 2]), pinning=pair.pin)


@pytest.mark.parametrize("transport", runner.TRANSPORTS)
@pytest.mark.parametrize("peer", PEERS)
def test_round_trip_64B(benchmark, pair, ipc_dir, peer, transport):
    benchmark.group = f"round trip 64B {transport} {pair.pin}"
    results = []

    def ping_pong():
        _, res = pair.run(peer, _spec(transport, "pingpong", 64, 2000, ipc_dir, warmup=200), 120)
        results.append(res)

    benchmark.pedantic(ping_pong, rounds=3, iterations=1)
    best = min(results, key=lambda r: r["p50_ns"])
    benchmark.extra_info.update(p50_us=best["p50_ns"] / 1000, p99_us=best["p99_ns"] / 1000, pinning=pair.pin)
