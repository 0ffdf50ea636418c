"""The comparison harness: every planner on every scenario, with the same simulator, forecaster and seeds.

Usage::

    from rlmig.eval.harness import evaluate

    evaluation = evaluate(["eval/scenarios/azure-retrain.yaml"], ["ilp", "parva", "greedy"], seeds=2)
    for table in evaluation.tables():
        console.print(table.to_rich())
    json.dumps(evaluation.to_json())      # {"results": [{"scenario": ..., "planner": ..., ...}], ...}

A scenario is a workload file, or the name of one shipped in ``rlmig/eval/scenarios`` (``azure-retrain``).

Seeds: seed 0 is the file as written. Seed i > 0 is the same file with the ``seed`` of every synthetic
load offset by i (a synthetic load without one has seed 0, so it gets i); everything else is unchanged.
Only the random parts of a load depend on its seed (the MMPP bursts of ``bursty``, the ``noise`` of the
other generators): constant rates, traces and noise-free diurnal/step/spike/ramp loads are the same under
every seed, so a scenario without any random load gives the same figures for every seed (the ParvaGPU
serve scenarios, spike-shift).

Planner names come from `rlmig.planners.PLANNERS`. ``time_limit`` goes to the planners that take a
``time_limit`` option (the ILP planners); the others ignore it. A planner that fails on a scenario with
an `RlmigError` (for example an ILP that finds no solution within its time limit) or proposes a
configuration the simulator refuses (a ValueError) is reported as a failure and the evaluation goes on.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from rlmig.bound import hindsight_bound
from rlmig.errors import ConfigError, RlmigError
from rlmig.eval.tables import TableData, fmt, fmt_ms
from rlmig.inputs import read_yaml
from rlmig.parallel import fan_out, ray_session
from rlmig.planners import LEARNED, PLANNERS, Planner, PlannerRun, make_planner, run_planner
from rlmig.workload import Workload, load_workload, parse_workload

DEFAULT_PLANNERS = ("ilp", "ilp-foresight", "parva", "greedy", "static-best", "as-is", "ekya")
"""The planners `rlmig eval` compares by default (``rl`` joins them once it is registered)."""

REFERENCE = "ilp"
"""The planner every other is compared with (``ratio_to_ilp``): the ILP oracle (window-aware)."""


# -- scenarios and planners ----------------------------------------------------------------------


def scenario_dir() -> Path:
    """The folder of the shipped scenarios (package data of `rlmig.eval`)."""
    return Path(str(resources.files("rlmig.eval") / "scenarios"))


def builtin_scenarios() -> dict[str, Path]:
    """The shipped scenarios by name (file stem)."""
    return {p.stem: p for p in sorted(scenario_dir().glob("*.yaml"))}


def resolve_scenario(ref: str | Path) -> Path:
    """A workload file path, or the shipped scenario of that name."""
    path = Path(ref)
    if path.is_file():
        return path
    shipped = builtin_scenarios()
    if str(ref) in shipped:
        return shipped[str(ref)]
    raise ConfigError(f"{ref}: no such workload file or shipped scenario (shipped: {', '.join(shipped)})")


def reseed(data: Any, offset: int) -> Any:
    """A copy of a parsed workload mapping with every synthetic load's seed offset by `offset`."""
    data = copy.deepcopy(data)
    if offset and isinstance(data, dict) and isinstance(data.get("tenants"), list):
        for tenant in data["tenants"]:
            load = tenant.get("load") if isinstance(tenant, dict) else None
            if isinstance(load, dict) and "synthetic" in load:
                seed = load.get("seed", 0)
                load["seed"] = (seed if isinstance(seed, int) else 0) + offset
    return data


def load_scenario(ref: str | Path, seed: int = 0) -> Workload:
    """The workload of a scenario under seed `seed` (see the module docstring)."""
    path = resolve_scenario(ref)
    workload = load_workload(path)  # validates the file as written, with errors naming it
    if seed == 0:
        return workload
    data = reseed(read_yaml(path, "scenario file"), seed)
    return parse_workload(data, source=str(path), base_dir=path.parent, default_name=path.stem)


def planner_names(spec: str | Iterable[str]) -> list[str]:
    """Planner names from a comma-separated list (or a sequence), each checked against the registry."""
    names = [n.strip() for n in (spec.split(",") if isinstance(spec, str) else spec) if n.strip()]
    if not names:
        raise RlmigError("no planner named")
    for name in names:
        if name not in PLANNERS:
            raise RlmigError(f"unknown planner {name!r} (known: {', '.join(sorted(PLANNERS))})")
    return list(dict.fromkeys(names))


_TAKES_TIME_LIMIT: dict[tuple[str, int], bool] = {}


def takes_time_limit(name: str) -> bool:
    """Whether the registered planner `name` accepts a ``time_limit`` option: its factory names one, or
    takes ``**options`` and builds with one (tried once per factory)."""
    factory = PLANNERS[name]
    key = (name, id(factory))
    if key not in _TAKES_TIME_LIMIT:
        parameters: Mapping[str, inspect.Parameter]
        try:
            parameters = inspect.signature(factory).parameters
        except (TypeError, ValueError):
            parameters = {}
        if "time_limit" in parameters:
            _TAKES_TIME_LIMIT[key] = True
        elif any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            try:
                make_planner(name, time_limit=1.0)
                _TAKES_TIME_LIMIT[key] = True
            except RlmigError:  # "bad options", or it cannot be built here at all
                _TAKES_TIME_LIMIT[key] = False
        else:
            _TAKES_TIME_LIMIT[key] = False
    return _TAKES_TIME_LIMIT[key]


TimeLimit = float | Mapping[str, float] | None
"""Seconds per decision for every planner that takes a time limit, or per planner name."""


PLANNER_OPTIONS: dict[str, dict[str, object]] = {name: {"fallback": "parva"} for name in LEARNED}
"""What the evaluation asks of a planner beyond its defaults: the learned policy (guarded or alone) gets
parva as its fallback, so that it runs on workloads beyond its limits too; each such decision is
counted (the fallbacks column) and the table names the fallback."""


def build_planner(name: str, time_limit: TimeLimit = None) -> Planner:
    """A fresh planner with `PLANNER_OPTIONS`, given its time limit when it takes one (`make_planner`'s
    defaults otherwise)."""
    limit = time_limit.get(name) if isinstance(time_limit, Mapping) else time_limit
    options = dict(PLANNER_OPTIONS.get(name, {}))
    if limit is not None and takes_time_limit(name):
        options["time_limit"] = limit
    return make_planner(name, **options)


def default_planners() -> list[str]:
    """`DEFAULT_PLANNERS`, then every other registered planner but ``static`` (which runs a workload's
    own configuration) that builds with its default options: a planner registered later, such as the
    learned policy, joins the comparison once it can run (its checkpoint is there)."""
    extra = []
    for name in PLANNERS:
        if name in DEFAULT_PLANNERS or name == "static":
            continue
        try:
            make_planner(name)
        except Exception:  # not usable here (no checkpoint, missing extra): left out of the defaults
            continue
        extra.append(name)
    return [*DEFAULT_PLANNERS, *extra]


# -- results -------------------------------------------------------------------------------------


@dataclass
class EvalResult:
    """One planner's run on one scenario under one seed."""

    scenario: str
    planner: str
    seed: int
    mode: str
    goodput_ratio: float
    slo_attainment: float
    accuracy: float
    gpu_seconds: float
    gpus: float  # serve: GPUs used; dynamic: mean GPUs used per interval
    reconfigs: int
    decisions: int
    decision_ms_p50: float
    decision_ms_p99: float
    wall_s: float
    proven: int | None = None  # decisions proven optimal (None: the planner proves nothing)
    guard_overrules: int | None = None  # decisions where a guard kept another candidate (None: no guard)
    fallback_decisions: int | None = None  # decisions a fallback planner made (None: no fallback)
    ratio_to_ilp: float | None = None  # goodput_ratio / the ILP's on the same scenario and seed
    of_bound: float | None = None  # goodput_ratio / the hindsight bound (dynamic mode)
    decision_seconds: list[float] = field(default_factory=list, repr=False)
    run: PlannerRun | None = field(default=None, repr=False)
    workload: Workload | None = field(default=None, repr=False)

    @classmethod
    def from_run(
        cls,
        workload: Workload,
        planner: str,
        seed: int,
        run: PlannerRun,
        wall_s: float,
        can_defer: bool = False,
    ) -> EvalResult:
        """`can_defer`: the planner has a guard or a fallback (`Planner.can_defer`): count their decisions."""
        m = run.result.metrics
        used = [o.gpus_used for o in run.result.intervals]
        claims = [d.optimal for d in run.decisions if d.optimal is not None]
        return cls(
            scenario=workload.name,
            planner=planner,
            seed=seed,
            mode=workload.mode,
            goodput_ratio=float(m.goodput_ratio),
            slo_attainment=float(m.slo_attainment),
            accuracy=float(m.accuracy),
            gpu_seconds=float(m.gpu_seconds),
            gpus=float(used[0]) if workload.mode == "serve" else float(np.mean(used)),
            reconfigs=int(m.reconfigs),
            decisions=len(run.decision_seconds),
            decision_ms_p50=run.decision_ms_p50,
            decision_ms_p99=run.decision_ms_p99,
            wall_s=wall_s,
            proven=sum(claims) if claims else None,
            guard_overrules=run.guard_overrules if can_defer else None,
            fallback_decisions=run.fallback_decisions if can_defer else None,
            decision_seconds=list(run.decision_seconds),
            run=run,
            workload=workload,
        )

    def to_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "planner": self.planner,
            "seed": self.seed,
            "mode": self.mode,
            "goodput_ratio": self.goodput_ratio,
            "slo_attainment": self.slo_attainment,
            "accuracy": self.accuracy,
            "gpu_seconds": self.gpu_seconds,
            "gpus": self.gpus,
            "reconfigs": self.reconfigs,
            "decisions": self.decisions,
            "decision_ms_p50": self.decision_ms_p50,
            "decision_ms_p99": self.decision_ms_p99,
            "wall_s": self.wall_s,
            "proven_optimal": self.proven,
            "guard_overrules": self.guard_overrules,
            "fallback_decisions": self.fallback_decisions,
            "ratio_to_ilp": self.ratio_to_ilp,
            "of_bound": self.of_bound,
        }


@dataclass(frozen=True)
class Failure:
    """A run that stopped with an error."""

    scenario: str
    planner: str
    seed: int
    error: str


@dataclass
class Summary:
    """One planner's figures over several runs: means, sums, and latency percentiles of every decision."""

    planner: str
    runs: int
    goodput_ratio: float
    goodput_sd: float
    slo_attainment: float
    accuracy: float
    gpus: float
    gpu_seconds: float
    reconfigs: float
    decision_ms_p50: float
    decision_ms_p99: float
    decisions: int
    proven: int | None
    ratio_to_ilp: float | None
    of_bound: float | None = None
    guard_overrules: float | None = None  # per run
    fallback_decisions: float | None = None  # per run
    label: str = ""  # the planner's name, and the fallback that decided for it when one did

    @classmethod
    def of(cls, results: Sequence[EvalResult]) -> Summary:
        seconds = [s for r in results for s in r.decision_seconds]
        ratios = [r.ratio_to_ilp for r in results if r.ratio_to_ilp is not None]
        of_bound = [r.of_bound for r in results if r.of_bound is not None]
        goodput = [r.goodput_ratio for r in results]
        claims = [r.proven for r in results if r.proven is not None]
        return cls(
            planner=results[0].planner,
            runs=len(results),
            goodput_ratio=float(np.mean(goodput)),
            goodput_sd=float(np.std(goodput)),
            slo_attainment=float(np.mean([r.slo_attainment for r in results])),
            accuracy=float(np.mean([r.accuracy for r in results])),
            gpus=float(np.mean([r.gpus for r in results])),
            gpu_seconds=float(np.mean([r.gpu_seconds for r in results])),
            reconfigs=float(np.mean([r.reconfigs for r in results])),
            decision_ms_p50=float(np.percentile(seconds, 50) * 1e3) if seconds else 0.0,
            decision_ms_p99=float(np.percentile(seconds, 99) * 1e3) if seconds else 0.0,
            decisions=sum(r.decisions for r in results),
            proven=sum(claims) if claims else None,
            ratio_to_ilp=float(np.mean(ratios)) if ratios else None,
            of_bound=float(np.mean(of_bound)) if of_bound else None,
            guard_overrules=_mean_count([r.guard_overrules for r in results]),
            fallback_decisions=_mean_count([r.fallback_decisions for r in results]),
            label=_label(results),
        )


def _label(results: Sequence[EvalResult]) -> str:
    name = results[0].planner
    labels = {r.run.decided_by(name) for r in results if r.run is not None} or {name}
    return labels.pop() if len(labels) == 1 else f"{name} (a fallback decided in some runs)"


def _mean_count(counts: Sequence[int | None]) -> float | None:
    known = [c for c in counts if c is not None]
    return float(np.mean(known)) if known else None


def _count(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


COLUMNS = [
    "planner",
    "goodput",
    "SLO att.",
    "accuracy",
    "GPUs",
    "GPU-s",
    "reconfigs",
    "p50 ms",
    "p99 ms",
    "optimal",
    "vs ilp",
    "of bound",
    "overrules",
    "fallbacks",
]
LEGEND = (
    "goodput: accuracy-weighted SLO attainment (goodput / arrivals); SLO att.: requests served within the "
    "SLO / arrivals; accuracy: mean accuracy of the requests served; GPUs: GPUs used (dynamic: mean per "
    "interval); GPU-s: GPU-seconds; reconfigs: instances created or given a new owner; p50/p99 ms: "
    "decision latency; optimal: decisions the planner proved optimal (ILP planners; fewer than all when "
    "its solver hit the time limit); vs ilp: goodput / the ILP oracle's goodput; of bound: goodput / the "
    "hindsight bound (`rlmig bound`: no planner can exceed it, even knowing the future; the bound row); "
    "overrules: decisions where the planner's guard kept another candidate than its proposal; fallbacks: "
    "decisions made by its fallback planner instead (rl: workloads of another GPU model than the policy's)."
)


def summary_table(
    title: str,
    summaries: Sequence[Summary],
    notes: Sequence[str] = (),
    spread: bool = False,
    bound: float | None = None,
) -> TableData:
    """The comparison table: a row per planner, the best goodput in bold; `spread` adds the standard
    deviation of goodput over the runs (seeds); `bound` adds the hindsight bound's row."""
    rows = []
    for s in summaries:
        goodput = fmt(s.goodput_ratio, 4)
        if spread and s.runs > 1 and s.goodput_sd > 0:
            goodput += f" ± {s.goodput_sd:.4f}"
        rows.append(
            [
                s.label or s.planner,
                goodput,
                fmt(s.slo_attainment, 4),
                fmt(s.accuracy, 4),
                f"{s.gpus:.0f}" if float(s.gpus).is_integer() else f"{s.gpus:.2f}",
                f"{s.gpu_seconds:,.0f}",
                f"{s.reconfigs:.0f}" if float(s.reconfigs).is_integer() else f"{s.reconfigs:.1f}",
                fmt_ms(s.decision_ms_p50),
                fmt_ms(s.decision_ms_p99),
                "-" if s.proven is None else f"{s.proven}/{s.decisions}",
                fmt(s.ratio_to_ilp, 3),
                "-" if s.of_bound is None else f"{s.of_bound:.1%}",
                _count(s.guard_overrules),
                _count(s.fallback_decisions),
            ]
        )
    if bound is not None:
        rows.append(["bound", fmt(bound, 4), *["-"] * (len(COLUMNS) - 5), "100.0%", "-", "-"])
    columns = list(COLUMNS)
    for name, missing in (
        ("fallbacks", all(s.fallback_decisions is None for s in summaries)),  # no planner can defer
        ("overrules", all(s.guard_overrules is None for s in summaries)),
        ("of bound", all(s.of_bound is None for s in summaries)),  # no dynamic bound to compare with
        ("vs ilp", all(s.ratio_to_ilp is None for s in summaries)),  # the ILP was not run
    ):
        if missing:
            drop = columns.index(name)
            columns.pop(drop)
            rows = [row[:drop] + row[drop + 1 :] for row in rows]
    table = TableData(title, columns, rows, right=set(columns[1:]), notes=list(notes))
    if summaries:
        best = max(s.goodput_ratio for s in summaries)
        table.bold = {(i, 1) for i, s in enumerate(summaries) if s.goodput_ratio >= best - 1e-9}
    return table


@dataclass
class Evaluation:
    """Every run of an evaluation, the failures, and the tables and JSON made from them."""

    scenarios: list[str]
    planners: list[str]
    seeds: int
    results: list[EvalResult] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (scenario, planner) not run by request
    options: dict[str, object] = field(default_factory=dict)
    bounds: dict[tuple[str, int], float] = field(default_factory=dict)  # (scenario, seed): hindsight bound
    unseeded: list[str] = field(default_factory=list)  # scenarios no seed changes (run once)

    def select(
        self, scenario: str | None = None, planner: str | None = None, seed: int | None = None
    ) -> list[EvalResult]:
        return [
            r
            for r in self.results
            if (scenario is None or r.scenario == scenario)
            and (planner is None or r.planner == planner)
            and (seed is None or r.seed == seed)
        ]

    def modes(self) -> list[str]:
        return list(dict.fromkeys(r.mode for r in self.results))

    def scenario_table(self, scenario: str) -> TableData:
        """Per planner, the figures on `scenario` (means over seeds)."""
        summaries = [Summary.of(rs) for p in self.planners if (rs := self.select(scenario, p))]
        mode = next((r.mode for r in self.select(scenario)), "?")
        runs = len({r.seed for r in self.select(scenario)})
        title = f"{scenario} ({mode}" + (f", {runs} seeds)" if runs > 1 else ")")
        notes = [
            f"failed: {f.planner} (seed {f.seed}): {f.error}" for f in self.failures if f.scenario == scenario
        ]
        if scenario in self.unseeded:
            notes.append(
                f"no random load: every seed gives the same run, so one run stands for the {self.seeds}"
            )
        skipped = [p for s, p in self.skipped if s == scenario]
        if skipped:
            notes.append(f"not run on this scenario: {', '.join(skipped)}")
        bounds = [b for (s, _), b in self.bounds.items() if s == scenario]
        bound = float(np.mean(bounds)) if bounds else None
        return summary_table(title, summaries, notes, spread=True, bound=bound)

    def overall(self, mode: str) -> tuple[list[Summary], list[str]]:
        """Per planner run on every scenario of `mode`, its figures over them (and the seeds); the
        planners left out because they ran on only some of them."""
        names = {r.scenario for r in self.results if r.mode == mode}
        summaries, partial = [], []
        for p in self.planners:
            rs = [r for r in self.select(planner=p) if r.mode == mode]
            if {r.scenario for r in rs} == names:
                summaries.append(Summary.of(rs))
            elif rs:
                partial.append(p)
        return summaries, partial

    def overall_tables(self, single: bool = False) -> list[TableData]:
        """Per mode, the figures of each planner averaged over the scenarios (and seeds) of that mode;
        a mode with one scenario gets none unless `single` (its scenario table says it all)."""
        tables = []
        for mode in self.modes():
            count = len({r.scenario for r in self.results if r.mode == mode})
            if count < 2 and not single:
                continue
            summaries, partial = self.overall(mode)
            notes = [
                "Means over scenarios and seeds; GPUs, GPU-seconds and reconfigs per run; decision latency "
                "percentiles over every decision; vs ilp: mean of the per-run ratios of goodput."
            ]
            if partial:
                notes.append(f"Left out (not run on every {mode} scenario): {', '.join(partial)}.")
            title = f"overall, {mode} mode ({count} scenario{'s' if count > 1 else ''})"
            tables.append(summary_table(title, summaries, notes))
        return tables

    def tables(self) -> list[TableData]:
        """A table per scenario, then the overall tables."""
        return [self.scenario_table(s) for s in self.scenarios] + self.overall_tables()

    def to_json(self) -> dict[str, object]:
        return {
            "results": [r.to_json() for r in self.results],
            "failures": [f.__dict__ for f in self.failures],
            "skipped": [{"scenario": s, "planner": p} for s, p in self.skipped],
            "overall": {mode: [x.__dict__ for x in self.overall(mode)[0]] for mode in self.modes()},
            "seeds": self.seeds,
            "unseeded": list(self.unseeded),
            "options": self.options,
            "bounds": [
                {"scenario": s, "seed": seed, "upper_bound": b} for (s, seed), b in self.bounds.items()
            ],
        }


# -- running -------------------------------------------------------------------------------------


class ProgressSink(Protocol):
    """Where an evaluation reports progress: the total count of decisions, then each decision."""

    def start(self, total: int) -> None: ...

    def step(self, description: str, advance: int = 1) -> None: ...


class RichProgress:
    """A rich progress bar (on stderr by default) over every decision of an evaluation; a `ProgressSink`.

    Use it as a context manager: ``with RichProgress() as bar: evaluate(..., progress=bar)``. The bar
    appears when the evaluation starts deciding, so an input refused before that prints nothing more
    than its one-line error.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("decisions"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=True,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.task is not None:
            self.bar.stop()

    def start(self, total: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task("evaluating", total=total)

    def step(self, description: str, advance: int = 1) -> None:
        if self.task is not None:
            self.bar.update(self.task, description=description, advance=advance)


def evaluate(
    scenarios: Sequence[str | Path],
    planners: str | Sequence[str] | None = None,
    *,
    seeds: int = 1,
    forecaster: str = "auto",
    time_limit: TimeLimit = None,
    only: Mapping[str, Collection[str]] | None = None,
    progress: ProgressSink | None = None,
    ray: str | None = None,
) -> Evaluation:
    """Run every planner (default: `default_planners`) on every scenario under seeds 0 .. `seeds` - 1
    (see the module docstring); `only` restricts a planner to the scenarios (names) it lists. With
    `ray` (``"local"`` or a cluster address, `rlmig.parallel`) every (scenario, planner, seed) cell and
    every hindsight bound is a Ray task; the results are those of the serial run."""
    names = planner_names(default_planners() if planners is None else planners)
    only = only or {}
    if seeds < 1:
        raise RlmigError(f"--seeds must be at least 1, got {seeds}")
    if not scenarios:
        raise RlmigError("no scenario given")
    workloads = []
    unseeded: list[str] = []  # scenarios whose load no seed changes: one run stands for every seed
    for ref in scenarios:
        variants = [load_scenario(ref, seed) for seed in range(seeds)]
        if len(variants) > 1 and all(np.array_equal(v.rates, variants[0].rates) for v in variants[1:]):
            unseeded.append(variants[0].name)
            variants = variants[:1]
        workloads.append(variants)
    for name in names:  # fail on bad options before any long run
        build_planner(name, time_limit)
    evaluation = Evaluation(
        scenarios=list(dict.fromkeys(ws[0].name for ws in workloads)),
        planners=names,
        seeds=seeds,
        options={
            "forecaster": forecaster,
            "time_limit": dict(time_limit) if isinstance(time_limit, Mapping) else time_limit,
            "only": {k: sorted(v) for k, v in only.items()},
        },
        unseeded=unseeded,
    )

    def runs(workload: Workload) -> list[str]:
        return [n for n in names if n not in only or workload.name in only[n]]

    evaluation.skipped = [(ws[0].name, n) for ws in workloads for n in names if n not in runs(ws[0])]
    cells = [
        _Cell(workload, seed, name, forecaster, time_limit, seeds > 1)
        for variants in workloads
        for seed, workload in enumerate(variants)
        for name in runs(workload)
    ]
    bounds = [(workload, seed) for variants in workloads for seed, workload in enumerate(variants)]
    bounds = [(w, seed) for w, seed in bounds if w.mode == "dynamic"]
    with ray_session(ray):  # reached (or started) before the progress bar shows
        if progress is not None:
            progress.start(sum(_decisions(cell.workload) for cell in cells))
        jobs = [w for w, _ in bounds]
        for (workload, seed), bound in zip(bounds, fan_out(_bound, jobs, ray=ray), strict=True):
            evaluation.bounds[workload.name, seed] = bound
        # on Ray every cell is a task, and the bar advances by a cell's decisions when it is done
        outcomes: Iterable[EvalResult | Failure] = (
            (_run_cell(cell, progress) for cell in cells)
            if ray is None
            else _cells_on_ray(cells, ray, progress)
        )
        for outcome in outcomes:
            if isinstance(outcome, Failure):
                evaluation.failures.append(outcome)
            else:
                evaluation.results.append(outcome)
    _ratios(evaluation)
    return evaluation


@dataclass(frozen=True)
class _Cell:
    """One run of an evaluation: a planner on a scenario under a seed."""

    workload: Workload
    seed: int
    planner: str
    forecaster: str
    time_limit: TimeLimit
    seeded: bool  # the evaluation has several seeds: labels name the seed

    @property
    def label(self) -> str:
        return f"{self.workload.name} · {self.planner}" + (f" · seed {self.seed}" if self.seeded else "")


def _bound(workload: Workload) -> float:
    return hindsight_bound(workload).upper_bound


def _run_cell(cell: _Cell, progress: ProgressSink | None = None) -> EvalResult | Failure:
    """Run one cell; a planner that fails (RlmigError, or a configuration the simulator refuses) gives a
    `Failure`. `progress` advances by one step per decision."""
    workload, label = cell.workload, cell.label
    done = 0

    def tick(_k: int, _d: object) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress.step(label)

    if progress is not None:
        progress.step(label, 0)
    start = time.perf_counter()
    planner = build_planner(cell.planner, cell.time_limit)
    try:
        run = run_planner(workload, planner, forecaster=cell.forecaster, on_decision=tick)
    except ValueError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if not isinstance(exc, RlmigError):
            message = f"{type(exc).__name__}: {message}"
        if progress is not None:
            progress.step(label, _decisions(workload) - done)
        return Failure(workload.name, cell.planner, cell.seed, message)
    wall = time.perf_counter() - start
    return EvalResult.from_run(workload, cell.planner, cell.seed, run, wall, planner.can_defer)


def _cells_on_ray(
    cells: Sequence[_Cell], ray: str, progress: ProgressSink | None
) -> Iterator[EvalResult | Failure]:
    for cell, outcome in zip(cells, fan_out(_run_cell, cells, ray=ray), strict=True):
        if progress is not None:
            progress.step(cell.label, _decisions(cell.workload))
        yield outcome


def _decisions(workload: Workload) -> int:
    return 1 if workload.mode == "serve" else workload.intervals


def _ratios(evaluation: Evaluation) -> None:
    for result in evaluation.results:
        bound = evaluation.bounds.get((result.scenario, result.seed))
        if bound:
            result.of_bound = result.goodput_ratio / bound
        reference = evaluation.select(result.scenario, REFERENCE, result.seed)
        if reference and reference[0].goodput_ratio > 0 and math.isfinite(reference[0].goodput_ratio):
            result.ratio_to_ilp = result.goodput_ratio / reference[0].goodput_ratio
