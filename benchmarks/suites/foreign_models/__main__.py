"""``python -m edgelstm.benchmarks.suites.foreign_models``: see :mod:`.runner` for the flags."""

from edgelstm.benchmarks.suites.foreign_models.runner import main

raise SystemExit(main())
