"""Delivery that survives faults, with real processes: connections reset hundreds of times (one
sender, then three at once, each keeping its own order), bits flipped on the wire, a receiver
killed with SIGKILL and restarted, a script that ends without closing its Sender. Every message
is checked byte by byte, counted and put in order; the fault figures are printed (pytest -s) and
are part of every assertion's message.

FASTMSG_STRESS=1 runs the reset tests at the issue's full size (1 M messages, >= 1,000 resets)."""

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import fastmsg

if not hasattr(fastmsg, "Sender"):
    pytest.skip("this platform's build has no transport engine yet", allow_module_level=True)

from fastmsg.testing import FaultProxy
import fault_helpers
from fault_helpers import check_mixed, mixed_payload, read_record, stream_killing_once
from transport_helpers import free_port, wait_for
from platforms import needs_sigkill

SPAWN = multiprocessing.get_context("spawn")
KiB = 1 << 10
STRESS = os.environ.get("FASTMSG_STRESS") == "1"


def receive_all(rx, count, child, deadline_s, large_every=0, progress=None):
    """Receives until `count` messages arrived (checking each, releasing it at once) or the child
    died or the time ran out; returns the seqs in arrival order."""
    seqs = []
    deadline = time.monotonic() + deadline_s
    while len(seqs) < count and time.monotonic() < deadline:
        try:
            batch = rx.recv_many(4096, timeout=0.5)
        except fastmsg.Timeout:
            if not child.is_alive():
                break
            continue
        for m in batch:
            seqs.append(check_mixed(m, large_every))
            m.release()
        if progress:
            progress(len(seqs))
    return seqs


def order_report(seqs, count):
    """What is wrong with `seqs` against 0..count-1: lost, delivered twice, first out of order."""
    seen = set(seqs)
    lost = count - len(seen & set(range(count)))
    twice = len(seqs) - len(seen)
    first_bad = next((i for i, s in enumerate(seqs) if s != i), None)
    return dict(delivered=len(seqs), lost=lost, delivered_twice=twice, first_out_of_order=first_bad)


def run_stream(proxy, rx, count, deadline_s, large_every=0, hwm_bytes=1 << 20):
    """A child process streams `count` mixed messages through the proxy to rx; returns the seqs rx
    received and the child's report (flushed, stats)."""
    parent, child_end = SPAWN.Pipe()
    child = SPAWN.Process(target=fault_helpers.stream_mixed, args=(proxy.endpoint, count, child_end, large_every, 16 * KiB, hwm_bytes),
                          daemon=True)
    child.start()
    child_end.close()
    try:
        seqs = receive_all(rx, count, child, deadline_s, large_every)
        report = parent.recv() if parent.poll(60) else None
        child.join(10)
    finally:
        if child.is_alive():
            child.kill()
            child.join(5)
    return seqs, report


# ---- 1. resets: hundreds of them, both sides, mid-frame ----

@pytest.mark.parametrize("count, min_resets, large_every", [
    pytest.param(30_000, 200, 2_000, id="30k"),
    pytest.param(1_000_000, 1_000, 50_000, id="1M",
                 marks=pytest.mark.skipif(not STRESS, reason="FASTMSG_STRESS=1 runs the full-size stress")),
])
def test_stream_survives_resets(count, min_resets, large_every):
    t0 = time.monotonic()
    with fastmsg.Receiver("tcp://127.0.0.1:0", max_batch_bytes=16 * KiB) as rx, \
            FaultProxy(rx.endpoint, seed=11) as proxy:
        proxy.reset_after(20_000, 200_000)
        seqs, report = run_stream(proxy, rx, count, deadline_s=40 if count < 100_000 else 900,
                                  large_every=large_every)
        rst = rx.stats()
        pst = proxy.stats()
    tst = report["stats"] if report else {}
    figures = dict(order_report(seqs, count), resets=pst["resets"], connections=pst["connections"],
                   duplicates_discarded=rst["duplicates"], resent=tst.get("resent"),
                   replaced=rst["replaced_connections"], receiver_lost=rst["lost"],
                   crc_errors=rst["crc_errors"], protocol_errors=rst["protocol_errors"],
                   seconds=round(time.monotonic() - t0, 1))
    print("\nresets:", figures)
    assert seqs == list(range(count)), figures
    assert report is not None and report["flushed"], (report, figures)
    assert pst["resets"] >= min_resets, f"only {pst['resets']} resets were made: {figures}"
    assert rst["lost"] == 0 and rst["crc_errors"] == 0, (rst, figures)
    assert tst["acknowledged"] == count and tst["protocol_errors"] == 0, (tst, figures)
    assert tst["resent"] > 0 and tst["connects"] > min_resets // 2, (tst, figures)


# ---- 1b. several senders reset at once and apart: each one's own order holds ----

@pytest.mark.parametrize("each, min_resets", [
    pytest.param(6_000, 100, id="3x6k"),
    pytest.param(200_000, 1_000, id="3x200k",
                 marks=pytest.mark.skipif(not STRESS, reason="FASTMSG_STRESS=1 runs the full-size stress")),
])
def test_concurrent_senders_keep_their_order_through_resets(each, min_resets):
    senders, large_every, tag = 3, 2_000, 1 << 40  # sender k sends seqs k * tag + 0..each-1
    total = senders * each
    t0 = time.monotonic()
    with fastmsg.Receiver("tcp://127.0.0.1:0", max_batch_bytes=16 * KiB) as rx, \
            FaultProxy(rx.endpoint, seed=23) as proxy:
        proxy.reset_after(20_000, 200_000)  # each connection alone
        pipes, procs = [], []
        for k in range(senders):
            parent, child_end = SPAWN.Pipe()
            procs.append(SPAWN.Process(target=fault_helpers.stream_mixed, args=(proxy.endpoint, each, child_end),
                                       kwargs=dict(large_every=large_every, first=k * tag), daemon=True))
            pipes.append(parent)
            procs[-1].start()
            child_end.close()
        got = [[] for _ in range(senders)]
        try:
            n, next_reset = 0, total // 8
            deadline = time.monotonic() + (60 if each < 100_000 else 900)
            while n < total and time.monotonic() < deadline:
                try:
                    batch = rx.recv_many(4096, timeout=0.5)
                except fastmsg.Timeout:
                    if not any(p.is_alive() for p in procs):
                        break
                    continue
                for m in batch:
                    seq = check_mixed(m, large_every)
                    got[seq // tag].append(seq % tag)
                    m.release()
                n += len(batch)
                if n >= next_reset:  # and all of them at once: the senders come back together
                    proxy.reset_all()
                    next_reset += total // 8
            reports = [p.recv() if p.poll(60) else None for p in pipes]
            for p in procs:
                p.join(10)
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join(5)
        rst = rx.stats()
        pst = proxy.stats()
    figures = dict(senders=[order_report(g, each) for g in got], resets=pst["resets"],
                   connections=pst["connections"], duplicates_discarded=rst["duplicates"],
                   resent=[r and r["stats"]["resent"] for r in reports], seconds=round(time.monotonic() - t0, 1))
    print("\nconcurrent resets:", figures)
    for g in got:  # strictly increasing from 0, no gap, nothing twice
        assert g == list(range(each)), figures
    for r in reports:
        assert r is not None and r["flushed"], (r, figures)
        assert r["stats"]["acknowledged"] == each and r["stats"]["protocol_errors"] == 0, (r, figures)
        assert r["stats"]["connects"] > 2, (r, figures)
    assert pst["resets"] >= min_resets, figures
    assert rst["sessions"] == senders and rst["lost"] == 0 and rst["crc_errors"] == 0, (rst, figures)


# ---- 2. bit flips: corrupt batches refused, resent, nothing corrupt delivered ----

def test_stream_survives_bit_flips():
    count = 20_000
    t0 = time.monotonic()
    with fastmsg.Receiver("tcp://127.0.0.1:0", max_batch_bytes=16 * KiB) as rx, \
            FaultProxy(rx.endpoint, seed=7) as proxy:
        # About one 16 KiB batch in 20 gets a flip. Each refusal loses what is in flight (up to the
        # sender's 256 KiB queue), and that much again must pass unharmed for the stream to move.
        proxy.flip_bits(4e-7)
        seqs, report = run_stream(proxy, rx, count, deadline_s=40, hwm_bytes=256 * KiB)
        rst = rx.stats()
        pst = proxy.stats()
    tst = report["stats"] if report else {}
    figures = dict(order_report(seqs, count), bits_flipped=pst["bits_flipped"], connections=pst["connections"],
                   crc_errors=rst["crc_errors"], protocol_errors=rst["protocol_errors"],
                   duplicates_discarded=rst["duplicates"], receiver_lost=rst["lost"], resent=tst.get("resent"),
                   sender_protocol_errors=tst.get("protocol_errors"), seconds=round(time.monotonic() - t0, 1))
    print("\nbit flips:", figures)
    assert seqs == list(range(count)), figures  # (and check_mixed passed on every one)
    assert report is not None and report["flushed"], (report, figures)
    assert pst["bits_flipped"] >= 20, figures
    refused = rst["crc_errors"] + rst["protocol_errors"]
    assert refused >= 10 and rst["crc_errors"] >= 5, f"too few corrupt batches were refused: {figures}"
    assert pst["connections"] > refused // 2, figures  # each refusal dropped its connection
    assert rst["lost"] == 0, figures
    assert tst["acknowledged"] == count and tst["resent"] > 0, (tst, figures)


def test_stream_survives_bit_flips_in_acks():
    """Bits flipped only in what the receiver sends (ACKs, WELCOMEs): the sender refuses each
    corrupted frame (never acting on it), reconnects and resends from its first unacknowledged
    message. Nothing may be lost or delivered twice."""
    count = 20_000
    t0 = time.monotonic()
    with fastmsg.Receiver("tcp://127.0.0.1:0", max_batch_bytes=16 * KiB) as rx, \
            FaultProxy(rx.endpoint, seed=5) as proxy:
        proxy.flip_bits(5e-4, direction="to_client")  # about one 24-byte ACK in 10
        seqs, report = run_stream(proxy, rx, count, deadline_s=40, hwm_bytes=256 * KiB)
        rst = rx.stats()
        pst = proxy.stats()
    tst = report["stats"] if report else {}
    figures = dict(order_report(seqs, count), bits_flipped=pst["bits_flipped"], connections=pst["connections"],
                   sender_crc_errors=tst.get("crc_errors"), sender_protocol_errors=tst.get("protocol_errors"),
                   acks=rst["acks"], duplicates_discarded=rst["duplicates"], resent=tst.get("resent"),
                   receiver_crc_errors=rst["crc_errors"], seconds=round(time.monotonic() - t0, 1))
    print("\nbit flips in ACKs:", figures)
    assert seqs == list(range(count)), figures
    assert report is not None and report["flushed"], (report, figures)
    assert tst["crc_errors"] >= 3, f"too few corrupt frames were refused by the sender: {figures}"
    assert pst["connections"] > tst["crc_errors"], figures  # each refusal dropped its connection
    assert rst["crc_errors"] == 0 and rst["lost"] == 0, figures  # nothing was flipped on the way there
    assert tst["acknowledged"] == count, (tst, figures)


# ---- 3 and 4. a receiver killed with SIGKILL, another started on the same endpoint ----

def start_recorder(port, path, ack="released"):
    ready = SPAWN.Event()
    p = SPAWN.Process(target=fault_helpers.receive_and_record, args=(port, path, ready, ack), daemon=True)
    p.start()
    assert ready.wait(30), "the receiver child did not start"
    return p


@needs_sigkill
def test_receiver_killed_mid_stream_and_restarted(tmp_path):
    """ack="released": whatever the first receiver's application had not released is delivered
    again by the second; what it had released and the sender knew of is not."""
    count = 30_000
    port = free_port()
    files = [str(tmp_path / "rx1"), str(tmp_path / "rx2")]
    procs = [start_recorder(port, files[0])]
    t0 = time.monotonic()
    try:
        with fastmsg.Sender(f"tcp://127.0.0.1:{port}", max_batch_bytes=16 * KiB, hwm_bytes=1 << 20) as tx:
            def kill():
                os.kill(procs[0].pid, signal.SIGKILL)
                procs[0].join(10)
                procs.append(start_recorder(port, files[1]))
            acked_before_kill = stream_killing_once(tx, count, files[0], kill, seconds=40)
            flushed = tx.flush(30)
            tst = tx.stats()
        first, second = read_record(files[0]), read_record(files[1])
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    duplicates = sorted(set(first) & set(second))
    figures = dict(first_received=len(first), first_max=max(first, default=None), second_received=len(second),
                   second_first=second[0] if second else None, acked_before_kill=acked_before_kill,
                   duplicates=len(duplicates), resent=tst["resent"], connects=tst["connects"],
                   seconds=round(time.monotonic() - t0, 1))
    print("\nreceiver killed:", figures)
    assert flushed and tst["acknowledged"] == count, (tst, figures)
    # each receiver's application saw an unbroken run in order, and together they saw everything
    assert first == list(range(len(first))), figures
    assert second and second == list(range(second[0], count)), figures
    assert set(first) | set(second) == set(range(count)), figures
    # what came twice is exactly the first receiver's tail that the sender had not seen acknowledged
    assert duplicates == list(range(second[0], len(first))), figures
    assert second[0] >= acked_before_kill, f"a message acknowledged before the kill came again: {figures}"


@needs_sigkill
@pytest.mark.parametrize("ack", ["received", "released"])
def test_ack_on_receipt_forgets_what_a_killed_receiver_held(ack):
    """The trade-off of ack="received": the sender forgets a message as soon as it arrived, so
    one that the receiving application had received but not yet processed when it died is not
    delivered again (at most once past the arrival), and flush() means "arrived", not
    "processed". With ack="released" (the default) the same messages come again to the next
    receiver (at least once), at the price of the sender keeping them until they are released."""
    n1, keep, n2 = 2_000, 300, 1_000
    port = free_port()
    procs, pipes = [], []

    def start():
        parent, child = SPAWN.Pipe()
        p = SPAWN.Process(target=fault_helpers.receive_and_hold, args=(port, ack, child), daemon=True)
        p.start()
        procs.append(p)
        pipes.append(parent)
        assert parent.poll(30) and parent.recv() == "ready"
        return parent

    try:
        first = start()
        # The receiver holds all n1 (some 3 MB) until it has them all: the Sender's ring must too.
        with fastmsg.Sender(f"tcp://127.0.0.1:{port}", hwm_bytes=8 << 20, ring_bytes=8 << 20) as tx:
            tx.send_many([mixed_payload(i) for i in range(n1)])
            first.send(("until", n1 - 1, keep))  # processes n1 - keep, holds the last `keep`
            assert first.poll(30)
            got1 = first.recv()
            assert got1 == list(range(n1))
            if ack == "received":
                assert tx.flush(10)  # everything arrived: the sender holds nothing more
            else:
                # acknowledged per batch, once all of a batch is released: up to the held ones' first batch
                wait_for(lambda: tx.stats()["acknowledged"] > 0, what="the processed ones acknowledged")
                assert not tx.flush(0.2)  # the held ones are not acknowledged
            os.kill(procs[0].pid, signal.SIGKILL)
            procs[0].join(10)
            wait_for(lambda: not tx.connected, what="the sender to see the receiver gone")
            acked = tx.stats()["acknowledged"]  # (every ACK sent before the kill is read by now)
            second = start()
            tx.send_many([mixed_payload(i) for i in range(n1, n1 + n2)])
            second.send(("until", n1 + n2 - 1, 0))
            assert second.poll(30)
            got2 = second.recv()
            assert tx.flush(10)
            tst = tx.stats()
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
    figures = dict(ack=ack, acked_before_kill=acked, held_unprocessed=keep, second_first=got2[0] if got2 else None,
                   second_received=len(got2), resent=tst["resent"])
    print("\nack mode:", figures)
    if ack == "received":
        assert acked == n1, figures
        assert got2 == list(range(n1, n1 + n2)), f"held messages came again: {figures}"
    else:
        assert 0 < acked <= n1 - keep, figures
        assert got2 == list(range(acked, n1 + n2)), f"held messages were lost: {figures}"


# ---- 5. a script that ends without close() ----

def run_script(code):
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_script_ending_without_close_delivers_everything():
    count = 20_000
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        # A queue large enough to take all 20 MB at once: the script reaches its end while most of
        # it is still unwritten (with a small queue send_many itself waits, and that hides it).
        # The Sender's linger, given at exit, is generous so that a busy machine cannot fail it.
        p = run_script(f"""
            import fastmsg
            tx = fastmsg.Sender({rx.endpoint!r}, hwm_bytes=32 << 20, ring_bytes=32 << 20, linger=60)
            tx.send_many([i.to_bytes(8, "little") * 125 for i in range({count})])
        """)
        got = []
        try:
            deadline = time.monotonic() + 60
            while len(got) < count and time.monotonic() < deadline:
                try:
                    batch = rx.recv_many(4096, timeout=0.5)
                except fastmsg.Timeout:
                    if p.poll() is not None:
                        try:  # the script is gone: whatever it delivered has arrived by now
                            batch = rx.recv_many(4096, timeout=2)
                        except fastmsg.Timeout:
                            break
                    else:
                        continue
                for m in batch:
                    got.append(int.from_bytes(bytes(m)[:8], "little"))
                    m.release()
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
    lost = count - len(set(got))
    assert p.returncode == 0, err
    assert got == list(range(count)), f"{lost} of {count} lost; stderr: {err.strip()!r}"
    assert err == ""


def test_script_ending_with_messages_unacknowledged_says_how_many():
    # The receiver holds every message it got (acknowledged on release, by default): the script's
    # Sender waits its linger at exit, then says on stderr how many it gives up.
    count = 300
    with fastmsg.Receiver("tcp://127.0.0.1:0") as rx:
        p = run_script(f"""
            import fastmsg
            tx = fastmsg.Sender({rx.endpoint!r}, linger=0.5)
            tx.send_many([b"x" * 100] * {count})
        """)
        try:
            held = []
            while len(held) < count:
                held += rx.recv_many(count, timeout=30)
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        assert p.returncode == 0, err
        assert f"ResourceWarning: Sender to {rx.endpoint}: {count} messages not acknowledged at interpreter exit, " \
               f"within the Sender's linger (0.5 s)" in err, err
        for m in held:
            m.release()


def test_sender_freed_unclosed_with_messages_unacknowledged_says_how_many(capfd):
    port = free_port()  # nobody listens: nothing can be acknowledged
    tx = fastmsg.Sender(f"tcp://127.0.0.1:{port}")
    tx.send_many([b"y"] * 7)
    del tx
    assert f"Sender to tcp://127.0.0.1:{port}: 7 messages not acknowledged when the Sender was freed " \
           f"without close()" in capfd.readouterr().err
