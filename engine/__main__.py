"""``python -m engine``: the same commands as the ``sprout`` console script."""

import sys

from engine.cli import main

sys.exit(main())
