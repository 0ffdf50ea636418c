"""Errors rlmig reports to its users: each carries a one-line message naming what is wrong."""

from __future__ import annotations


class RlmigError(ValueError):
    """Base of every user-facing rlmig error; the CLI prints its message on one line, exit code 2."""


class UnknownGpuError(RlmigError):
    """A GPU model name that rlmig does not know."""


class UnknownProfileError(RlmigError):
    """A MIG profile name or ID that the GPU model does not offer."""


class InvalidLayoutError(RlmigError):
    """A set of MIG instances that cannot coexist on one GPU."""


class ConfigError(RlmigError):
    """A malformed configuration file (workload, mig-parted config, ...)."""


class UnknownModelError(RlmigError):
    """A model name the catalog does not hold for the GPU model asked for."""


class ProfileDataError(RlmigError):
    """A malformed profile CSV or profile JSON file."""
