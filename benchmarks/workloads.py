"""Workloads the benchmarks share: 8 GPUs x 8 tenants on A100-80GB, half of them retraining.

The definition lives in the installed package (`rlmig.eval.sweep.cluster_workload`, which the
evaluation's latency sweep uses too); the benchmarks import it from here.
"""

from __future__ import annotations

from rlmig.eval.sweep import MODELS, cluster_workload

__all__ = ["MODELS", "cluster_workload"]
