"""Decision latency against cluster size: each planner on clusters of 1 to 1,024 GPUs.

Usage::

    from rlmig.eval.sweep import latency_sweep, sweep_plot

    points = latency_sweep([1, 2, 4, 8, 16, 32, 64], ["ilp", "parva", "greedy"], intervals=3, time_limit=10)
    sweep_plot(points, "latency.png")

The workload of size g is `cluster_workload(g, min(8, g))`, the one the benchmarks use: g A100-80GB
GPUs, min(8, g) diurnal tenants, every other one retraining, load growing with g. Each planner decides
the first `intervals` intervals of it; the decision latency is the wall time of each decision (model
building included for the ILP). Planners that take a solver time limit (the ILP planners) get
`time_limit` per decision; each of their decisions can take up to the time limit plus the time to build
the model, so `max_gpus` skips a planner above a cluster size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlmig.eval.harness import TimeLimit, build_planner, planner_names
from rlmig.eval.tables import TableData, fmt_ms
from rlmig.geometry import DEFAULT_GPU_MODEL
from rlmig.planners import check_intervals, run_planner
from rlmig.workload import Workload, parse_workload

DEFAULT_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
MODELS = ["resnet50", "bert", "vgg16", "mobilenetv2", "densenet121", "inceptionv3", "resnet101", "vgg19"]


def cluster_workload(gpus: int = 8, tenants: int = 8, interval_s: float = 60, seed: int = 0) -> Workload:
    """A dynamic workload of `gpus` A100-80GB and `tenants` diurnal tenants (every other retraining):
    the cluster of the latency sweep and of the timing scripts in benchmarks/."""
    spec = []
    for i in range(tenants):
        tenant: dict[str, object] = {
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
        {
            "gpu": DEFAULT_GPU_MODEL,
            "gpus": gpus,
            "interval_s": interval_s,
            "duration_s": 3600,
            "tenants": spec,
        },
        default_name=f"cluster-{gpus}",
    )


@dataclass(frozen=True)
class SweepPoint:
    """One planner's decisions on one cluster size (skipped: why, and no figures)."""

    planner: str
    gpus: int
    tenants: int
    decision_ms_p50: float | None
    decision_ms_p99: float | None
    decision_ms_max: float | None
    optimal: int | None  # decisions proven optimal (planners that prove anything)
    decisions: int
    skipped: str | None = None
    fallback_decisions: int = 0  # decisions a fallback planner made (rl beyond the policy's limits)

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


def latency_sweep(
    sizes: Sequence[int] = DEFAULT_SIZES,
    planners: str | Sequence[str] = ("ilp", "parva", "greedy", "static-best", "as-is", "ekya"),
    *,
    intervals: int = 3,
    time_limit: TimeLimit = 10.0,
    max_gpus: Mapping[str, int] | None = None,
    max_tenants: int = 8,
    on_point: Callable[[SweepPoint], None] | None = None,
) -> list[SweepPoint]:
    """Time every planner's first `intervals` decisions on every cluster size g, with min(max_tenants, g)
    tenants (see the module docstring); a planner named in `max_gpus` is skipped on larger clusters."""
    names = planner_names(planners)
    max_gpus = max_gpus or {}
    points = []
    for g in sizes:
        workload = cluster_workload(g, min(max_tenants, g))
        check_intervals(intervals, workload)  # a bad count is the caller's error, not a planner's
        for name in names:
            if name in max_gpus and g > max_gpus[name]:
                point = SweepPoint(
                    name, g, len(workload.tenants), None, None, None, None, 0,
                    skipped=f"skipped above {max_gpus[name]} GPUs",
                )  # fmt: skip
            else:
                try:
                    run = run_planner(workload, build_planner(name, time_limit), intervals=intervals)
                except ValueError as exc:  # RlmigError, or a configuration the simulator refuses
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    point = SweepPoint(
                        name, g, len(workload.tenants), None, None, None, None, 0, f"failed: {reason}"
                    )
                    points.append(point)
                    if on_point is not None:
                        on_point(point)
                    continue
                ms = np.array(run.decision_seconds) * 1e3
                proven = [d.optimal for d in run.decisions if d.optimal is not None]
                point = SweepPoint(
                    name,
                    g,
                    len(workload.tenants),
                    float(np.percentile(ms, 50)),
                    float(np.percentile(ms, 99)),
                    float(ms.max()),
                    sum(proven) if proven else None,
                    len(ms),
                    fallback_decisions=run.fallback_decisions,
                )
            points.append(point)
            if on_point is not None:
                on_point(point)
    return points


def sweep_plot(
    points: Sequence[SweepPoint], path: str | Path, time_limit: float | None = None, title: str | None = None
) -> Path:
    """Decision latency (p50 solid, p99 dotted) against GPU count, log-log, one color per planner; the
    planners skipped on some sizes are named under the plot."""
    from rlmig.eval.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    cmap = plt.get_cmap("tab10")
    names = list(dict.fromkeys(p.planner for p in points))
    notes = []
    for i, name in enumerate(names):
        done = [p for p in points if p.planner == name and p.skipped is None]
        skipped = sorted(
            p.gpus for p in points if p.planner == name and p.skipped and "failed" not in p.skipped
        )
        failed = [p for p in points if p.planner == name and p.skipped and p.skipped.startswith("failed")]
        if done:
            x = [p.gpus for p in done]
            p50 = [max(p.decision_ms_p50 or 0.0, 1e-3) for p in done]
            p99 = [max(p.decision_ms_p99 or 0.0, 1e-3) for p in done]
            ax.plot(x, p50, marker="o", color=cmap(i % 10), label=name)
            ax.plot(x, p99, linestyle=":", color=cmap(i % 10), linewidth=1.2)
        if skipped:
            sizes_skipped = ", ".join(map(str, skipped))
            notes.append(f"{name} not run on {sizes_skipped} GPUs: too slow for this sweep's time budget")
        if failed:
            sizes_failed = ", ".join(str(p.gpus) for p in failed)
            notes.append(f"{name} cannot run on {sizes_failed} GPUs ({failed[0].skipped})")
        deferred = [p.gpus for p in done if p.fallback_decisions]
        if deferred:
            notes.append(f"{name} on {', '.join(map(str, deferred))} GPUs: decided by its fallback planner")
    ax.plot([], [], color="black", marker="o", label="p50")
    ax.plot([], [], color="black", linestyle=":", label="p99")
    sizes = sorted({p.gpus for p in points})
    if time_limit is not None:
        ax.axhline(time_limit * 1e3, color="grey", linestyle="--", linewidth=0.8)
        label = f"ILP time limit {time_limit:g} s"
        ax.text(sizes[-1], time_limit * 1e3 * 1.15, label, fontsize=7, color="grey", ha="right")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([str(s) for s in sizes])
    ax.set_xlabel("GPUs (A100-80GB; tenants = min(8, GPUs))")
    ax.set_ylabel("decision latency (ms)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title(title or "Decision latency against cluster size")
    if notes:
        fig.text(0.01, 0.01, "\n".join(notes), ha="left", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.03 * len(notes), 1, 1))
    return save_figure(fig, path)


def sweep_table(points: Sequence[SweepPoint]) -> TableData:
    """Decision latency p50 / p99 (ms) per planner (rows) and cluster size (columns)."""
    sizes = sorted({p.gpus for p in points})
    names = list(dict.fromkeys(p.planner for p in points))
    columns = ["planner", *(f"{g} GPU{'s' if g > 1 else ''}" for g in sizes)]
    rows = []
    for name in names:
        row = [name]
        for g in sizes:
            point = next((p for p in points if p.planner == name and p.gpus == g), None)
            if point is None or point.skipped is not None or point.decision_ms_p50 is None:
                failed = point is not None and (point.skipped or "").startswith("failed")
                row.append("-" if point is None else ("cannot run" if failed else "skipped"))
                continue
            cell = f"{fmt_ms(point.decision_ms_p50)} / {fmt_ms(point.decision_ms_p99 or 0.0)}"
            if point.optimal is not None and point.optimal < point.decisions:
                cell += f" ({point.decisions - point.optimal} not proven optimal)"
            if point.fallback_decisions:
                cell += " (fallback)"
            row.append(cell)
        rows.append(row)
    notes = [
        "Decision latency in ms, p50 / p99 over the first decisions of "
        "`cluster_workload(GPUs, min(8, GPUs))` "
        "(A100-80GB, diurnal tenants, every other one retraining); wall time per decision, model building "
        "included. skipped: not run at that size (see the report's settings); (fallback): decided by "
        "the planner's fallback (rl: a workload beyond the policy's limits)."
    ]
    failures = {p.planner: p.skipped for p in points if (p.skipped or "").startswith("failed")}
    notes += [f"cannot run: {name} {reason}." for name, reason in failures.items()]
    title = "decision latency against cluster size"
    return TableData(title, columns, rows, right=set(columns[1:]), notes=notes)
