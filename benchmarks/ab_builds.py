"""Two builds of fastmsg, side by side: `fastmsg bench` of each, alternated, and the ratio per cell.

A busy machine moves every rate by 10% or more from one minute to the next, so one run of each
build says little. This runs the two `fastmsg` commands in turn (A B, then B A, ...) with the same
bench arguments, and prints, for every cell of the table, the median of B's figure over A's across
the rounds, with its range: above 1 is B faster for rates (msg/s), B slower for round trips (p50).

    python benchmarks/ab_builds.py --rounds 6 OLD/bin/fastmsg NEW/bin/fastmsg -- \\
        --peers fastmsg --sizes 64,1k,1m --transports tcp,ipc --pin both --duration 1

Each build is a `fastmsg` command of its own environment (e.g. `git worktree add` of the older
commit, then `pip install` of it into a second virtual environment)."""

import argparse
import statistics
import subprocess
import sys


SUFFIX = {"k": 1e3, "M": 1e6, "G": 1e9}


def number(text):
    """A figure of the table: 4.11M, 263, 37.4."""
    scale = SUFFIX.get(text[-1:], 1)
    return float(text[:-1] if scale != 1 else text) * scale


def shown(value):
    """A figure as the table shows it."""
    for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def parse_table(out):
    """{(pin, transport, peer, cell): value} from bench's table: a rate's msg/s, a round trip's
    p50 (the first figure of each column group). Read from the text, not --json, so that builds
    from before --json compare too."""
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("pin ") and "peer" in line)
    groups = [g.strip() for g in lines[head - 1].split("  ") if g.strip()]
    cells = {}
    for line in lines[head + 1:]:
        fields = line.split()
        if len(fields) != 3 + 2 * len(groups):
            continue
        pin, transport, peer, figures = fields[0], fields[1], fields[2], fields[3:]
        for g, group in enumerate(groups):
            try:
                cells[(pin, transport, peer, group)] = number(figures[2 * g])
            except ValueError:  # a failed run's mark
                pass
    return cells


def run_bench(command, bench_args):
    """One `fastmsg bench` of a build."""
    done = subprocess.run([command, "bench", *bench_args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{command} bench failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return parse_table(done.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("a", help="build A's fastmsg command (the reference)")
    ap.add_argument("b", help="build B's fastmsg command")
    ap.add_argument("bench_args", nargs=argparse.REMAINDER, help="-- then the arguments of fastmsg bench")
    args = ap.parse_args()
    bench_args = args.bench_args[1:] if args.bench_args[:1] == ["--"] else args.bench_args
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    results = {"a": [], "b": []}
    for i in range(args.rounds):
        order = ("a", "b") if i % 2 == 0 else ("b", "a")
        for which in order:
            results[which].append(run_bench(getattr(args, which), bench_args))
        print(f"round {i + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    runs = results["a"] + results["b"]
    seen = {k for r in runs for k in r}
    keys = [k for k in results["a"][0] if all(k in r for r in runs)]
    missing = sorted(seen - set(keys))
    print(f"B/A, median of {args.rounds} alternating rounds (rates: above 1 is B faster; "
          f"round trips, p50: above 1 is B slower)")
    print(f"{'pin':5} {'transport':9} {'peer':8} {'cell':28} {'A':>10} {'B':>10} {'B/A':>6}  range")
    for key in keys:
        a = [r[key] for r in results["a"]]
        b = [r[key] for r in results["b"]]
        ratios = [y / x for x, y in zip(a, b) if x > 0]
        if not ratios:
            continue
        print(f"{key[0]:5} {key[1]:9} {key[2]:8} {key[3]:28} {shown(statistics.median(a)):>10} "
              f"{shown(statistics.median(b)):>10} {statistics.median(ratios):6.3f}  "
              f"{min(ratios):.2f}-{max(ratios):.2f}")
    for key in missing:  # (a run failed there, or one build has no such cell)
        print(f"not compared, absent from some runs: {' '.join(key)}")


if __name__ == "__main__":
    main()
