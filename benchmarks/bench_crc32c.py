"""CRC32C throughput: fastmsg (each kernel) against the crc32c and google-crc32c packages.

Run: pytest benchmarks/bench_crc32c.py --benchmark-group-by=param:size
Groups are by size, so each group compares the implementations side by side in one run.
"""

import os

import pytest

import fastmsg
from fastmsg._core import crc as core

SIZES = {"64B": 64, "1KiB": 1 << 10, "64KiB": 64 << 10, "1MiB": 1 << 20, "16MiB": 16 << 20}


def _implementations():
    impls = {"fastmsg": fastmsg.crc32c}
    for name, runs in core.kernels():
        if runs:
            impls[f"fastmsg-{name}"] = lambda data, name=name: core.crc32c_using(name, data)
    try:
        import crc32c

        impls["crc32c"] = crc32c.crc32c
    except ImportError:
        pass
    try:
        import google_crc32c

        impls["google-crc32c"] = google_crc32c.value
    except ImportError:
        pass
    return impls


IMPLS = _implementations()


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("impl", list(IMPLS))
def test_crc32c(benchmark, impl, size):
    data = os.urandom(SIZES[size])
    benchmark.group = f"crc32c {size}"
    benchmark.extra_info["bytes"] = len(data)
    fn = IMPLS[impl]
    result = benchmark(fn, data)
    assert result == fastmsg.crc32c(data)
