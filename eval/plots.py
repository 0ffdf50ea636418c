"""Plots of an evaluation (matplotlib, Agg backend, PNG).

Usage::

    from rlmig.eval.plots import goodput_plot, layout_plot, write_plots

    evaluation = evaluate(["azure-retrain"], ["ilp", "parva"])
    goodput_plot(evaluation.select("azure-retrain", seed=0), "goodput.png")
    layout_plot(evaluation.select("azure-retrain", seed=0), "layouts.png")
    write_plots(evaluation, "figures/")          # both, for every scenario (seed 0): {scenario: [paths]}

- goodput over time: per interval, accurate requests served within the SLO / arrivals, one line per
  planner, under the tenants' arrival rates (dynamic scenarios);
- layouts: per planner, one row per GPU; over time (dynamic) or side by side (serve), each MIG instance
  is a block over its memory slots in its owner's color, hatched when retraining, grey when idle; a GPU
  with MIG disabled shows the tenants that time-share it as stripes;
- decision latency against GPU count: see `rlmig.eval.sweep`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch, Rectangle

from rlmig.configuration import Configuration
from rlmig.planners import LEARNED

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from rlmig.eval.harness import EvalResult, Evaluation
    from rlmig.workload import Workload

_IDLE = "#d9d9d9"
_ROW = 0.86  # height of a GPU row (1 = the pitch between rows)


def tenant_colors(workload: Workload) -> dict[str, tuple[float, float, float, float]]:
    """A fixed color per tenant of the workload."""
    cmap = plt.get_cmap("tab10" if len(workload.tenants) <= 10 else "tab20")
    return {name: cmap(i % cmap.N) for i, name in enumerate(workload.tenant_names)}


def slug(text: str) -> str:
    """A file-name-safe form of a scenario or planner name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def save_figure(fig: plt.Figure, path: str | Path) -> Path:
    """Write `fig` as a PNG (creating its folder) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def goodput_plot(results: Sequence[EvalResult], path: str | Path, title: str | None = None) -> Path:
    """Goodput ratio per interval of each planner's run of one scenario (one seed), over the load."""
    first = results[0]
    workload = first.workload
    assert workload is not None
    dt = workload.interval_s
    minutes = np.arange(workload.intervals) * dt / 60.0
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [1, 2.4]}
    )
    rates = workload.rates
    colors = tenant_colors(workload)
    edges = np.append(minutes, workload.duration_s / 60.0)  # repeat the last step to the run's end
    top.stackplot(
        edges,
        np.vstack([rates, rates[-1:]]).T,
        labels=workload.tenant_names,
        colors=[colors[n] for n in workload.tenant_names],
        alpha=0.7,
        step="post",
    )
    top.set_ylabel("arrivals (req/s)")
    top.set_title(title or f"{workload.name}: goodput over time (seed {first.seed})")
    cmap = plt.get_cmap("tab10")
    for i, result in enumerate(results):
        assert result.run is not None
        goodput = np.array([o.goodput.sum() for o in result.run.result.intervals])
        arrivals = np.array([o.rate.sum() * dt for o in result.run.result.intervals])
        ratio = np.divide(goodput, arrivals, out=np.ones_like(goodput), where=arrivals > 0)
        style = "-" if i < 10 else "--"
        bottom.step(
            edges[: len(ratio) + 1],
            np.append(ratio, ratio[-1]),
            where="post",
            linestyle=style,
            color=cmap(i % 10),
            linewidth=1.4,
            label=f"{result.planner} ({result.goodput_ratio:.3f})",
        )
    bottom.set_ylabel("goodput / arrivals")
    bottom.set_xlabel("time (min)")
    bottom.set_xlim(0, workload.duration_s / 60.0)
    bottom.grid(alpha=0.3)
    bottom.legend(
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=8,
        title="planner (run's goodput ratio)",
        title_fontsize=8,
        frameon=False,
    )
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False, title="tenant")
    fig.tight_layout()
    return save_figure(fig, path)


def ranking_plot(
    results: Sequence[EvalResult], path: str | Path, bound: float | None = None, title: str | None = None
) -> Path:
    """Each planner's goodput ratio on one scenario, best first, as horizontal bars against the
    hindsight bound: the ranking at a glance (`goodput_plot` shows the same runs over time)."""
    ranked = sorted(results, key=lambda r: r.goodput_ratio)  # barh draws bottom-up: the best on top
    values = np.array([r.goodput_ratio for r in ranked])
    names = [r.planner for r in ranked]
    kind = {
        name: ("ILP" if name.startswith("ilp") else "learned" if name in LEARNED else "heuristic")
        for name in names
    }
    palette = {"ILP": "#1f77b4", "learned": "#9467bd", "heuristic": "#8c8c8c"}
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(ranked) + 1.6))
    ax.barh(names, values, color=[palette[kind[n]] for n in names])
    low = max(0.0, float(values.min()) - 0.05)
    for y, value in enumerate(values):
        label = f"{value:.3f}" + (f"  ({value / bound:.1%} of bound)" if bound else "")
        ax.text(value + 0.002, y, label, va="center", fontsize=8)
    if bound:
        ax.axvline(bound, color="black", linestyle="--", linewidth=1)
        ax.text(bound, len(ranked) - 0.4, f" hindsight bound {bound:.3f}", fontsize=8, va="bottom")
    ax.set_xlim(low, 1.0 + 0.12 * (1.0 - low))
    ax.set_xlabel("goodput ratio over the run (accurate requests within SLO / arrivals; higher is better)")
    ax.set_ylim(-0.6, len(ranked) + 0.4)
    ax.legend(
        handles=[Patch(color=c, label=k) for k, c in palette.items() if k in kind.values()],
        loc="lower right",
        fontsize=8,
        frameon=False,
    )
    workload = ranked[0].workload
    ax.set_title(title or f"{workload.name if workload else ranked[0].scenario}: planners ranked by goodput")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path)


def _blocks(configs: Sequence[Configuration]) -> list[tuple[int, int, int, int, int, tuple[str, ...], str]]:
    """Runs of identical instances over consecutive configurations:
    (gpu, first, last + 1, start slot, slots, owners, role) with role inference, retraining, idle or
    shared (MIG disabled: owners are the time-sharing tenants)."""
    open_: dict[tuple[int, int, int, tuple[str, ...], str], int] = {}
    done: list[tuple[int, int, int, int, int, tuple[str, ...], str]] = []
    for k, config in enumerate([*configs, None]):
        now: set[tuple[int, int, int, tuple[str, ...], str]] = set()
        if config is not None:
            for g, gpu in enumerate(config.gpus):
                if not gpu.mig_enabled:
                    if gpu.time_shared:
                        now.add((g, 0, config.gpu.slots, gpu.time_shared, "shared"))
                    continue
                for inst, owner in gpu.items():
                    owners = (owner.tenant,) if owner else ()
                    role = owner.role if owner else "idle"
                    now.add((g, inst.start, inst.profile.slots, owners, role))
        for key in list(open_):
            if key not in now:
                g, start, size, owners, role = key
                done.append((g, open_.pop(key), k, start, size, owners, role))
        for key in now:
            open_.setdefault(key, k)
    return done


def _draw_layouts(
    ax: Axes,
    configs: Sequence[Configuration],
    colors: dict[str, tuple[float, float, float, float]],
    gpus: int,
    slots: int,
    transpose: bool,
) -> None:
    """Draw one run's layouts: a row per GPU with time along x, or (`transpose`, one configuration) a
    column per GPU with its memory slots going up."""

    def rect(g: int, first: int, end: int, lo: float, hi: float, **style: object) -> Rectangle:
        if transpose:
            return Rectangle((g - _ROW / 2, lo), _ROW, hi - lo, **style)
        top = g + (1 - _ROW) / 2
        return Rectangle((first, top + _ROW * lo), end - first, _ROW * (hi - lo), **style)

    for g, first, end, start, size, owners, role in _blocks(configs):
        lo, hi = start / slots, (start + size) / slots
        parts = owners if role == "shared" else (owners or ("",))
        piece = (hi - lo) / len(parts)
        for i, owner in enumerate(parts):
            face = _IDLE if role == "idle" else colors.get(owner, _IDLE)
            hatch = {"retraining": "////", "shared": ".."}.get(role)
            alpha = 0.5 if role == "retraining" else 0.9
            ax.add_patch(
                rect(
                    g,
                    first,
                    end,
                    lo + i * piece,
                    lo + (i + 1) * piece,
                    facecolor=face,
                    alpha=alpha,
                    hatch=hatch,
                    edgecolor="white",
                    linewidth=0.0,
                )
            )
        ax.add_patch(rect(g, first, end, lo, hi, fill=False, edgecolor="black", linewidth=0.5))
    if transpose:
        ax.set_xlim(-0.5, gpus - 0.5)
        ax.set_ylim(0, 1)
        ax.set_xticks(range(gpus))
        ax.set_xticklabels([str(g) for g in range(gpus)], fontsize=7)
        ax.set_yticks([])
    else:
        ax.set_xlim(0, len(configs))
        ax.set_ylim(gpus, 0)
        ax.set_yticks([g + 0.5 for g in range(gpus)])
        ax.set_yticklabels([f"GPU {g}" for g in range(gpus)], fontsize=7)


def _legend(colors: dict[str, tuple[float, float, float, float]]) -> list[Patch]:
    handles = [Patch(facecolor=c, alpha=0.9, label=name) for name, c in colors.items()]
    handles += [
        Patch(facecolor="white", hatch="////", edgecolor="black", label="retraining"),
        Patch(facecolor=_IDLE, edgecolor="black", label="idle instance"),
        Patch(facecolor="white", hatch="..", edgecolor="black", label="MIG off, time-shared"),
    ]
    return handles


def layout_plot(results: Sequence[EvalResult], path: str | Path, title: str | None = None) -> Path:
    """Each planner's GPU layouts and owners on one scenario (one seed): a panel per planner."""
    workload = results[0].workload
    assert workload is not None
    colors = tenant_colors(workload)
    serve = workload.mode == "serve"
    runs = [r for r in results if r.run is not None]
    if serve:  # only the GPUs some planner uses
        used = [
            max((i + 1 for i, g in enumerate(r.run.result.configurations[0].gpus) if g.used), default=1)
            for r in runs
            if r.run is not None
        ]
        gpus = max(used)
        panel_w = 0.38 * gpus + 0.9  # inches per planner panel
        cols = max(1, min(len(runs), int(12 // panel_w)))
        rows = math.ceil(len(runs) / cols)
        width = max(7.0, panel_w * cols + 0.8)
        legend_rows = math.ceil((len(colors) + 3) / max(2, int(width / 1.35)))
        height = 2.0 * rows + 0.25 * legend_rows + 0.8
        fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False, sharey=True)
        panels = list(axes.flat)[: len(runs)]
        for ax in list(axes.flat)[len(runs) :]:
            ax.set_visible(False)
    else:
        gpus = workload.gpu_count
        height = len(runs) * (0.5 * gpus + 0.5) + 1.2
        fig, axes = plt.subplots(len(runs), 1, figsize=(11, height), squeeze=False, sharex=True)
        panels = axes[:, 0]
    for ax, result in zip(panels, runs, strict=True):
        assert result.run is not None
        configs = result.run.result.configurations[:1] if serve else result.run.result.configurations
        _draw_layouts(ax, configs, colors, gpus, workload.gpu.slots, transpose=serve)
        label = (
            f"{result.planner}: {result.gpus:.0f} GPUs"
            if serve
            else (f"{result.planner}: goodput {result.goodput_ratio:.3f}, {result.reconfigs} reconfigured")
        )
        ax.set_title(label, fontsize=8, loc="left")
    if serve:
        for ax in panels:
            ax.set_xlabel("GPU", fontsize=7)
            ax.set_ylabel("memory slots", fontsize=7)
    else:
        panels[-1].set_xlabel(f"interval ({workload.interval_s:g} s each)")
    fig.suptitle(title or f"{workload.name}: MIG layouts and owners (seed {results[0].seed})", fontsize=10)
    entries = len(colors) + 3
    ncol = max(2, min(entries, int(fig.get_figwidth() / 1.35)))
    fig.legend(handles=_legend(colors), loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    legend_h = 0.22 * math.ceil(entries / ncol) + 0.15
    fig.tight_layout(rect=(0, legend_h / height, 1, 1 - 0.3 / height))
    return save_figure(fig, path)


def write_plots(evaluation: Evaluation, out_dir: str | Path, seed: int = 0) -> dict[str, list[Path]]:
    """For every scenario of `evaluation`: its goodput-over-time plot (dynamic scenarios) and its layout
    plot, as ``<scenario>-goodput.png`` and ``<scenario>-layouts.png`` in `out_dir`; the paths by
    scenario."""
    out = Path(out_dir)
    written: dict[str, list[Path]] = {}
    for scenario in evaluation.scenarios:
        results = [r for r in evaluation.select(scenario, seed=seed) if r.run is not None]
        if not results:
            continue
        paths = written.setdefault(scenario, [])
        if results[0].mode == "dynamic":
            paths.append(goodput_plot(results, out / f"{slug(scenario)}-goodput.png"))
        paths.append(layout_plot(results, out / f"{slug(scenario)}-layouts.png"))
    return written
