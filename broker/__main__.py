"""``python -m broker`` runs the ``minibroker`` command line."""

import sys

from broker.cli import main

sys.exit(main())
