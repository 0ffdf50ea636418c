"""The command line: the exact forms later checks rely on, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlmig.cli import main
from rlmig.geometry import gpu_model
from tests.bruteforce import brute_force_layouts

BASE_A100_40 = "1g.5gb,2g.10gb,3g.20gb,4g.20gb,7g.40gb"


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("maximal", [False, True])
def test_layouts_json_agrees_with_brute_force(capsys, maximal):
    argv = ["layouts", "--gpu", "A100-40GB", "--profiles", BASE_A100_40, "--json"]
    code, out, _ = run(capsys, *([*argv, "--maximal"] if maximal else argv))
    assert code == 0
    layouts = json.loads(out)
    assert len(layouts) == (19 if maximal else 297)
    assert all(
        set(inst) == {"profile", "start"} and isinstance(inst["start"], int)
        for lay in layouts
        for inst in lay
    )
    got = {frozenset((i["profile"], i["start"]) for i in lay) for lay in layouts}
    model = gpu_model("A100-40GB")
    profiles = [model.profile(n) for n in BASE_A100_40.split(",")]
    assert got == brute_force_layouts(model, profiles, maximal=maximal)


def test_layouts_default_profiles_and_table(capsys):
    code, out, _ = run(capsys, "layouts", "--gpu", "A100-40GB", "--maximal", "--json")
    assert code == 0 and len(json.loads(out)) == 78
    code, out, _ = run(capsys, "layouts", "--gpu", "A30-24GB", "--maximal")
    assert code == 0 and "5 maximal layouts of A30-24GB" in out and "4g.24gb" in out


def test_gpus_lists_every_model(capsys):
    code, out, _ = run(capsys, "gpus")
    assert code == 0
    for name in ("A100-40GB", "A100-80GB", "H100-80GB", "H100-94GB", "H200-141GB", "A30-24GB", "B200"):
        assert name in out
    assert "inferred" in out


def test_validate(capsys):
    code, out, _ = run(capsys, "validate", "--gpu", "A100-40GB", "4g.20gb@0", "3g.20gb@4")
    assert code == 0 and out.startswith("valid: 4g.20gb@0 3g.20gb@4")
    code, out, _ = run(capsys, "validate", "--gpu", "A100-40GB", "3g.20gb@0", "4g.20gb@0")
    assert code == 1 and out.strip() == "invalid: 4g.20gb@0 overlaps 3g.20gb@0 on memory slots 0-3"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate", "--gpu", "V100", "1g.5gb@0"], "unknown GPU model 'V100'"),
        (["validate", "--gpu", "A100-40GB", "5g.25gb@0"], "unknown profile '5g.25gb' on A100-40GB"),
        (["validate", "--gpu", "A100-40GB", "3g.20gb"], "malformed instance '3g.20gb'"),
        (["validate", "--gpu", "A100-40GB"], "Missing argument"),
        (["layouts"], "Missing option '--gpu'"),
        (["layouts", "--gpu", "A100-40GB", "--profiles", "1g.5gb,9g.1gb"], "unknown profile '9g.1gb'"),
        (["layouts", "--gpu", "A100-40GB", "--profiles", ","], "--profiles names no profile"),
        (["layouts", "--gpu", "A100-40GB", "--nope"], "No such option"),
        (["frobnicate"], "No such command"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("rlmig: error: ") and message in err


def test_demo_compares_the_planners_and_writes_its_plot(capsys, tmp_path):
    code, out, _ = run(capsys, "demo", "--out", str(tmp_path))
    assert code == 0 and "azure-retrain" in out and "ekya" in out and "ilp" in out
    assert (tmp_path / "rlmig-demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # No "optimal" planner loses silently: each says what it optimises, the ILP that it is myopic.
    assert "What each planner optimises:" in out and "bound: not a planner" in out
    assert "counts only if it completes within them" in " ".join(out.split())


def test_installed_console_script_never_prints_a_traceback():
    exe = shutil.which("rlmig")
    argv = [exe] if exe else [sys.executable, "-m", "rlmig.cli"]
    proc = subprocess.run(
        [*argv, "validate", "--gpu", "A100-40GB", "2g.10gb@1"], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "cannot start at memory slot 1" in proc.stdout
    proc = subprocess.run([*argv, "layouts", "--gpu", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("rlmig: error: unknown GPU model 'nope'")


SCENARIOS = Path(__file__).resolve().parents[1] / "eval" / "scenarios"


def test_simulate_static_json(capsys):
    code, out, _ = run(
        capsys, "simulate", str(SCENARIOS / "spike-shift.yaml"), "--planner", "static", "--json"
    )
    assert code == 0
    result = json.loads(out)
    metrics = result["metrics"]
    assert set(metrics) == {
        "goodput_ratio",
        "slo_attainment",
        "accuracy",
        "gpu_seconds",
        "reconfigs",
        "guard_overrules",
        "fallback_decisions",
    }
    assert metrics["guard_overrules"] == metrics["fallback_decisions"] == 0  # static has neither
    assert all(
        isinstance(metrics[k], float) for k in ("goodput_ratio", "slo_attainment", "accuracy", "gpu_seconds")
    )
    assert isinstance(metrics["reconfigs"], int)
    assert 0 <= metrics["goodput_ratio"] <= metrics["slo_attainment"] <= 1
    assert len(result["intervals"]) == 60
    assert set(result["intervals"][0]["tenants"]) == {"detect", "qa", "vit", "thumbs"}


def test_simulate_labels_what_decided_for_the_rl_planner(capsys, tmp_path):
    spike = str(SCENARIOS / "spike-shift.yaml")
    code, out, _ = run(capsys, "simulate", spike, "--planner", "rl", "--json")
    guarded = json.loads(out)["metrics"]
    code, out, _ = run(capsys, "simulate", spike, "--planner", "rl", "--no-guard", "--json")
    alone = json.loads(out)["metrics"]
    assert code == 0 and alone["guard_overrules"] == 0 and alone["fallback_decisions"] == 0
    assert guarded["guard_overrules"] > 0  # the shipped policy is overruled on this scenario
    big = str(SCENARIOS / "parvagpu-slo6.yaml")  # 24 GPUs, 11 tenants: more than it was trained on
    code, out, _ = run(capsys, "simulate", big, "--planner", "rl", "--json")
    assert code == 0 and json.loads(out)["metrics"]["fallback_decisions"] == 0
    other = tmp_path / "h200.yaml"  # a GPU model no shipped policy is for
    other.write_text(Path(spike).read_text().replace("gpu: A100-80GB", "gpu: H200-141GB"))
    code, _, err = run(capsys, "simulate", str(other), "--planner", "rl")
    assert (
        code == 2 and err.count("\n") == 1 and "no shipped policy for H200-141GB (shipped: A100-80GB" in err
    )
    assert "--fallback parva" in err
    code, out, _ = run(capsys, "simulate", str(other), "--planner", "rl", "--fallback", "parva")
    assert code == 0 and "planner rl (fallback parva: another GPU model than the policy's)" in out
    code, out, _ = run(capsys, "simulate", str(other), "--planner", "rl", "--fallback", "parva", "--json")
    assert json.loads(out)["metrics"]["fallback_decisions"] == 60
    code, _, err = run(capsys, "simulate", spike, "--planner", "ilp", "--no-guard")
    assert code == 2 and "--no-guard is for the rl planner, not ilp" in err


def test_simulate_table_and_errors(capsys, tmp_path):
    code, out, _ = run(capsys, "simulate", str(SCENARIOS / "azure-retrain.yaml"))
    assert code == 0 and "goodput_ratio" in out and "per tenant" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("gpu: A100-80GB\ngpus: 1\ninterval_s: 60\nduration_s: 60\ntenants: []\n")
    code, out, err = run(capsys, "simulate", str(bad))
    assert code == 2 and err.strip() == f"rlmig: error: {bad}: tenants: must list at least one tenant"
    code, _, err = run(capsys, "simulate", str(tmp_path / "none.yaml"))
    assert code == 2 and "cannot read workload file" in err


def test_profiles_list(capsys):
    code, out, _ = run(capsys, "profiles", "list", "--json")
    assert code == 0
    names = {entry["name"] for entry in json.loads(out)}
    assert {"resnet50", "bert", "vgg19"} <= names


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATA = Path(__file__).resolve().parents[1] / "rlmig" / "data"


@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/data")
def test_data_commands_rebuild_the_shipped_files_exactly(capsys, tmp_path):
    code, out, _ = run(capsys, "catalog", "build", "--data", str(SHARED), "--out", str(tmp_path / "catalog"))
    assert code == 0 and "| resnet50 |" in out
    for shipped in (DATA / "catalog").glob("*.json"):
        assert (tmp_path / "catalog" / shipped.name).read_bytes() == shipped.read_bytes()
    code, out, _ = run(capsys, "traces", "build", "--data", str(SHARED), "--out", str(tmp_path / "traces"))
    assert code == 0 and "3424 bins of 1 s" in out
    shipped = DATA / "traces" / "azure-llm-2023.csv"
    assert (tmp_path / "traces" / shipped.name).read_bytes() == shipped.read_bytes()
    code, _, err = run(capsys, "catalog", "build", "--data", str(tmp_path / "nowhere"))
    assert code == 2 and err.startswith("rlmig: error: ") and len(err.strip().splitlines()) == 1


def test_module_entry_points_are_thin_wrappers_over_the_cli(capsys):
    from rlmig.catalog_build import main as catalog_main

    assert catalog_main(["--report"]) == 0
    assert "| resnet50 |" in capsys.readouterr().out


def test_flags_are_checked_before_any_work(capsys, tmp_path):
    spike = str(SCENARIOS / "spike-shift.yaml")
    for argv, message in [
        (["simulate", spike, "--planner", "greedy", "--horizon", "5"], "--horizon is for the ILP planners"),
        (
            ["simulate", spike, "--planner", "parva", "--time-limit", "3"],
            "--time-limit is for the ILP planners",
        ),
        (["simulate", spike, "--planner", "ilp", "--time-limit", "nan"], "must be a finite number, got nan"),
        (["agent", "--workload", spike, "--backend", "fake", "--interval", "inf"], "must be a finite number"),
        (["agent", "--workload", spike, "--backend", "fake", "--shutdown-grace", "-1"], "must be at least 0"),
        (["plan", spike, "--mig-parted", str(tmp_path / "no" / "x.yaml")], "does not exist"),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and err.count("\n") == 1 and err.startswith("rlmig: error: ") and message in err, err
    assert not (tmp_path / "no").exists()


def test_nvml_only_flags_are_refused_with_other_backends(capsys, tmp_path):
    spike = str(SCENARIOS / "spike-shift.yaml")
    argv = ["agent", "--workload", spike, "--backend", "fake", "--drain-cmd", "stop {tenant}"]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "--drain-cmd is for the nvml backend" in err
    plan = tmp_path / "plan.json"
    plan.write_text("{}")  # the flag is refused before the plan is read
    code, _, err = run(capsys, "apply", str(plan), "--backend", "fake", "--start-cmd", "run {tenant}")
    assert code == 2 and "--start-cmd is for the nvml backend, not fake" in err


@pytest.mark.parametrize("planner", ["parva", "greedy", "ekya", "static-best", "as-is", "static", "rl"])
def test_every_planner_reports_its_decision_time(capsys, planner):
    spike = str(Path(__file__).resolve().parents[1] / "eval" / "scenarios" / "spike-shift.yaml")
    code, out, _ = run(capsys, "plan", spike, "--planner", planner, "--json")
    assert code == 0 and json.loads(out)["solve_seconds"] > 0


def test_the_rl_guard_is_chosen_from_the_command_line(capsys):
    from rlmig.planners import run_planner
    from rlmig.planners.rl import RlPlanner
    from rlmig.workload import load_workload

    spike = str(SCENARIOS / "spike-shift.yaml")
    workload = load_workload(spike)
    for flags, kwargs in (
        (
            ["--guard-with", "parva,greedy,ekya", "--guard-horizon", "10"],
            {"guard_with": ["parva", "greedy", "ekya"], "guard_horizon": 10},
        ),
        (["--guard-with", ""], {"guard_with": []}),
    ):
        code, out, _ = run(capsys, "simulate", spike, "--planner", "rl", *flags, "--json")
        metrics = json.loads(out)["metrics"]
        direct = run_planner(workload, RlPlanner(**kwargs))
        assert code == 0 and metrics["goodput_ratio"] == direct.result.metrics.goodput_ratio
        assert metrics["guard_overrules"] == direct.guard_overrules
    default = json.loads(run(capsys, "simulate", spike, "--planner", "rl", "--json")[1])["metrics"]
    assert default["goodput_ratio"] != metrics["goodput_ratio"]  # the flags change the guard
    for args, message in (
        (["--planner", "parva", "--guard-with", "greedy"], "--guard-with is for the rl planner, not parva"),
        (
            ["--planner", "rl", "--no-guard", "--guard-horizon", "4"],
            "--guard-horizon sets the guard, and --no-guard",
        ),
        (
            ["--planner", "rl-unguarded", "--guard-with", "parva"],
            "and rl-unguarded runs the policy without it",
        ),
        (["--planner", "rl", "--guard-with", "parva,nosuch"], "unknown planner 'nosuch'"),
        (["--planner", "rl", "--guard-horizon", "0"], "--guard-horizon"),
    ):
        code, _, err = run(capsys, "simulate", spike, *args)
        assert code == 2 and message in err, err
