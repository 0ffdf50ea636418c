"""``python -m rlmig.traces build --data DIR``: the same as ``rlmig traces build``."""

import sys

from rlmig.cli import main

sys.exit(main(["traces", *sys.argv[1:]]))
