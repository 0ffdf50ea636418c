"""Planners: anything that maps an observation of the cluster to a target configuration.

`make_planner(name)` builds one by the name the CLI uses (``rlmig plan --planner NAME``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlmig.errors import RlmigError
from rlmig.planners.base import (
    ClusterState,
    Decision,
    Planner,
    PlannerRun,
    check_intervals,
    run_planner,
    serve_rates,
)
from rlmig.planners.baselines import BASELINES
from rlmig.planners.ilp import IlpForesightPlanner, IlpPlanner
from rlmig.planners.static import StaticPlanner


def _rl(**options: Any) -> Planner:
    from rlmig.planners.rl import RlPlanner  # loaded on first use: rlmig.policy imports this package

    return RlPlanner(**options)


def _rl_unguarded(**options: Any) -> Planner:
    """The learned policy alone (``rl --no-guard``), by a name an evaluation's planner list can give."""
    return _rl(**{**options, "guard": False})


LEARNED: tuple[str, ...] = ("rl", "rl-unguarded")
"""The planners that run a learned policy (they take `RlPlanner`'s options: checkpoint, fallback)."""

PLANNERS: dict[str, Callable[..., Planner]] = {
    "rl": _rl,
    "rl-unguarded": _rl_unguarded,
    "static": StaticPlanner,
    "ilp": IlpPlanner,
    "ilp-myopic": lambda horizon=1, **options: IlpPlanner(horizon=horizon, **options),
    "ilp-foresight": IlpForesightPlanner,
    **BASELINES,
}


def register(name: str, factory: Callable[..., Planner]) -> None:
    """Make a planner available to `make_planner` (and so to the CLI and the evaluation)."""
    PLANNERS[name] = factory


def make_planner(name: str, **options: Any) -> Planner:
    """A fresh planner by name, with planner-specific options."""
    factory = PLANNERS.get(name)
    if factory is None:
        raise RlmigError(f"unknown planner {name!r} (known: {', '.join(sorted(PLANNERS))})")
    try:
        return factory(**options)
    except TypeError as exc:
        raise RlmigError(f"bad options for planner {name!r}: {exc}") from None


__all__ = [
    "LEARNED",
    "PLANNERS",
    "ClusterState",
    "Decision",
    "Planner",
    "PlannerRun",
    "check_intervals",
    "make_planner",
    "register",
    "run_planner",
    "serve_rates",
]
