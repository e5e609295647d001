"""The bench table: one row per pinning, transport and peer; msg/s and MB/s per size (batched),
then at 64 B with one send() per message, then the round trip at 64 B, blocking and from asyncio."""

from fastmsg._bench.runner import case_label


def _rate(x):
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def _mb(x):
    return f"{x:.3g}" if x < 1000 else f"{x:.0f}"


def render(results, sizes, skipped, notes):
    """`results` from Bench.run; `skipped` {peer: reason} shown instead of that peer's rows."""
    lines = list(notes)
    cases = sizes + ["send"]
    lead = f"{'pin':<6}{'transport':<10}{'peer':<9}"
    trips = ("rtt", "artt")
    top = " " * len(lead) + "".join(f"{case_label(c):^17}" for c in cases) + "".join(f"{case_label(t):^24}" for t in trips)
    sub = lead + "".join(f"{'msg/s':>8} {'MB/s':>7} " for _ in cases) + f"{'p50 µs':>12}{'p99 µs':>12}" * len(trips)
    lines += [top.rstrip(), sub]
    for (pin, transport, peer), row in results.items():
        cells = []
        for c in cases:
            v = row.get(c)
            cells.append(f"{v:>16} " if isinstance(v, str) or v is None else f"{_rate(v[0]):>8} {_mb(v[1]):>7} ")
        for t in trips:
            v = row.get(t)
            cells.append(f"{'' if v is None else v:>24}" if isinstance(v, str) or v is None else f"{v[0]:12.1f}{v[1]:12.1f}")
        lines.append(f"{pin:<6}{transport:<10}{peer:<9}" + "".join(cells))
    for peer, reason in skipped.items():
        lines.append(f"{peer} transport: {reason}" if peer == "fastmsg" else f"{peer}: {reason}, skipped")
    return "\n".join(lines) + "\n"
