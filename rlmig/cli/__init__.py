"""The `rlmig` command line: one click group (`rlmig.cli.main`), one module per group of commands,
the shared options in `rlmig.cli.common`. Only commands may import envs/, agents/ or eval/, lazily."""

from rlmig.cli.main import cli, main

__all__ = ["cli", "main"]
