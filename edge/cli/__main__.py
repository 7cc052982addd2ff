"""``python -m edge.cli``: the ``edgevid`` command."""
import sys

from edge.cli.app import main

sys.exit(main())
