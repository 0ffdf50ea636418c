"""Regenerate the evaluation report, eval/REPORT.md, and its figures, eval/figures/*.png.

Usage::

    rlmig report                      # the default report (see REPORT.md for its run time)
    rlmig report --scenarios azure-retrain,parvagpu-slo1 --planners ilp,parva \\
        --sizes 1,2 --out /tmp/report/REPORT.md      # a smaller one elsewhere

The default report runs every registered planner but ``static`` that builds here
(`rlmig.eval.harness.default_planners`) on the eleven shipped scenarios under seed 0 (REPORT.md says how
long it took). ``ilp-foresight`` (the ILP on the true future) gets `FORESIGHT_TIME_LIMIT` seconds per
decision, as the ILP does by default, and runs only on `FORESIGHT_SCENARIOS` (azure-retrain and the
serve scenarios, where it makes the serve ILP's single plan).
Pass ``--foresight-scenarios all`` (and a ``--foresight-time-limit``) for the full comparison. The latency
sweep gives the ILP planners `SWEEP_TIME_LIMIT` seconds per decision and skips ``ilp-foresight`` above
`SWEEP_MAX_GPUS`. Beside REPORT.md it writes REPORT.json (the same figures) and figures/*.png. The
report names the command, the date, the commit and every setting it ran with.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from rlmig.catalog import ModelProfile
from rlmig.errors import RlmigError
from rlmig.eval.harness import (
    LEGEND,
    REFERENCE,
    Evaluation,
    RichProgress,
    Summary,
    default_planners,
    evaluate,
    load_scenario,
    planner_names,
    takes_time_limit,
)
from rlmig.eval.plots import write_plots
from rlmig.eval.serve import PARVAGPU_GPUS, lower_bounds, serve_table
from rlmig.eval.sweep import (
    DEFAULT_SIZES,
    SweepPoint,
    cluster_workload,
    latency_sweep,
    sweep_plot,
    sweep_table,
)
from rlmig.planners import check_intervals
from rlmig.workload import Workload

EVAL_DIR = Path(__file__).resolve().parent
DYNAMIC_SCENARIOS = ("azure-retrain", "spike-shift", "diurnal-mix", "migrator-8x8", "daily-retrain")
SERVE_SCENARIOS = tuple(f"parvagpu-slo{i}" for i in range(1, 7))
FORESIGHT = "ilp-foresight"
MYOPIC = "ilp-myopic"
FORESIGHT_TIME_LIMIT = 2.0
FORESIGHT_SCENARIOS = ("azure-retrain", *SERVE_SCENARIOS)
SWEEP_TIME_LIMIT = 2.0
SWEEP_INTERVALS = 3
SWEEP_MAX_GPUS = {FORESIGHT: 16}
T = TypeVar("T")
_FIGURE_PATTERNS = ("*-goodput.png", "*-layouts.png", "decision-latency.png")


@dataclass
class ReportConfig:
    """What the report runs; the defaults make the published report."""

    scenarios: list[str] = field(default_factory=lambda: [*DYNAMIC_SCENARIOS, *SERVE_SCENARIOS])
    planners: list[str] = field(default_factory=default_planners)
    seeds: int = 1
    forecaster: str = "auto"
    time_limits: dict[str, float] = field(default_factory=lambda: {FORESIGHT: FORESIGHT_TIME_LIMIT})
    only: dict[str, list[str]] = field(default_factory=lambda: {FORESIGHT: list(FORESIGHT_SCENARIOS)})
    sizes: list[int] = field(default_factory=lambda: list(DEFAULT_SIZES))
    sweep_intervals: int = SWEEP_INTERVALS
    sweep_time_limit: float = SWEEP_TIME_LIMIT
    sweep_max_gpus: dict[str, int] = field(default_factory=lambda: dict(SWEEP_MAX_GPUS))
    out: Path = EVAL_DIR / "REPORT.md"
    figures: Path | None = None  # default: figures/ next to `out`

    @property
    def figures_dir(self) -> Path:
        return self.figures if self.figures is not None else self.out.parent / "figures"


def _git(*args: str) -> str | None:
    """A read-only git command's output in this package's checkout, or None."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=EVAL_DIR, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def provenance() -> str:
    """The commit the report ran at (with a note when the code differs from it), or 'unknown'."""
    commit = _git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    code = [":(top)rlmig", ":(top)eval/*.py", ":(top)eval/scenarios", ":(top)envs", ":(top)agents"]
    dirty = _git("status", "--porcelain", "--", *code, ":(top)checkpoints")
    return f"`{commit}`" + (" plus uncommitted changes to the code (tracked or new files)" if dirty else "")


def _rel(path: Path, base: Path) -> str:
    return os.path.relpath(path, base).replace(os.sep, "/")


def _glance(evaluation: Evaluation, sweep: Sequence[SweepPoint]) -> list[str]:
    """Bullets that say where each planner stands, from the figures."""
    lines = []
    dynamic = [s for s in evaluation.scenarios if any(r.mode == "dynamic" for r in evaluation.select(s))]
    for scenario in dynamic:
        summaries = [Summary.of(rs) for p in evaluation.planners if (rs := evaluation.select(scenario, p))]
        ranked = sorted(summaries, key=lambda s: -s.goodput_ratio)
        order = ", ".join(f"{s.planner} {s.goodput_ratio:.3f}" for s in ranked)
        lines.append(f"- **{scenario}**, goodput from best to worst: {order}.")
    if dynamic:
        summaries, partial = evaluation.overall("dynamic")
        if len(dynamic) > 1 and summaries:
            best = max(summaries, key=lambda s: s.goodput_ratio)
            left_out = f" ({', '.join(partial)} ran on only some of them)" if partial else ""
            lines.append(
                f"- Over the {len(dynamic)} dynamic scenarios{left_out}, {best.planner} has the highest mean "
                f"goodput, {best.goodput_ratio:.3f}."
            )
        myopic = next((s for s in summaries if s.planner == MYOPIC), None)
        others = [s for s in summaries if s.planner != MYOPIC]
        if myopic is not None and others:
            top = max(others, key=lambda s: s.goodput_ratio)
            if myopic.accuracy < top.accuracy - 0.01:
                lines.append(
                    f"- The myopic ILP ({MYOPIC}) serves with lower accuracy ({myopic.accuracy:.3f}) "
                    f"than the planner of highest goodput, {top.planner} ({top.accuracy:.3f}), at SLO "
                    f"attainment {myopic.slo_attainment:.3f} against {top.slo_attainment:.3f}: its "
                    "objective is the goodput of the next interval only, so a retraining job is worth "
                    "something to it only if it completes within that interval (it has no value for "
                    "progress carried past its horizon)."
                )
        fastest = sorted(summaries, key=lambda s: s.decision_ms_p99)
        lines.append(
            "- Decision latency p99 in the dynamic scenarios: "
            + ", ".join(f"{s.planner} {s.decision_ms_p99:,.1f} ms" for s in fastest)
            + "."
        )
    serve = [s for s in evaluation.scenarios if any(r.mode == "serve" for r in evaluation.select(s))]
    if serve:
        totals = []
        for planner in evaluation.planners:
            runs = [evaluation.select(s, planner, 0) for s in serve]
            if all(runs):
                short = any(r[0].slo_attainment < 1 - 1e-9 for r in runs)
                deferred = sum(1 for r in runs if r[0].fallback_decisions)
                totals.append(
                    f"{planner} {sum(r[0].gpus for r in runs):.0f}"
                    + ("*" if short else "")
                    + (f" (its fallback planned {deferred} of them)" if deferred else "")
                )
        bound = sum(lower_bounds(load_scenario_of(evaluation, s))["lp"] for s in serve)
        published = [PARVAGPU_GPUS.get(s) for s in serve]
        paper = f", ParvaGPU's paper {sum(published)}" if all(p is not None for p in published) else ""
        lines.append(
            f"- Serve mode, GPUs over the {len(serve)} scenarios (LP bound {bound}{paper}): "
            + ", ".join(totals)
            + " (*: leaves some load unserved)."
        )
    largest = max((p.gpus for p in sweep), default=0)
    at_largest = [p for p in sweep if p.skipped is None and p.gpus == largest]
    if at_largest:
        lines.append(
            f"- At {largest} GPUs, decision latency p50: "
            + ", ".join(
                f"{p.planner} {p.decision_ms_p50:,.1f} ms"
                + (" (by its fallback)" if p.fallback_decisions else "")
                for p in at_largest
            )
            + "."
        )
    return lines


def _serve(evaluation: Evaluation) -> list[str]:
    return [s for s in evaluation.scenarios if any(r.mode == "serve" for r in evaluation.select(s))]


def load_scenario_of(evaluation: Evaluation, scenario: str) -> Workload:
    """The workload (seed 0) a scenario of `evaluation` ran on."""
    workload = next(r.workload for r in evaluation.select(scenario, seed=0) if r.workload is not None)
    return workload


def render(
    config: ReportConfig,
    evaluation: Evaluation,
    sweep: Sequence[SweepPoint],
    figures: dict[str, list[Path]],
    command: str,
    elapsed_s: float,
) -> str:
    """The report's Markdown."""
    base = config.out.parent
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpus = os.cpu_count() or 1
    parts = [
        "# rlmig evaluation report",
        "",
        f"Generated by `{command}` on {now} at commit {provenance()}, in {elapsed_s / 60:.1f} minutes on "
        f"{cpus} CPU core{'s' if cpus > 1 else ''} ({platform.python_implementation()} "
        f"{platform.python_version()}). Do not edit by hand: rerun the command to refresh every table and "
        "figure.",
        "",
        "Every planner runs on every scenario with the same simulator (`rlmig.simulator`), the same "
        f"forecaster (`{config.forecaster}`) and the same seeds; {REFERENCE} is the ILP oracle "
        "(window-aware: the next interval per GPU, the rest of each retraining window in aggregated "
        "steps, forecast rates with error and burst cases, 2 s per decision), the yardstick of the `vs ilp` "
        f"column; {MYOPIC} plans the next interval only. " + LEGEND,
        "",
        "## At a glance",
        "",
        *_glance(evaluation, sweep),
        "",
    ]
    overall = evaluation.overall_tables()
    for table in overall:
        parts.append(table.to_markdown("###"))
    dynamic = [s for s in evaluation.scenarios if any(r.mode == "dynamic" for r in evaluation.select(s))]
    if dynamic:
        parts += ["## Dynamic scenarios", ""]
        for scenario in dynamic:
            parts.append(evaluation.scenario_table(scenario).to_markdown("###"))
            for path in figures.get(scenario, []):
                kind = "goodput over time" if path.name.endswith("-goodput.png") else "layouts and owners"
                parts += [f"![{scenario}: {kind}]({_rel(path, base)})", ""]
    serve = [s for s in evaluation.scenarios if any(r.mode == "serve" for r in evaluation.select(s))]
    if serve:
        parts += ["## Serve mode", ""]
        parts.append(serve_table(evaluation).to_markdown("###"))
        parts += [
            "<details><summary>Per-scenario figures and layouts (serve mode)</summary>",
            "",
        ]
        for scenario in serve:
            parts.append(evaluation.scenario_table(scenario).to_markdown("####"))
            for path in figures.get(scenario, []):
                parts += [f"![{scenario}: layouts and owners]({_rel(path, base)})", ""]
        parts += ["</details>", ""]
    parts += _profiles(evaluation)
    if sweep:
        parts += ["## Decision latency against cluster size", ""]
        parts.append(sweep_table(sweep).to_markdown(None))
        if "sweep" in figures:
            parts += [f"![decision latency against GPUs]({_rel(figures['sweep'][0], base)})", ""]
    parts += _settings(config, evaluation)
    return "\n".join(parts).rstrip() + "\n"


def _profiles(evaluation: Evaluation) -> list[str]:
    """The models of the evaluated scenarios: measured rows, flagged rows, and the fitted model's error
    over all rows and where an optimiser trusting it would go (`ModelProfile.error_at_chosen`)."""
    seen: dict[tuple[str, str], ModelProfile] = {}
    for scenario in evaluation.scenarios:
        workload = load_scenario_of(evaluation, scenario)
        for profile in workload.profiles():
            seen.setdefault((profile.name, profile.gpu), profile)
    lines = [
        "## Model profiles behind these results",
        "",
        "Planners and the simulator use every measured row exactly (a row measured as 0 is never "
        "planned); the fitted model fills only what was not measured. *At chosen*: the model's "
        "throughput error at the segments an optimiser trusting it would choose (median of model / "
        "measured - 1, + = optimistic; 90th percentile of its size), the error planners no longer make.",
        "",
        "| model | GPU | measured rows | not run | flagged | fit error (median / p90) | at chosen |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for (name, gpu), profile in sorted(seen.items()):
        fit = profile.fit
        n, median, p90 = profile.error_at_chosen()
        measured = profile.measured
        lines.append(
            f"| {name} | {gpu} | {len(measured.rows)} | {len(measured.not_run)} | {len(profile.flags)} | "
            + (f"{fit.throughput_median:.1%} / {fit.throughput_p90:.1%}" if fit else "- (estimate)")
            + " | "
            + (f"{median:+.1%} / {p90:.1%} ({n} segments)" if n else "-")
            + " |"
        )
    return [*lines, ""]


def _settings(config: ReportConfig, evaluation: Evaluation) -> list[str]:
    limits = ", ".join(f"{p}: {s:g} s" for p, s in config.time_limits.items()) or "planner defaults"
    only = "; ".join(f"{p} only on {', '.join(s)}" for p, s in config.only.items()) or "none"
    if config.only:
        only += " (each of its decisions may take its whole time limit; see `rlmig.eval.report`)"
    skipped = ", ".join(f"{p} on {s}" for s, p in evaluation.skipped) or "none"
    grouped: dict[tuple[str, str], list[str]] = {}
    for f in evaluation.failures:
        grouped.setdefault((f.planner, f.error), []).append(
            f.scenario + (f" (seed {f.seed})" if f.seed else "")
        )
    failures = "; ".join(f"{p} on {', '.join(s)}: {e}" for (p, e), s in grouped.items())
    other_limited = [p for p in config.planners if takes_time_limit(p) and p not in config.time_limits]
    lines = [
        "## How this report was made",
        "",
        f"- Scenarios: {', '.join(config.scenarios)} (`eval/scenarios/`); seeds: {config.seeds} "
        "(seed 0 is each file as written; seed i offsets the seed of every synthetic load by i, see "
        "`rlmig.eval.harness`).",
        f"- Planners: {', '.join(config.planners)}.",
        f"- Solver time limits per decision: {limits}"
        + (f"; {', '.join(other_limited)}: its default" if other_limited else "")
        + ".",
        f"- Restrictions: {only}. Not run: {skipped}.",
        f"- Failures: {failures or 'none'}.",
        f"- Latency sweep: sizes {', '.join(map(str, config.sizes)) or 'none'}, the first "
        f"{config.sweep_intervals} decisions each, ILP time limit {config.sweep_time_limit:g} s per decision"
        + (
            "; " + ", ".join(f"{p} skipped above {g} GPUs" for p, g in config.sweep_max_gpus.items())
            if config.sweep_max_gpus
            else ""
        )
        + ".",
        "- Serve-mode lower bounds: `rlmig.eval.serve` (LP relaxation of the serve ILP, whole GPUs "
        "included; compute-slice / memory-slot bound).",
        "- Decision latencies are wall-clock times on the machine named above and vary with its load.",
        "",
    ]
    return lines


def run_report(config: ReportConfig, command: str = "rlmig report", quiet: bool = False) -> Path:
    """Run the evaluation and the sweep of `config`, write the figures and the report; its path."""
    started = time.perf_counter()
    for scenario in config.scenarios:
        load_scenario(scenario)  # fail early on a bad scenario
    planner_names(config.planners)
    if config.sizes:
        check_intervals(config.sweep_intervals, cluster_workload(1, 1))  # every size has as many
    figures_dir = config.figures_dir
    progress = RichProgress()
    if quiet:
        progress.bar.disable = True
    with progress:
        evaluation = evaluate(
            config.scenarios,
            config.planners,
            seeds=config.seeds,
            forecaster=config.forecaster,
            time_limit=config.time_limits,
            only=config.only,
            progress=progress,
        )
    sweep: list[SweepPoint] = []
    if config.sizes:
        sweep = latency_sweep(
            config.sizes,
            config.planners,
            intervals=config.sweep_intervals,
            time_limit=config.sweep_time_limit,
            max_gpus=config.sweep_max_gpus,
            on_point=None if quiet else _print_point,
        )
    # Only now, with everything measured, the earlier report's figures go (a failure keeps them).
    figures_dir.mkdir(parents=True, exist_ok=True)
    for pattern in _FIGURE_PATTERNS:  # figures of an earlier report that this one may not redraw
        for stale in figures_dir.glob(pattern):
            stale.unlink()
    figures = write_plots(evaluation, figures_dir)
    if config.sizes:
        figures["sweep"] = [
            sweep_plot(sweep, figures_dir / "decision-latency.png", time_limit=config.sweep_time_limit)
        ]
    elapsed = time.perf_counter() - started
    text = render(config, evaluation, sweep, figures, command, elapsed)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    config.out.write_text(text)
    document = {
        "command": command,
        **evaluation.to_json(),
        "serve_bounds": {s: lower_bounds(load_scenario_of(evaluation, s)) for s in _serve(evaluation)},
        "sweep": [p.to_json() for p in sweep],
    }
    config.out.with_suffix(".json").write_text(json.dumps(document, indent=1) + "\n")
    return config.out


def _print_point(point: SweepPoint) -> None:
    figure = "skipped" if point.skipped else f"p50 {point.decision_ms_p50:,.1f} ms"
    print(f"sweep: {point.planner} on {point.gpus} GPUs: {figure}", file=sys.stderr)


def _list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in _list(text)]
    except ValueError:
        raise RlmigError(f"--sizes must be comma-separated integers, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise RlmigError(f"--sizes must be positive, got {text!r}")
    return sizes


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


def report_config(
    scenarios: str | None = None,
    planners: str | None = None,
    seeds: int = 1,
    forecaster: str = "auto",
    foresight_time_limit: float | None = None,
    foresight_scenarios: str | None = None,
    sizes: str | None = None,
    sweep_intervals: int | None = None,
    sweep_time_limit: float | None = None,
    sweep_foresight_max_gpus: int | None = None,
    out: Path | None = None,
    figures: Path | None = None,
) -> ReportConfig:
    """The report's configuration from `rlmig report`'s options (None: the default)."""
    defaults = ReportConfig()
    foresight_scenarios = _given(foresight_scenarios, ",".join(FORESIGHT_SCENARIOS))
    config = ReportConfig(
        scenarios=_list(scenarios) if scenarios is not None else defaults.scenarios,
        planners=planner_names(planners) if planners is not None else defaults.planners,
        seeds=seeds,
        forecaster=forecaster,
        time_limits={FORESIGHT: _given(foresight_time_limit, FORESIGHT_TIME_LIMIT)},
        only={} if foresight_scenarios == "all" else {FORESIGHT: _list(foresight_scenarios)},
        sizes=_sizes(sizes) if sizes is not None else list(DEFAULT_SIZES),
        sweep_intervals=_given(sweep_intervals, SWEEP_INTERVALS),
        sweep_time_limit=_given(sweep_time_limit, SWEEP_TIME_LIMIT),
        sweep_max_gpus={FORESIGHT: _given(sweep_foresight_max_gpus, SWEEP_MAX_GPUS[FORESIGHT])},
        out=out or defaults.out,
        figures=figures,
    )
    if FORESIGHT not in config.planners:
        config.time_limits, config.only, config.sweep_max_gpus = {}, {}, {}
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """``rlmig report [options]``: the same as ``rlmig report [options]``."""
    from rlmig.cli import main as rlmig_main

    return rlmig_main(["report", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
