"""Benchmark suites: scripts that produce the committed results under ``benchmarks/results``.

Each runs as ``python -m edgelstm.benchmarks.suites.NAME`` and writes to a working folder
unless told ``--out``. They use the benchmark library (harness, measure, stats, report,
plots, tune, quickstart) one level up; the library never imports them.
"""
