"""Runs a target over corpus files (and seeded mutations of them) without libFuzzer, then ends
it, so that LeakSanitizer's check at exit sees what the native core kept.

    python fuzz/replay.py session fuzz/corpus/session [--mutations 20000] [--seed 1]

libFuzzer exits from C, where Python's clean-up never runs; this replay closes the Receiver
first, so a leak report names memory the core lost, not memory still in use."""

import argparse
import importlib
import pathlib
import random
import time


def mutate(data, rng):
    """data with a few random byte changes, insertions or cuts."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        at = rng.randrange(len(b) + 1)
        if op < 0.5 and b:
            b[min(at, len(b) - 1)] = rng.randrange(256)
        elif op < 0.75:
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            del b[at:at + rng.randint(1, 8)]
    return bytes(b)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=("decoder", "handshake", "session", "sender"))
    parser.add_argument("dirs", nargs="+", type=pathlib.Path)
    parser.add_argument("--mutations", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    target = importlib.import_module(f"fuzz_{args.target}")
    inputs = [p.read_bytes() for d in args.dirs for p in sorted(d.iterdir()) if p.is_file()]
    rng = random.Random(args.seed)
    started = time.monotonic()
    for data in inputs:
        target.TestOneInput(data)
    for _ in range(args.mutations):
        target.TestOneInput(mutate(rng.choice(inputs), rng))
    if hasattr(target, "peer"):
        target.peer.close()
    took = time.monotonic() - started
    print(f"replayed {len(inputs) + args.mutations} inputs in {took:.1f} s", flush=True)


if __name__ == "__main__":
    main()
