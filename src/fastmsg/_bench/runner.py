"""Run the cases: two worker processes per pinning, each case checked before it counts."""

import importlib
import json
import os
import selectors
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from fastmsg._bench import payload

PEERS = ("fastmsg", "pyzmq", "sockets")
# ipc:// is a Unix socket: everywhere but a Windows before 10 1803 (build 17063), where fastmsg
# makes them itself; a peer that cannot use one there says so (peer_*.unavailable_over).
_UNIX_SOCKETS = sys.platform != "win32" or sys.getwindowsversion().build >= 17063
TRANSPORTS = ("tcp", "ipc") if _UNIX_SOCKETS else ("tcp",)
RTT_SIZE = 64
SEND_SIZE = 64  # the throughput case with one send() call per message
# With several peers, each one's round trips run in this many rounds, the peers taking turns:
# on a busy machine the time a trip takes moves by a third from one second to the next, more than
# the differences the table is for; alternated, every peer sees the same moments.
RTT_ROUNDS = 5


def case_label(case):
    """What a case is called in the progress lines and the table: a size (batched), "send", "rtt"."""
    if case == "send":
        return f"{payload.size_label(SEND_SIZE)} send()"
    if case == "rtt":
        return f"round trip {payload.size_label(RTT_SIZE)}"
    if case == "artt":
        return f"asyncio round trip {payload.size_label(RTT_SIZE)}"
    return payload.size_label(case)


class CaseFailed(Exception):
    pass


class Worker:
    """One worker process and its JSON-lines channel; every read has a deadline."""

    def __init__(self, cpu):
        self.cpu = cpu
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastmsg._bench.worker", "-" if cpu is None else str(cpu)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
        self.pending = b""
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def send(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()

    def read(self, deadline):
        while b"\n" not in self.pending:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                raise CaseFailed("no answer from a worker process in time")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise CaseFailed(f"a worker process exited (status {self.proc.wait(5)})")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.sel.close()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass


class Pair:
    """The receiving (serving) worker and the sending (driving) worker of one pinning."""

    def __init__(self, rx_cpu, tx_cpu):
        self.cpus = (rx_cpu, tx_cpu)
        self.rx = self.tx = None
        self.start()

    def start(self):
        self.rx, self.tx = Worker(self.cpus[0]), Worker(self.cpus[1])

    def close(self):
        for w in (self.rx, self.tx):
            if w is not None:
                w.close()

    def restart(self):
        self.close()
        self.start()

    def run(self, peer, spec, wait_s):
        """Run one case; returns (serving side's result, driving side's result)."""
        deadline = time.monotonic() + wait_s
        try:
            self.rx.send(op="serve", peer=peer, spec=spec)
            ready = self.rx.read(deadline)
            if ready["event"] != "ready":
                raise CaseFailed(_error(ready))
            self.tx.send(op="drive", peer=peer, spec=spec, endpoint=ready["endpoint"])
            sent, got = self.tx.read(deadline), self.rx.read(deadline)
        except CaseFailed:
            self.restart()  # a worker may be stuck mid-case: start afresh
            raise
        problems = [_error(ev) for ev in (got, sent) if ev["event"] != "done"]
        if problems:
            raise CaseFailed("; ".join(problems))
        return got["result"], sent["result"]


def _error(event):
    if event.get("detail"):
        sys.stderr.write(event["detail"])
    return event.get("error", f"unexpected answer {event!r}")


def pinnings(mode):
    """[(name, receiver cpu, sender cpu)], and a sentence saying what was used."""
    if not hasattr(os, "sched_setaffinity"):
        return [("none", None, None)], "pinning: not available on this platform (processes unpinned)"
    cpus = sorted(os.sched_getaffinity(0))
    plans, notes = [], []
    if mode in ("same", "both"):
        plans.append(("same", cpus[0], cpus[0]))
        notes.append(f"same = both processes on CPU {cpus[0]}")
    if mode in ("split", "both"):
        if len(cpus) < 2:
            notes.append("split skipped: only one CPU available")
        else:
            plans.append(("split", cpus[0], cpus[1]))
            notes.append(f"split = receiver on CPU {cpus[0]}, sender on CPU {cpus[1]}")
    return plans, "pinning (os.sched_setaffinity): " + "; ".join(notes)


class Bench:
    def __init__(self, peers, transports, sizes, pin, duration, timeout, quick, err=sys.stderr):
        self.peers, self.transports, self.sizes = peers, transports, sizes
        self.pin, self.duration, self.timeout, self.quick = pin, duration, timeout, quick
        self.err = err
        self.failures = []
        self.done = 0
        # What each run measured beyond its table cells (message counts, the round-trip
        # distribution): {(pin, transport, peer): {case: {...}}}, for `fastmsg bench --json`.
        self.details = {}
        self.last_detail = None

    def _progress(self, text, cases=1):
        tty = self.err.isatty()
        count = f"{self.done + 1}" + (f"-{self.done + cases}" if cases > 1 else "")
        self.err.write(("\r\x1b[K" if tty else "") + f"bench: {text} {count}/{self.total}" + ("" if tty else "\n"))
        self.err.flush()

    def _case(self, results, pin, transport, peer, case, measure, progress=True):
        """Runs one cell (`measure`: its value, setting self.last_detail, or raising CaseFailed)
        and records it, or its failure."""
        row = results.setdefault((pin, transport, peer), {})
        details = self.details.setdefault((pin, transport, peer), {})
        label = case_label(case)
        if progress:
            self._progress(f"{pin} {transport} {peer} {label}")
        self.last_detail = None
        try:
            row[case] = measure()
            details[case] = self.last_detail
        except CaseFailed as e:
            row[case] = "FAILED"
            details[case] = {"error": str(e)}
            self.failures.append(f"{pin} {transport} {peer} {label}: {e}")
            self.err.write(("\n" if self.err.isatty() else "") + f"bench: FAILED {self.failures[-1]}\n")
        self.done += 1

    def _spec(self, transport, mode, size, count, warmup=0):
        return {"transport": transport, "mode": mode, "size": size, "count": count, "warmup": warmup,
                "timeout": self.timeout, "ipc_dir": self.ipc_dir}

    def _wait(self, seconds):
        return 2 * self.timeout + 10 * seconds + 10

    def throughput(self, pair, peer, transport, size, mode="throughput"):
        span = (1 << 20 if self.quick else 8 << 20) // size
        count = max(8, min(span, 4000 if self.quick else 20000))
        final = False
        for attempt in range(6):
            got, sent = pair.run(peer, self._spec(transport, mode, size, count),
                                 self._wait(self.duration if final else 0.5))
            if sent["sent"] != count or got["received"] != count:
                raise CaseFailed(f"sent {sent['sent']}, received {got['received']} of {count}")
            rate = got["timed"] / max(got["elapsed_ns"], 1000) * 1e9
            if got["timed"] == 0:  # all arrived in the first batch: nothing was timed, send more
                count *= 8
                continue
            if final:
                self.last_detail = {"size": size, "messages": count, "timed_messages": got["timed"],
                                    "elapsed_ns": got["elapsed_ns"]}
                return rate, rate * size / 1e6
            count = int(max(count, min(rate * self.duration, 50_000_000)))
            final = True
        raise CaseFailed(f"could not time the transfer: {count} messages arrived in one batch")

    def round_trips(self, pair, peers, transport, mode):
        """{peer: ((p50 µs, p99 µs), detail) or the CaseFailed it met}. Each peer's trips run in
        RTT_ROUNDS rounds of a share of the duration (one round for a peer alone), the peers taking
        turns; its p50, p99 and distribution are the medians of its rounds'."""
        rounds = RTT_ROUNDS if len(peers) > 1 else 1
        counts, runs, out = {}, {peer: [] for peer in peers}, {}
        for peer in peers:  # a short run first: how many trips fill a round
            try:
                _, res = pair.run(peer, self._spec(transport, mode, RTT_SIZE, 100, 20), self._wait(0.5))
                per_round = self.duration / rounds / max(res["p50_ns"], 1) * 1e9 * 0.8
                counts[peer] = int(max(200, min(per_round, 200_000)))
            except CaseFailed as e:
                out[peer] = e
        for _ in range(rounds):
            for peer in peers:
                if peer in out:
                    continue
                try:
                    _, res = pair.run(peer, self._spec(transport, mode, RTT_SIZE, counts[peer], 100),
                                      self._wait(self.duration / rounds))
                    runs[peer].append(res)
                except CaseFailed as e:  # (its earlier rounds are not reported alone)
                    out[peer] = e
        for peer, done in runs.items():
            if peer not in out:
                quantiles = {k: statistics.median(r["quantiles_ns"][k] for r in done) for k in done[0]["quantiles_ns"]}
                detail = {"size": RTT_SIZE, "trips": sum(r["trips"] for r in done), "rounds": len(done),
                          "quantiles_ns": quantiles}
                p50, p99 = (statistics.median(r[key] for r in done) / 1000 for key in ("p50_ns", "p99_ns"))
                out[peer] = ((p50, p99), detail)
        return out

    def _round_trip_cell(self, outcome):
        """A round_trips() outcome as a cell: (p50, p99), its detail kept; or its CaseFailed raised."""
        if isinstance(outcome, CaseFailed):
            raise outcome
        value, self.last_detail = outcome
        return value

    def unavailable_over(self):
        """{(peer, transport): why that peer has no row over that transport here}."""
        missing = {}
        for peer in self.peers:
            module = importlib.import_module(f"fastmsg._bench.peer_{peer}")
            for transport in self.transports:
                reason = module.unavailable_over(transport)
                if reason:
                    missing[peer, transport] = reason
        return missing

    def run(self):
        """{(pin, transport, peer): {size, "send" or "rtt": value or "FAILED"}}."""
        plans, pin_note = pinnings(self.pin)
        missing = self.unavailable_over()
        self.notes = [pin_note] + [f"{peer} over {transport}: {reason}, no row" for (peer, transport), reason in missing.items()]
        cases = self.sizes + ["send", "rtt", "artt"]
        pairs = [(t, p) for t in self.transports for p in self.peers if (p, t) not in missing]
        self.total = len(plans) * len(pairs) * len(cases)
        results = {}
        self.ipc_dir = tempfile.mkdtemp(prefix="fmb-")
        pair = None
        try:
            for pin, rx_cpu, tx_cpu in plans:
                pair = Pair(rx_cpu, tx_cpu)
                for transport, peer in pairs:
                    for case in self.sizes + ["send"]:
                        self._case(results, pin, transport, peer, case, lambda: self.throughput(
                            pair, peer, transport, *((SEND_SIZE, "single") if case == "send" else (case,))))
                for transport in self.transports:
                    here = [peer for t, peer in pairs if t == transport]
                    for case, mode in (("rtt", "pingpong"), ("artt", "apingpong")) if here else ():
                        turns = f" ({', '.join(here)} taking turns)" if len(here) > 1 else ""
                        self._progress(f"{pin} {transport} {case_label(case)}{turns}", len(here))
                        for peer, outcome in self.round_trips(pair, here, transport, mode).items():
                            self._case(results, pin, transport, peer, case, lambda: self._round_trip_cell(outcome),
                                       progress=False)
                pair.close()
                pair = None
            if self.err.isatty():
                self.err.write("\n")
        finally:
            if pair is not None:
                pair.close()
            shutil.rmtree(self.ipc_dir, ignore_errors=True)
        return results
