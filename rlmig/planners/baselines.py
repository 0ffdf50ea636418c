"""The published baselines as planners: as-is, static-best (PARIS), parva (ParvaGPU), greedy (MIG-serving)
and ekya (Ekya), each reproducing its paper's behaviour in rlmig's model.

Usage::

    from rlmig.planners.base import run_planner
    from rlmig.planners.baselines import BASELINES
    from rlmig.workload import load_workload

    workload = load_workload("eval/scenarios/parvagpu-slo1.yaml")
    run = run_planner(workload, BASELINES["parva"]())
    print(run.result.intervals[0].gpus_used, run.result.metrics.goodput_ratio)

One module per planner (`as_is`, `static_best`, `parva`, `greedy`, `ekya`), what they share in
`rlmig.planners.packing`. Every speed figure comes from the one simulator's tables
(`Simulator.serve_rate`, ``train_rate``, ``time_shared_capacity``), so a baseline sees exactly what the
simulator will score. A planner plans for ``state.forecast[0]`` (in serve mode each tenant's peak);
only static-best looks at the whole run's average load, as PARIS provisions from the load distribution
it expects.

| name | after | what it does |
|---|---|---|
| ``as-is`` | unpartitioned A100s (MIG-serving's baseline) | whole GPUs, MIG off, tenants time-share them |
| ``static-best`` | PARIS, arXiv 2202.13481 | one heterogeneous layout from the average load, never changed |
| ``parva`` | ParvaGPU, arXiv 2409.14447 | optimal triplets, demand matching, best-fit segment allocation |
| ``greedy`` | MIG-serving, arXiv 2109.11067 | most effective GPU configuration first, until demand is met |
| ``ekya`` | Ekya, NSDI'22, arXiv 2012.10557 | fixed layout; thief scheduler at each retraining window start |

The inference-only systems (ParvaGPU, MIG-serving) know nothing of retraining. In dynamic mode, parva
and greedy hand the room their plan leaves (idle instances, free slots, unused GPUs) to the retraining
jobs that are running (`rlmig.planners.packing.add_retraining`, on by default, ``retraining=False``
turns it off); as-is has no MIG instance to retrain on.
"""

from __future__ import annotations

from rlmig.planners.as_is import AsIsPlanner
from rlmig.planners.base import Planner
from rlmig.planners.ekya import EkyaPlanner
from rlmig.planners.greedy import GreedyPlanner
from rlmig.planners.parva import ParvaPlanner
from rlmig.planners.static_best import StaticBestPlanner

BASELINES: dict[str, type[Planner]] = {
    "as-is": AsIsPlanner,
    "static-best": StaticBestPlanner,
    "parva": ParvaPlanner,
    "greedy": GreedyPlanner,
    "ekya": EkyaPlanner,
}
"""The baselines by CLI name."""

__all__ = ["BASELINES", "AsIsPlanner", "EkyaPlanner", "GreedyPlanner", "ParvaPlanner", "StaticBestPlanner"]
