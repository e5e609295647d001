"""What the benchmarks share about their rounds."""


def median_seconds(benchmark):
    """The median round of a benchmark just run, or None when benchmarks are disabled
    (--benchmark-disable runs each once, as a test, and keeps no statistics)."""
    return benchmark.stats.stats.median if benchmark.stats is not None else None
