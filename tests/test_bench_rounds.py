"""`fastmsg bench`'s round trips: with several peers, their runs take turns in rounds, so that a
busy machine's slow moments fall on all of them alike. The workers are replaced by a recorder
here: what is tested is the order of the runs and how their results are combined (the real runs
are tested in test_cli.py and test_bench_report.py)."""

import io

import pytest

from fastmsg._bench import payload, runner

PEERS = ["fastmsg", "pyzmq", "sockets"]


class RecordingPair:
    """Stands in for the two worker processes: records each run and answers it with figures
    chosen by `trip_ns(peer, mode, round)`, or fails it where `fail(peer, mode, round)`."""

    runs = []

    def __init__(self, rx_cpu, tx_cpu):
        self.rounds = {}

    def close(self):
        pass

    def run(self, peer, spec, wait_s):
        mode, count = spec["mode"], spec["count"]
        RecordingPair.runs.append((peer, mode))
        if mode in ("throughput", "single"):
            return {"received": count, "timed": count, "elapsed_ns": 10**6}, {"sent": count}
        n = self.rounds.get((peer, mode), -1)  # -1: the short run that sizes the rounds
        self.rounds[peer, mode] = n + 1
        if n >= 0 and self.fail(peer, mode, n):
            raise runner.CaseFailed(f"{peer} failed in round {n}")
        t = self.trip_ns(peer, mode, n)
        return None, payload.percentiles([t] * 290 + [t + 500] * 10)  # p50 t, p99 t + 500

    @staticmethod
    def trip_ns(peer, mode, n):
        # The rounds' p50s in ns, over 1,000 a peer: median 40, where their mean would be 42.
        return 1000 * (1 + PEERS.index(peer)) + [50, 10, 40, 20, 90][n % 5]

    @staticmethod
    def fail(peer, mode, n):
        return False


@pytest.fixture
def recorded(monkeypatch):
    RecordingPair.runs = []
    monkeypatch.setattr(runner, "Pair", RecordingPair)
    monkeypatch.setattr(runner, "pinnings", lambda mode: ([("same", 0, 0)], "pinning: test"))
    monkeypatch.setattr(runner.Bench, "unavailable_over", lambda self: {})
    return RecordingPair


def bench(peers):
    return runner.Bench(peers, ["tcp"], [64], "same", 0.5, 5, False, err=io.StringIO())


def test_the_peers_round_trips_take_turns(recorded):
    b = bench(PEERS)
    b.run()
    trips = [peer for peer, mode in recorded.runs if mode == "pingpong"]
    sizing, rounds = trips[:3], trips[3:]
    assert sizing == PEERS
    assert rounds == PEERS * runner.RTT_ROUNDS  # each round runs every peer once, in turn
    assert b.done == b.total


def test_a_peers_figures_are_the_medians_of_its_rounds(recorded):
    b = bench(PEERS)
    results = b.run()
    for i, peer in enumerate(PEERS):
        p50, p99 = results["same", "tcp", peer]["rtt"]
        assert p50 == (1000 * (1 + i) + 40) / 1000  # the median of the rounds' 50, 10, 40, 20, 90 ns
        assert p99 == (1000 * (1 + i) + 540) / 1000
        detail = b.details["same", "tcp", peer]["rtt"]
        assert detail["rounds"] == runner.RTT_ROUNDS and detail["trips"] == 300 * runner.RTT_ROUNDS
        assert detail["quantiles_ns"]["p50"] == 1000 * (1 + i) + 40
        assert detail["quantiles_ns"]["max"] == 1000 * (1 + i) + 540


def test_a_peer_alone_runs_in_one_round(recorded):
    b = bench(["sockets"])
    results = b.run()
    assert [m for _, m in recorded.runs].count("pingpong") == 2  # the sizing run, then one round
    assert results["same", "tcp", "sockets"]["rtt"] == (3.05, 3.55)  # its one round: 3000 + 50 ns


def test_a_peer_that_fails_a_round_is_failed_and_the_others_go_on(recorded, monkeypatch):
    monkeypatch.setattr(RecordingPair, "fail", staticmethod(
        lambda peer, mode, n: peer == "pyzmq" and mode == "pingpong" and n == 2))
    b = bench(PEERS)
    results = b.run()
    assert results["same", "tcp", "pyzmq"]["rtt"] == "FAILED"
    assert any("pyzmq round trip 64 B: pyzmq failed in round 2" in f for f in b.failures)
    assert [p for p, m in recorded.runs if m == "pingpong"].count("pyzmq") == 1 + 3  # no round after it failed
    for peer in ("fastmsg", "sockets"):
        assert results["same", "tcp", peer]["rtt"][0] > 1
    assert results["same", "tcp", "pyzmq"]["artt"] != "FAILED"  # (only its blocking trips failed)
