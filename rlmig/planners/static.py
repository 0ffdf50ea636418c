"""The static planner: one fixed configuration for the whole run."""

from __future__ import annotations

from rlmig.planners.base import ClusterState, Decision, Planner
from rlmig.simulator import whole_gpus


class StaticPlanner(Planner):
    """Runs the workload's own `configuration`, or whole GPUs when it gives none (`whole_gpus`)."""

    name = "static"
    objective = "nothing: the workload's own configuration (or whole GPUs), never changed"

    def plan(self, state: ClusterState) -> Decision:
        if state.current is not None:
            return Decision(state.current)
        config = state.workload.configuration or whole_gpus(state.simulator)
        return Decision(config)
