"""Benchmark room: quality and speed measurements; results are committed under
benchmarks/results/."""
