"""``python -m rlmig.cli``: the same as ``rlmig``."""

import sys

from rlmig.cli.main import main

sys.exit(main())
