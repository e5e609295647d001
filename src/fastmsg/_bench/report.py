"""`fastmsg bench --json FILE` and `--plot FILE.png`: the results as a document, and as a figure.

The document (schema "fastmsg-bench/1"; docs-site/cli.md describes it):

    {"schema": "fastmsg-bench/1",
     "fastmsg": "0.1.0", "command": ["fastmsg", "bench", ...],
     "machine": {"python", "implementation", "platform", "system", "machine", "processor",
                 "cpu_count", "cpus_usable", "crc32c_kernel"},
     "settings": {"peers", "transports", "sizes", "pin", "duration_s", "timeout_s", "quick"},
     "notes": [the lines printed above the table], "skipped": {peer: reason},
     "rows": [{"pin", "transport", "peer", "cells": [cell, ...]}, ...],
     "failures": [the lines printed under FAILED], "ok": true if none}

One row per line of the table, one cell per column group of it, in the table's order:

    {"case": "1 KiB", "kind": "throughput", "size": 1024, "messages": n, "timed_messages": n,
     "elapsed_ns": t, "msg_per_s": x, "mb_per_s": y}               (batched; "send" kind: one
                                                                     send() per message)
    {"case": "round trip 64 B", "kind": "round_trip" or "asyncio_round_trip", "size": 64,
     "trips": n, "p50_us": x, "p99_us": y, "quantiles_ns": {"min", "p1", ..., "p99.9", "max"}}
    {"case": ..., "kind": ..., "failed": true, "error": "why"}      (a run that failed)

MB are 10^6 bytes, as in the table; the table's numbers are these, rounded.
"""

import json
import os
import platform
import sys

import fastmsg
from fastmsg._bench import payload
from fastmsg._bench.runner import RTT_SIZE, SEND_SIZE, case_label

SCHEMA = "fastmsg-bench/1"
KINDS = {"send": "send", "rtt": "round_trip", "artt": "asyncio_round_trip"}


def machine():
    """What the numbers were measured on."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "platform": platform.platform(), "system": platform.system(), "machine": platform.machine(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(), "cpus_usable": usable,
            "crc32c_kernel": fastmsg.crc32c_implementation}


def _cell(case, value, detail):
    kind = KINDS.get(case, "throughput")
    cell = {"case": case_label(case), "kind": kind,
            "size": case if kind == "throughput" else (SEND_SIZE if kind == "send" else RTT_SIZE)}
    if value is None:
        return None
    if isinstance(value, str):  # "FAILED"
        cell.update(failed=True, error=(detail or {}).get("error", value))
        return cell
    cell.update({k: v for k, v in (detail or {}).items() if k != "size"})
    if kind in ("throughput", "send"):
        cell.update(msg_per_s=value[0], mb_per_s=value[1])
    else:
        cell.update(p50_us=value[0], p99_us=value[1])
    return cell


def document(argv, settings, notes, skipped, results, details, failures):
    """The JSON document of one `fastmsg bench` run (results and details as Bench keeps them)."""
    rows = []
    for (pin, transport, peer), row in results.items():
        cells = [_cell(case, row.get(case), details.get((pin, transport, peer), {}).get(case))
                 for case in list(settings["sizes"]) + ["send", "rtt", "artt"]]
        rows.append({"pin": pin, "transport": transport, "peer": peer, "cells": [c for c in cells if c]})
    return {"schema": SCHEMA, "fastmsg": fastmsg.__version__, "command": ["fastmsg", *argv],
            "machine": machine(), "settings": settings, "notes": list(notes), "skipped": dict(skipped),
            "rows": rows, "failures": list(failures), "ok": not failures}


def write_json(doc, path):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
        f.write("\n")


def plot_unavailable():
    """None if --plot can work here, else why not (a sentence for the command line)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "--plot needs matplotlib, which is not installed (pip install 'fastmsg[plot]')"
    return None


def _row_label(row, with_pin, with_transport):
    parts = [row["peer"]]
    if with_transport:
        parts.append(row["transport"])
    if with_pin:
        parts.append(row["pin"])
    return " ".join(parts)


def plot(doc, path):
    """Two panels, every peer side by side: batched throughput (MB/s) by message size, and the
    64 B round trip's distribution (blocking and asyncio), box p25..p75, line p50, whiskers p1..p99."""
    from matplotlib.figure import Figure  # (no pyplot: no GUI backend, no global state)
    from matplotlib.ticker import LogLocator, NullLocator, ScalarFormatter

    def plain_log_axis(axis):  # a log scale labelled 20, 50, 100 rather than 2x10^1
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        axis.set_minor_locator(NullLocator())
        axis.set_major_formatter(ScalarFormatter())

    rows = doc["rows"]
    with_pin = len({r["pin"] for r in rows}) > 1
    with_transport = len({r["transport"] for r in rows}) > 1
    fig = Figure(figsize=(13, 5.5), layout="constrained")
    ax_tp, ax_rt = fig.subplots(1, 2)
    fig.suptitle(f"fastmsg {doc['fastmsg']} bench: Python {doc['machine']['python']}, "
                 f"{doc['machine']['cpus_usable']} CPUs usable, {doc['machine']['machine']}")

    markers = "osD^v<>ph*"
    colors = [f"C{i % 10}" for i in range(len(rows))]  # a row's colour in both panels
    for i, row in enumerate(rows):
        points = sorted((c["size"], c["mb_per_s"]) for c in row["cells"]
                        if c["kind"] == "throughput" and not c.get("failed"))
        if points:
            ax_tp.plot([p[0] for p in points], [p[1] for p in points], marker=markers[i % len(markers)],
                       color=colors[i], label=_row_label(row, with_pin, with_transport))
    ax_tp.set_xscale("log", base=2)
    ax_tp.set_yscale("log")
    plain_log_axis(ax_tp.yaxis)
    sizes = sorted({c["size"] for r in rows for c in r["cells"] if c["kind"] == "throughput"})
    ax_tp.xaxis.set_minor_locator(NullLocator())
    ax_tp.set_xticks(sizes, [payload.size_label(s) for s in sizes])
    ax_tp.set_xlabel("message size (batched sends)")
    ax_tp.set_ylabel("throughput, MB/s (10^6 bytes)")
    ax_tp.set_title("throughput by message size")
    ax_tp.grid(True, which="major", alpha=0.3)
    if ax_tp.lines:
        ax_tp.legend(fontsize="small")
    else:
        ax_tp.text(0.5, 0.5, "no throughput measured", ha="center", va="center", transform=ax_tp.transAxes)

    boxes, labels, box_colors = [], [], []
    for i, row in enumerate(rows):
        for c in row["cells"]:
            if c["kind"] in ("round_trip", "asyncio_round_trip") and not c.get("failed"):
                q = {k: v / 1000 for k, v in c["quantiles_ns"].items()}
                boxes.append({"med": q["p50"], "q1": q["p25"], "q3": q["p75"], "whislo": q["p1"],
                              "whishi": q["p99"], "fliers": []})
                kind = "asyncio" if c["kind"] == "asyncio_round_trip" else "blocking"
                labels.append(_row_label(row, with_pin, with_transport) + "\n" + kind)
                box_colors.append(colors[i])
    if boxes:
        drawn = ax_rt.bxp(boxes, showfliers=False, patch_artist=True, medianprops={"color": "black"})
        for box, color in zip(drawn["boxes"], box_colors):
            box.set_facecolor(color)
            box.set_alpha(0.6)
        ax_rt.set_xticks(range(1, len(boxes) + 1), labels, fontsize="small", rotation=30, ha="right")
        ax_rt.set_yscale("log")
        plain_log_axis(ax_rt.yaxis)
    else:
        ax_rt.text(0.5, 0.5, "no round trip measured", ha="center", va="center", transform=ax_rt.transAxes)
    ax_rt.set_ylabel("round trip, µs")
    ax_rt.set_title(f"round trip {payload.size_label(RTT_SIZE)}: box p25–p75, line p50, whiskers p1–p99")
    ax_rt.grid(True, axis="y", alpha=0.3)
    fig.savefig(path, format="png", dpi=100)
