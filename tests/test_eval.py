"""The evaluation harness, its plots, the serve table, the report and the demo, on tiny scenarios."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from rlmig.cli import cli, main
from rlmig.cli.eval import eval_command
from rlmig.errors import RlmigError
from rlmig.eval.demo import NEXT_STEPS, run_demo
from rlmig.eval.harness import (
    build_planner,
    default_planners,
    evaluate,
    load_scenario,
    planner_names,
    reseed,
    resolve_scenario,
    takes_time_limit,
)
from rlmig.eval.plots import write_plots
from rlmig.eval.report import main as report_main
from rlmig.eval.serve import lower_bounds, serve_table
from rlmig.eval.sweep import latency_sweep, sweep_plot, sweep_table
from rlmig.planners import PLANNERS, ClusterState, Decision, Planner, make_planner

PNG = b"\x89PNG\r\n\x1a\n"

TINY = """\
name: tiny
gpu: A100-80GB
gpus: 1
interval_s: 60
duration_s: 180
downtime_s: 5
tenants:
  - name: photos
    model: resnet50
    slo_ms: 100
    load: {synthetic: diurnal, mean: 500, amplitude: 0.5, period_s: 180, noise: 0.2, seed: 3}
    retraining: {window_s: 120, samples: 5000, drift: 0.1, accuracy: 0.9}
  - name: edge
    model: mobilenetv2
    slo_ms: 50
    load: 400
"""

TINY_SERVE = """\
name: tiny-serve
gpu: A100-80GB
gpus: 6
mode: serve
interval_s: 60
duration_s: 60
downtime_s: 0
slo_fraction: 0.45
tenants:
  - {name: vision, model: resnet50, slo_ms: 138, load: 1500}
  - {name: text, model: bert, slo_ms: 4294, load: 60}
  - {name: mobile, model: mobilenetv2, slo_ms: 113, load: 1600}
"""

KEYS = {
    "scenario": str,
    "planner": str,
    "seed": int,
    "goodput_ratio": float,
    "slo_attainment": float,
    "accuracy": float,
    "gpu_seconds": float,
    "reconfigs": int,
    "decision_ms_p50": float,
    "decision_ms_p99": float,
}


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    dynamic, serve = tmp_path / "tiny.yaml", tmp_path / "tiny-serve.yaml"
    dynamic.write_text(TINY)
    serve.write_text(TINY_SERVE)
    return dynamic, serve


@pytest.fixture
def rlmig_eval(monkeypatch: pytest.MonkeyPatch):
    """`rlmig ...` through the real entry point, with `eval` registered if rlmig.cli does not yet."""
    if "eval" not in cli.commands:
        monkeypatch.setitem(cli.commands, "eval", eval_command)
    return main


def usable_planners() -> list[str]:
    """Every registered planner that builds here (the learned one needs its checkpoint)."""
    names = []
    for name in PLANNERS:
        try:
            build_planner(name)
        except RlmigError:
            continue
        names.append(name)
    return names


def test_every_planner_runs_on_tiny_scenarios(tiny: tuple[Path, Path]) -> None:
    planners = usable_planners()
    assert {"ilp", "ilp-foresight", "parva", "greedy", "static-best", "as-is", "ekya"} <= set(planners)
    evaluation = evaluate(list(tiny), planners, time_limit=10)
    assert evaluation.failures == []
    assert len(evaluation.results) == 2 * len(planners)
    for result in evaluation.results:
        assert 0.0 <= result.goodput_ratio <= result.slo_attainment + 1e-9 <= 1.0 + 1e-9
        assert result.decisions == (1 if result.mode == "serve" else 3)
    ilp = evaluation.select("tiny", "ilp")[0]
    assert ilp.ratio_to_ilp == pytest.approx(1.0)
    assert [t.title for t in evaluation.tables()] == ["tiny (dynamic)", "tiny-serve (serve)"]


def test_default_planners_are_registered_and_buildable() -> None:
    names = default_planners()
    assert names[:7] == ["ilp", "ilp-foresight", "parva", "greedy", "static-best", "as-is", "ekya"]
    assert "static" not in names
    assert planner_names(names) == names
    assert {"rl", "rl-unguarded"} <= set(names)  # the shipped policy, guarded and alone
    assert build_planner("rl").guard and not build_planner("rl-unguarded").guard  # type: ignore[attr-defined]


def test_time_limit_reaches_only_the_planners_that_take_one() -> None:
    assert build_planner("ilp", 7.5).time_limit == 7.5  # type: ignore[attr-defined]
    assert build_planner("ilp-foresight", {"ilp-foresight": 2.0}).time_limit == 2.0  # type: ignore[attr-defined]
    build_planner("parva", 7.5)  # no time_limit option: not passed


def test_time_limit_probe_of_a_factory_taking_options(monkeypatch: pytest.MonkeyPatch) -> None:
    def strict(**options: object) -> Planner:  # like the learned planner: **options, but no time_limit
        if options:
            raise TypeError(f"unexpected options {sorted(options)}")
        return PLANNERS["parva"]()

    monkeypatch.setitem(PLANNERS, "strict", strict)
    assert not takes_time_limit("strict")
    assert build_planner("strict", 3.0).name == "parva"


def test_seed_variants_reseed_only_synthetic_loads(tiny: tuple[Path, Path]) -> None:
    dynamic, _ = tiny
    base, again, other = load_scenario(dynamic), load_scenario(dynamic, 0), load_scenario(dynamic, 1)
    np.testing.assert_array_equal(base.rates, again.rates)
    assert not np.array_equal(base.rates[:, 0], other.rates[:, 0])  # noisy diurnal: reseeded
    np.testing.assert_array_equal(base.rates[:, 1], other.rates[:, 1])  # constant: unchanged
    data = {"tenants": [{"load": {"synthetic": "bursty"}}, {"load": 3}]}
    assert reseed(data, 2)["tenants"][0]["load"]["seed"] == 2
    assert "seed" not in data["tenants"][0]["load"]  # the input is not modified
    assert resolve_scenario("azure-retrain").name == "azure-retrain.yaml"


def test_seeds_that_change_nothing_are_run_once_and_said_so(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    dynamic, _ = tiny
    fixed = tmp_path / "fixed.yaml"  # constant loads only: no seed changes anything
    fixed.write_text(
        dynamic.read_text()
        .replace("name: tiny", "name: fixed")
        .replace("{synthetic: diurnal, mean: 500, amplitude: 0.5, period_s: 180, noise: 0.2, seed: 3}", "500")
    )
    evaluation = evaluate([dynamic, fixed], ["parva"], seeds=2)
    assert sorted(r.seed for r in evaluation.select("tiny")) == [0, 1] and evaluation.unseeded == [
        load_scenario(fixed).name
    ]
    assert [r.seed for r in evaluation.select(load_scenario(fixed).name)] == [0]
    table = evaluation.scenario_table(load_scenario(fixed).name)
    assert "seeds" not in table.title and any("no random load" in note for note in table.notes)
    assert evaluation.scenario_table("tiny").title == "tiny (dynamic, 2 seeds)"


def test_eval_cli_json(tiny: tuple[Path, Path], tmp_path: Path, rlmig_eval, capsys) -> None:
    out = tmp_path / "results.json"
    plots = tmp_path / "plots"
    args = ["eval", *map(str, tiny), "--planners", "ilp,parva,as-is", "--seeds", "2"]
    code = rlmig_eval([*args, "--json", str(out), "--plots", str(plots), "--time-limit", "10"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "tiny (dynamic, 2 seeds)" in printed and "GPUs used" in printed
    document = json.loads(out.read_text())
    # tiny: 2 seeds x 3 planners; tiny-serve's load has nothing random: one run each stands for both
    assert len(document["results"]) == 2 * 3 + 3 and document["unseeded"] == ["tiny-serve"]
    for row in document["results"]:
        for key, kind in KEYS.items():
            assert isinstance(row[key], kind), (key, row[key])
        assert isinstance(row["ratio_to_ilp"], float)
    assert {row["seed"] for row in document["results"]} == {0, 1}
    for png in plots.glob("*.png"):
        assert png.read_bytes()[:8] == PNG
    assert {p.name for p in plots.glob("*.png")} == {
        "tiny-goodput.png",
        "tiny-layouts.png",
        "tiny-serve-layouts.png",
    }


def test_eval_cli_json_on_stdout(tiny: tuple[Path, Path], rlmig_eval, capsys) -> None:
    assert rlmig_eval(["eval", str(tiny[0]), "--planners", "greedy", "--json", "-"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["results"][0]["planner"] == "greedy"
    assert document["results"][0]["ratio_to_ilp"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--planners", "ilp,nosuch"], "unknown planner 'nosuch'"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--time-limit", "-1"], "--time-limit': must be at least 0, got -1"),
        (["--json", "/no/such/folder/out.json"], "--json: no folder"),
    ],
)
def test_eval_cli_errors_are_one_line(tiny, rlmig_eval, capsys, args: list[str], message: str) -> None:
    assert rlmig_eval(["eval", str(tiny[0]), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rlmig: error: ") and message in err and "\n" not in err
    assert rlmig_eval(["eval", "no/such/scenario.yaml"]) == 2
    assert "no such workload file or shipped scenario" in capsys.readouterr().err


def test_serve_lower_bound_is_below_every_plan(tiny: tuple[Path, Path]) -> None:
    planners = [p for p in usable_planners() if p != "static"]
    evaluation = evaluate([tiny[1], "parvagpu-slo1"], planners)
    table = serve_table(evaluation)
    assert table.columns[:4] == ["scenario", "LP bound", "slice bound", "ParvaGPU (paper)"]
    assert [row[0] for row in table.rows] == ["tiny-serve", "parvagpu-slo1"]
    assert table.rows[1][3] == "2"
    for scenario in ("tiny-serve", "parvagpu-slo1"):
        workload = load_scenario(tiny[1] if scenario == "tiny-serve" else scenario)
        bounds = lower_bounds(workload)
        assert bounds["slices"] <= bounds["lp"]
        for result in evaluation.select(scenario):
            if result.slo_attainment >= 1 - 1e-9:  # a plan that carries the whole load
                assert bounds["lp"] <= result.gpus, (scenario, result.planner)
        assert evaluation.select(scenario, "ilp")[0].gpus >= bounds["lp"]


class SmallOnly(Planner):
    """A planner that refuses clusters of more than one GPU, as a learned policy of fixed size does."""

    name = "small-only"

    def plan(self, state: ClusterState) -> Decision:
        if state.workload.gpu_count > 1:
            raise RlmigError("handles one GPU at most")
        return make_planner("parva").plan(state)


def test_sweep_and_its_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PLANNERS, "small-only", SmallOnly)
    points = latency_sweep([1, 2], ["small-only", "ilp"], intervals=1, time_limit=10, max_gpus={"ilp": 1})
    assert [(p.planner, p.gpus, p.skipped) for p in points] == [
        ("small-only", 1, None),
        ("ilp", 1, None),
        ("small-only", 2, "failed: handles one GPU at most"),
        ("ilp", 2, "skipped above 1 GPUs"),
    ]
    assert all(p.decision_ms_p50 is not None and p.decisions == 1 for p in points[:2])
    table = sweep_table(points)
    assert [row[2] for row in table.rows] == ["cannot run", "skipped"]
    path = sweep_plot(points, tmp_path / "latency.png", time_limit=10)
    assert path.read_bytes()[:8] == PNG
    for bad in (0, 61):  # a count of intervals the sweep's workload lacks is an error, not failed rows
        with pytest.raises(RlmigError, match=rf"intervals: {bad} is not between 1 and the workload's 60"):
            latency_sweep([1], ["parva"], intervals=bad)


def test_plots_of_an_evaluation(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    evaluation = evaluate(list(tiny), ["greedy", "as-is", "static-best"])
    written = write_plots(evaluation, tmp_path)
    assert {s: [p.name for p in paths] for s, paths in written.items()} == {
        "tiny": ["tiny-goodput.png", "tiny-layouts.png"],
        "tiny-serve": ["tiny-serve-layouts.png"],
    }
    for path in written["tiny"] + written["tiny-serve"]:
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 5000


def test_report_on_a_tiny_configuration(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "report" / "REPORT.md"
    args = ["--scenarios", ",".join(map(str, tiny)), "--planners", "ilp,ilp-foresight,parva"]
    args += ["--foresight-scenarios", "tiny-serve", "--foresight-time-limit", "5"]
    args += ["--sizes", "1,2", "--sweep-intervals", "1", "--sweep-foresight-max-gpus", "1"]
    assert report_main([*args, "--out", str(out), "--quiet"]) == 0
    text = out.read_text()
    assert text.startswith("# rlmig evaluation report")
    assert "rlmig report --scenarios" in text and "commit" in text
    assert "## Model profiles behind these results" in text and "| resnet50 | A100-80GB | 161 | 64 |" in text
    assert "### tiny (dynamic)" in text and "serve mode: GPUs used" in text
    assert "not run on this scenario: ilp-foresight" in text
    assert "## Decision latency against cluster size" in text
    images = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(images) == 4  # tiny: goodput + layouts, tiny-serve: layouts, the sweep
    for image in images:
        assert (out.parent / image).read_bytes()[:8] == PNG
    assert report_main(["--planners", "nosuch", "--out", str(out)]) == 2
    before = {image: (out.parent / image).read_bytes() for image in images}
    bad = [*args[:4], "--sizes", "1", "--sweep-intervals", "0", "--out", str(out), "--quiet"]
    assert report_main(bad) == 2  # refused before any work: the report and its figures stay as they were
    assert out.read_text() == text
    assert {image: (out.parent / image).read_bytes() for image in images} == before


def test_run_demo_writes_its_plot(tmp_path: Path) -> None:
    buffer = io.StringIO()
    demo = run_demo(tmp_path, Console(file=buffer, width=140))
    assert demo.plot == tmp_path / "rlmig-demo.png"
    assert demo.plot.read_bytes()[:8] == PNG
    text = buffer.getvalue()
    assert "azure-retrain" in text and "ilp" in text and "ekya" in text
    assert text.rstrip().endswith("on GPU nodes, beside the GPU Operator")  # it ends with what to do next
    for line in NEXT_STEPS.splitlines()[1:]:
        command = line.split("  ")[1].strip() if line.startswith("  rlmig") else ""
        if command:  # every suggested command names a real subcommand
            assert main([command.split()[1], "--help"]) == 0
    assert {r.planner for r in demo.evaluation.results} >= {
        "ilp-myopic",
        "parva",
        "greedy",
        "static-best",
        "as-is",
    }
    assert demo.evaluation.failures == []


def test_a_failing_planner_is_reported_and_the_rest_goes_on(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PLANNERS, "small-only", SmallOnly)
    evaluation = evaluate([tiny[1]], ["parva", "small-only"])  # tiny-serve has 6 GPUs
    assert [r.planner for r in evaluation.results] == ["parva"]
    assert [(f.planner, f.error) for f in evaluation.failures] == [("small-only", "handles one GPU at most")]
    assert serve_table(evaluation).rows[0][-1] == "failed"
    assert (
        "failed: small-only (seed 0): handles one GPU at most"
        in evaluation.scenario_table("tiny-serve").notes
    )


def test_every_registered_planner_says_what_it_optimises() -> None:
    for name in usable_planners():
        assert build_planner(name).objective, name


def test_the_rl_rows_count_overrules_and_name_the_fallback(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    dynamic, _ = tiny
    big = resolve_scenario("parvagpu-slo6")  # 24 GPUs, 11 tenants: the policy decides any size
    other = tmp_path / "h200.yaml"  # a GPU model no shipped policy is for: parva decides
    other.write_text(
        big.read_text()
        .replace("gpu: A100-80GB", "gpu: H200-141GB")
        .replace("name: parvagpu-slo6", "name: h200")
    )
    evaluation = evaluate([dynamic, big, other], ["rl", "parva"])
    rl_dynamic, rl_big, rl_other = evaluation.select(planner="rl")
    assert rl_dynamic.fallback_decisions == 0 and rl_dynamic.guard_overrules is not None
    assert rl_big.fallback_decisions == 0 and rl_other.fallback_decisions == 1
    assert evaluation.select(planner="parva")[0].guard_overrules is None  # no guard to count
    table = evaluation.scenario_table("h200")
    assert {"overrules", "fallbacks"} <= set(table.columns)
    row = table.rows[0]
    assert row[0] == "rl (fallback parva: another GPU model than the policy's)"
    assert row[table.columns.index("fallbacks")] == "1"
    assert table.rows[1][table.columns.index("fallbacks")] == "-"
    document = json.loads(json.dumps(evaluation.to_json()))
    assert [r["fallback_decisions"] for r in document["results"] if r["planner"] == "rl"] == [0, 0, 1]
