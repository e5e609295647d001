"""CRC32C: known vectors, agreement with an independent implementation, every kernel, bad input."""

import array
import mmap
import os
import random
import subprocess
import sys
import threading

import crc32c as reference
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmsg
from fastmsg._core import crc as core

RUNNABLE = [name for name, runs in core.kernels() if runs]


@pytest.fixture(params=RUNNABLE)
def kernel(request):
    """crc32c(data, value) through one kernel; the tests below run once per runnable kernel."""
    name = request.param
    return lambda data, value=0: core.crc32c_using(name, data, value)


# RFC 3720 appendix B.4, and the catalogue check value.
VECTORS = [
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (
        bytes.fromhex(
            "01c00000000000000000000000000000140000000000040000000014000000182800000000000000"
            "0200000000000000"
        ),
        0xD9963A56,
    ),
    (b"123456789", 0xE3069283),
    (b"", 0),
]


@pytest.mark.parametrize("data, expected", VECTORS)
def test_known_vectors(kernel, data, expected):
    assert kernel(data) == expected


@pytest.mark.parametrize("data, expected", VECTORS)
def test_public_function_matches_vectors(data, expected):
    assert fastmsg.crc32c(data) == expected


def test_every_split_point_continues_the_running_crc(kernel):
    data = random.Random(7).randbytes(2048)
    whole = kernel(data)
    for split in range(len(data) + 1):
        assert kernel(data[split:], kernel(data[:split])) == whole, split


def _lengths():
    # Every length up to 300 (all head/tail shapes), the edges of each kernel's size classes,
    # and a spread of larger random ones up to 1 MiB.
    edges = {511, 512, 513, 767, 768, 769, 1023, 1024, 1025, 3071, 3072, 3073, 3455, 3456,
             12287, 12288, 12289, 24575, 24576, 24577, 32767, 32768, 32769, 65536, 1 << 20}
    rng = random.Random(11)
    return sorted(set(range(301)) | edges | {rng.randrange(301, 1 << 20) for _ in range(40)})


def test_agrees_with_the_crc32c_package(kernel):
    rng = random.Random(3)
    pool = rng.randbytes((1 << 20) + 64)
    view = memoryview(pool)
    for n in _lengths():
        offset = rng.randrange(64)
        chunk = view[offset : offset + n]
        start = rng.getrandbits(32)
        assert kernel(chunk) == reference.crc32c(chunk), (n, offset)
        assert kernel(chunk, start) == reference.crc32c(chunk, start), (n, offset)


@settings(max_examples=200, deadline=None)
@given(a=st.binary(max_size=5000), b=st.binary(max_size=5000))
def test_combine_equals_crc_of_concatenation(a, b):
    combined = fastmsg.crc32c_combine(fastmsg.crc32c(a), fastmsg.crc32c(b), len(b))
    assert combined == fastmsg.crc32c(a + b)


@settings(max_examples=50, deadline=None)
@given(crc_a=st.integers(0, 2**32 - 1), zeros=st.integers(0, (1 << 61) - 1))
def test_combine_with_zeros_matches_the_reference(crc_a, zeros):
    # crc(A || zeros(n)) for huge n cannot be computed directly; check small n exactly and
    # that huge n stays in range and is deterministic.
    n = zeros % 4096
    assert fastmsg.crc32c_combine(crc_a, reference.crc32c(bytes(n)), n) == reference.crc32c(
        bytes(n), crc_a
    )
    big = fastmsg.crc32c_combine(crc_a, 0, zeros)
    assert 0 <= big < 2**32 and big == fastmsg.crc32c_combine(crc_a, 0, zeros)


def test_combine_of_empty_b_is_a():
    assert fastmsg.crc32c_combine(0x12345678, 0, 0) == 0x12345678


@pytest.mark.parametrize(
    "make",
    [
        bytes,
        bytearray,
        lambda b: memoryview(b),
        lambda b: memoryview(bytearray(b))[3:],
        lambda b: array.array("B", b),
        lambda b: np.frombuffer(b, dtype=np.uint8).copy(),
        lambda b: np.frombuffer(b[: len(b) // 8 * 8], dtype=np.float64).reshape(-1, 2),
    ],
    ids=["bytes", "bytearray", "memoryview", "memoryview-slice", "array", "numpy-u8", "numpy-2d-f64"],
)
def test_accepts_any_contiguous_buffer(make):
    raw = random.Random(5).randbytes(100_000)
    obj = make(raw)
    expected = reference.crc32c(memoryview(obj).cast("B") if not isinstance(obj, bytes) else obj)
    assert fastmsg.crc32c(obj) == expected


def test_accepts_mmap():
    data = os.urandom(70_000)
    with mmap.mmap(-1, len(data)) as m:
        m.write(data)
        assert fastmsg.crc32c(m) == reference.crc32c(data)


def test_threads_get_correct_results_while_the_gil_is_released():
    data = [os.urandom(200_000 + i) for i in range(4)]
    expected = [reference.crc32c(d) for d in data]
    failures = []

    def worker(i):
        for _ in range(50):
            if fastmsg.crc32c(bytearray(data[i])) != expected[i]:
                failures.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


@pytest.mark.parametrize(
    "data, exc, words",
    [
        ("text", TypeError, "not str"),
        (42, TypeError, "not int"),
        (None, TypeError, "NoneType"),
        (memoryview(bytes(64))[::2], ValueError, "C-contiguous"),
        (np.zeros((8, 8), dtype=np.uint8)[:, ::2], ValueError, "C-contiguous"),
    ],
    ids=["str", "int", "None", "strided-memoryview", "strided-numpy"],
)
def test_bad_data_is_refused_clearly(data, exc, words):
    with pytest.raises(exc, match=words):
        fastmsg.crc32c(data)


@pytest.mark.parametrize("value", [-1, 2**32, 2**64])
def test_out_of_range_value_is_refused(value):
    with pytest.raises(ValueError, match=r"value must be in 0\.\.2\*\*32-1"):
        fastmsg.crc32c(b"abc", value)


def test_non_int_value_is_refused():
    with pytest.raises(TypeError, match="value must be an int"):
        fastmsg.crc32c(b"abc", 1.0)


@pytest.mark.parametrize(
    "args, exc, words",
    [
        ((0, 0, -1), ValueError, "len_b must be in"),
        ((-1, 0, 1), ValueError, "crc_a must be in"),
        ((0, 2**32, 1), ValueError, "crc_b must be in"),
        ((0, 0, 1.5), TypeError, "len_b must be an int"),
    ],
)
def test_combine_bad_arguments(args, exc, words):
    with pytest.raises(exc, match=words):
        fastmsg.crc32c_combine(*args)


# Lengths either side of where the selected kernel's short loop hands over to the kernel itself.
FORCED_LENGTHS = (9, 767, 768, 769, 5000)


def _import_with_kernel(name):
    code = ("import fastmsg; print(fastmsg.crc32c_implementation, "
            f"*(fastmsg.crc32c(bytes(i * 7 % 251 for i in range(n))) for n in {FORCED_LENGTHS}))")
    env = dict(os.environ, FASTMSG_CRC32C=name)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("name", RUNNABLE)
def test_environment_variable_forces_each_kernel(name):
    """Forcing a kernel forces its short loop too: both give the reference's value."""
    result = _import_with_kernel(name)
    assert result.returncode == 0, result.stderr
    data = [bytes(i * 7 % 251 for i in range(n)) for n in FORCED_LENGTHS]
    assert result.stdout.split() == [name] + [str(reference.crc32c(d)) for d in data]


def test_environment_variable_with_unknown_kernel_fails_the_import_clearly():
    result = _import_with_kernel("nonesuch")
    assert result.returncode != 0
    assert "FASTMSG_CRC32C='nonesuch' names no kernel" in result.stderr
    assert "portable" in result.stderr


def test_unknown_kernel_name_in_crc32c_using():
    with pytest.raises(ValueError, match="unknown or cannot run"):
        core.crc32c_using("nonesuch", b"")


def test_best_runnable_kernel_is_chosen_by_default():
    if os.environ.get("FASTMSG_CRC32C"):
        pytest.skip("a kernel is forced by the environment")
    assert fastmsg.crc32c_implementation == RUNNABLE[0]
