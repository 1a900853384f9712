"""Benchmark room: quality and speed measurements whose results are committed under benchmarks/results/."""
