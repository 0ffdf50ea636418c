"""Workloads the benchmarks share: 8 GPUs x 8 tenants on A100-80GB, half of them retraining."""

from __future__ import annotations

from rlmig.workload import Workload, parse_workload

MODELS = ["resnet50", "bert", "vgg16", "mobilenetv2", "densenet121", "inceptionv3", "resnet101", "vgg19"]


def cluster_workload(gpus: int = 8, tenants: int = 8, interval_s: float = 60, seed: int = 0) -> Workload:
    """A dynamic workload of `gpus` A100-80GB and `tenants` diurnal tenants (every other retraining)."""
    spec = []
    for i in range(tenants):
        tenant = {
            "name": f"t{i}",
            "model": MODELS[i % len(MODELS)],
            "slo_ms": 200,
            "load": {
                "synthetic": "diurnal",
                "mean": 300 * gpus / 8 * 8 / max(tenants, 1),
                "amplitude": 0.5,
                "period_s": 3600,
                "phase": i,
                "seed": seed + i,
            },
        }
        if i % 2 == 0:
            tenant["retraining"] = {"window_s": 600, "samples": 50000, "drift": 0.1, "accuracy": 0.9}
        spec.append(tenant)
    return parse_workload(
        {"gpu": "A100-80GB", "gpus": gpus, "interval_s": interval_s, "duration_s": 3600, "tenants": spec}
    )
