"""``python -m edgelstm.benchmarks.suites.serve_load``: see :mod:`.runner` for the flags."""

from edgelstm.benchmarks.suites.serve_load.runner import main

raise SystemExit(main())
