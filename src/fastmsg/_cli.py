"""The `fastmsg` command: what this build is and how fast its kernels run here (no command);
`fastmsg bench` measures the transport against its peers; `send` and `recv` try it from a shell.

A failure the user can act on (a bad argument, an address in use, an unknown host, a receiver
that cannot be reached) is one line on stderr, `fastmsg: error: ...`, and a non-zero exit status:
2 for the command line, 1 for the rest."""

import argparse
import importlib
import os
import sys
import time

import fastmsg
from fastmsg._core import crc as _crc

_SIZES = [(64, "64 B"), (1 << 10, "1 KiB"), (64 << 10, "64 KiB"), (1 << 20, "1 MiB")]


def _time_per_call(fn, data, budget_s):
    """Median seconds per call over several timed batches, together taking about budget_s."""
    calls = 1
    while True:  # grow the batch until one takes at least a millisecond
        start = time.perf_counter()
        for _ in range(calls):
            fn(data)
        elapsed = time.perf_counter() - start
        if elapsed >= 1e-3 or calls >= 1 << 24:
            break
        calls *= 4
    batches = max(3, min(25, int(budget_s / max(elapsed, 1e-9))))
    samples = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(calls):
            fn(data)
        samples.append((time.perf_counter() - start) / calls)
    samples.sort()
    return samples[len(samples) // 2]


def _crc_table(budget_s, out):
    kernels = [name for name, runs in _crc.kernels() if runs]
    columns = ["fastmsg.crc32c"] + [f"{k}" for k in kernels]
    out.write(f"\nCRC32C throughput, median of timed batches (GB/s; ns per call at 64 B)\n")
    out.write(f"{'size':>8}  " + "  ".join(f"{c:>14}" for c in columns) + "\n")
    for size, label in _SIZES:
        data = os.urandom(size)
        cells = []
        fns = [fastmsg.crc32c] + [lambda d, k=k: _crc.crc32c_using(k, d) for k in kernels]
        for fn in fns:
            t = _time_per_call(fn, data, budget_s)
            cells.append(f"{t * 1e9:11.0f} ns" if size == 64 else f"{size / t / 1e9:9.2f} GB/s")
        out.write(f"{label:>8}  " + "  ".join(f"{c:>14}" for c in cells) + "\n")
        out.flush()


def _info(args, out):
    kernels = ", ".join(f"{n}{'' if runs else ' (not on this CPU)'}" for n, runs in _crc.kernels())
    out.write(f"fastmsg {fastmsg.__version__} (Python {sys.version.split()[0]})\n")
    out.write(f"CRC32C kernel: {fastmsg.crc32c_implementation} (compiled: {kernels})\n")
    if not args.quick:
        _crc_table(0.05, out)
    return 0


def _csv(parse, choices=None):
    def convert(text):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"empty list {text!r}")
        out = []
        for item in items:
            if choices is not None and item not in choices:
                raise argparse.ArgumentTypeError(f"unknown {item!r} (choose from {', '.join(choices)})")
            try:
                value = parse(item)
            except ValueError as e:
                raise argparse.ArgumentTypeError(str(e)) from None
            if value not in out:
                out.append(value)
        return out
    return convert


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text} s is out of range (0, 3600]")
    return value


def _positive(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _endpoint(text):
    from fastmsg.endpoint import parse

    try:
        return str(parse(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _output_file(text):
    """--json and --plot: a file to write, in a directory that exists (checked before the runs)."""
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: no directory {folder!r}")
    return text


def _png_file(text):
    if not text.lower().endswith(".png"):
        raise argparse.ArgumentTypeError(f"{text!r}: the figure is a PNG, so its name ends with .png")
    return _output_file(text)


def _bench(args, out):
    from fastmsg._bench import payload, report, runner, table

    if args.plot is not None:
        missing = report.plot_unavailable()
        if missing:
            sys.stderr.write(f"fastmsg bench: {missing}\n")
            return 2
    peers = list(args.peers) if args.peers else (list(runner.PEERS) if args.compare else ["fastmsg"])
    skipped = {}
    for peer in list(peers):
        reason = importlib.import_module(f"fastmsg._bench.peer_{peer}").unavailable()
        if reason:
            skipped[peer] = reason
            peers.remove(peer)
            sys.stderr.write(f"bench: {peer}: {reason}, skipped\n")
    sizes = args.sizes or [payload.parse_size(s) for s in ("64", "1k", "64k", "1m")]
    duration = args.duration or (0.1 if args.quick else 0.5)
    header = [f"fastmsg {fastmsg.__version__} bench (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs); "
              f"{duration:g} s per run, payload MB = 10^6 bytes, received side timed first to last message",
              "sizes are sent batched (send_many; sockets ~64 KiB writes; pyzmq, with no batch call, one send "
              "each); 64 B send(): one call per message"]
    transports = args.transports or list(runner.TRANSPORTS)
    settings = {"peers": peers, "transports": transports, "sizes": sizes, "pin": args.pin,
                "duration_s": duration, "timeout_s": args.timeout, "quick": args.quick}
    if not peers:
        out.write(table.render({}, sizes, skipped, header))
        if "fastmsg" in skipped and not args.compare:
            out.write("(fastmsg bench --compare measures pyzmq and plain sockets)\n")
        _bench_files(args, report.document(args.argv, settings, header, skipped, {}, {}, []))
        return 0
    bench = runner.Bench(peers, transports, sizes, args.pin, duration, args.timeout, args.quick)
    results = bench.run()
    out.write(table.render(results, sizes, skipped, header + bench.notes))
    if bench.failures:
        out.write("\nFAILED (no number is reported for these runs):\n")
        out.write("".join(f"  {f}\n" for f in bench.failures))
    _bench_files(args, report.document(args.argv, settings, header + bench.notes, skipped, results,
                                       bench.details, bench.failures))
    return 1 if bench.failures else 0


def _bench_files(args, doc):
    from fastmsg._bench import report

    if args.json is not None:
        report.write_json(doc, args.json)
        sys.stderr.write(f"bench: results written to {args.json}\n")
    if args.plot is not None:
        report.plot(doc, args.plot)
        sys.stderr.write(f"bench: figure written to {args.plot}\n")


def _transport_missing():
    if hasattr(fastmsg, "Sender") and hasattr(fastmsg, "Receiver"):
        return False
    sys.stderr.write("fastmsg: the fastmsg transport (Sender/Receiver) is not available in this build\n")
    return True


class _Failed(Exception):
    """A command failed for a reason its message gives (printed as one line by main)."""


def _send(args, out):
    if _transport_missing():
        return 1
    with fastmsg.Sender(args.endpoint) as tx:
        for line in sys.stdin.buffer:
            if line.endswith(b"\n"):
                line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
            tx.send(line)
        if not tx.flush(timeout=args.timeout):
            stats = tx.stats()
            tx.close(linger=0)  # (what it holds cannot be delivered: do not wait its linger too)
            if not stats["connects"]:
                raise _Failed(f"cannot reach {args.endpoint} within {args.timeout:g} s: {stats['last_error'] or 'no connection'}")
            raise _Failed(f"not everything was delivered to {args.endpoint} within {args.timeout:g} s")
    return 0


def _recv(args, out):
    if _transport_missing():
        return 1
    with fastmsg.Receiver(args.endpoint) as rx:
        sys.stderr.write(f"fastmsg recv: listening on {rx.endpoint}\n")
        sys.stderr.flush()
        stdout = out.buffer if hasattr(out, "buffer") else None
        received = 0
        while args.count is None or received < args.count:
            try:  # without --timeout, wait in 1 s slices so that Ctrl-C is seen promptly
                msg = rx.recv(timeout=args.timeout or 1.0)
            except fastmsg.Timeout:
                if args.timeout is None:
                    continue
                raise _Failed(f"nothing arrived for {args.timeout:g} s")
            data = bytes(msg)
            msg.release()
            if stdout is not None:
                stdout.write(data + b"\n")
                stdout.flush()
            else:
                out.write(data.decode(errors="replace") + "\n")
            received += 1
    return 0


def _relay(args, out):
    if _transport_missing():
        return 1
    if not hasattr(fastmsg, "Relay"):
        sys.stderr.write("fastmsg relay: this build has no Balancer (no routing module)\n")
        return 1
    options = {} if args.heartbeat is None else {"heartbeat_interval": args.heartbeat}
    with fastmsg.Relay(args.endpoint, args.to, args.strategy, key_bytes=args.key_bytes,
                       receiver_options=dict(options), **options) as relay:
        sys.stderr.write(f"fastmsg relay: listening on {relay.endpoint}, sending to {', '.join(args.to)}\n")
        sys.stderr.flush()
        relay.run()
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse's parser with its errors on one line (argparse prints the usage first)."""

    def error(self, message):
        self.exit(2, f"fastmsg: error: {message} (see {self.prog} --help)\n")


def _parser():
    from fastmsg._bench import payload, runner

    parser = _Parser(prog="fastmsg", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fastmsg {fastmsg.__version__}")
    parser.add_argument("--quick", action="store_true", help="print the build information only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    bench = sub.add_parser("bench", help="measure fastmsg (and with --compare its peers) here",
                           description="Throughput (msg/s, MB/s; batched, and at 64 B one send() per message) and "
                                       "64 B round trip between two processes, over TCP and Unix sockets, with "
                                       "the processes on one CPU and on two.")
    bench.add_argument("--compare", action="store_true", help="add pyzmq (if installed) and plain sockets")
    bench.add_argument("--sizes", type=_csv(payload.parse_size), metavar="LIST",
                       help="message sizes (default 64,1k,64k,1m)")
    bench.add_argument("--transports", type=_csv(str, runner.TRANSPORTS), metavar="LIST",
                       help="tcp, ipc or both (default tcp,ipc)")
    bench.add_argument("--peers", type=_csv(str, runner.PEERS), metavar="LIST",
                       help="run exactly these: fastmsg, pyzmq, sockets")
    bench.add_argument("--pin", choices=["same", "split", "both"], default="both",
                       help="both processes on one CPU, on two, or both layouts (default)")
    bench.add_argument("--duration", type=_seconds, metavar="SECONDS",
                       help="length of each timed run (default 0.5, --quick 0.1)")
    bench.add_argument("--timeout", type=_seconds, default=5.0, metavar="SECONDS",
                       help="a run fails when nothing arrives for this long (default 5)")
    bench.add_argument("--quick", action="store_true", help="short runs: the whole bench in seconds")
    bench.add_argument("--json", type=_output_file, metavar="FILE",
                       help="also write every result, the command line and the machine to FILE as JSON")
    bench.add_argument("--plot", type=_png_file, metavar="FILE.png",
                       help="also draw throughput by size and the round-trip distribution to FILE.png "
                            "(needs matplotlib: pip install 'fastmsg[plot]')")

    send = sub.add_parser("send", help="send each line of stdin as a message to ENDPOINT")
    send.add_argument("endpoint", type=_endpoint, metavar="ENDPOINT", help="tcp://host:port or ipc:///path")
    send.add_argument("--timeout", type=_seconds, default=10.0, metavar="SECONDS",
                      help="how long to wait at the end for everything to be delivered (default 10)")

    recv = sub.add_parser("recv", help="bind ENDPOINT and print each message received, one per line")
    recv.add_argument("endpoint", type=_endpoint, metavar="ENDPOINT", help="tcp://host:port (port 0: any) or ipc:///path")
    recv.add_argument("--count", type=_positive, metavar="N", help="exit after N messages")
    recv.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                      help="exit with an error when nothing arrives for this long (default: wait)")

    relay = sub.add_parser("relay", help="receive on IN and send each message on to the OUT endpoints",
                           description="An upstream message is acknowledged only once a downstream receiver "
                                       "acknowledged it: nothing is lost if the relay dies (at-least-once).")
    relay.add_argument("endpoint", type=_endpoint, metavar="IN", help="tcp://host:port or ipc:///path to bind")
    relay.add_argument("--to", type=_csv(_endpoint), required=True, metavar="OUT[,OUT...]",
                       help="the downstream receivers")
    relay.add_argument("--strategy", default="round_robin",
                       choices=["round_robin", "weighted", "hash", "least_loaded", "latency", "nearest"])
    relay.add_argument("--key-bytes", type=_positive, metavar="N", help="hash: the key is the first N bytes")
    relay.add_argument("--heartbeat", type=_seconds, metavar="SECONDS", help="heartbeat interval, both sides")
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    args.argv = argv
    run = {None: _info, "bench": _bench, "send": _send, "recv": _recv, "relay": _relay}[args.command]
    try:
        return run(args, sys.stdout)
    except KeyboardInterrupt:
        sys.stderr.write("fastmsg: interrupted\n")
        return 130
    except (_Failed, fastmsg.FastmsgError, OSError, ValueError) as e:
        # (an OSError's own text without its "[Errno n]" prefix: fastmsg's names the endpoint)
        text = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        sys.stderr.write(f"fastmsg: error: {text}\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
