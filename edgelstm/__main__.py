"""``python -m edgelstm`` runs the CLI."""

import sys

from edgelstm.cli import main

sys.exit(main())
