"""A newcomer's bad inputs (issue 18's list), each through the command line as typed: one line naming
what is wrong, exit code 2, nothing applied or created; or, where the input is fine, the documented
behaviour. The README's own commands run in tests/test_readme.py, the demo in tests/test_cli.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlmig.cli import main
from rlmig.errors import RlmigError
from rlmig.executor.planfile import configuration_json
from rlmig.inputs import load_yaml
from rlmig.planners import make_planner, run_planner
from rlmig.workload import load_workload, parse_workload

ROOT = Path(__file__).resolve().parents[1]
SPIKE = ROOT / "eval" / "scenarios" / "spike-shift.yaml"
CHECKPOINT = ROOT / "checkpoints" / "a100-80gb"
README_CSV = """Mig instance,Batch size,Workload Number,Throughput,Latency
1,1,1,196.762,0.005
1,8,1,610.2,0.0131
2,1,1,352.1,0.0028
2,8,1,1150.4,0.0070
3,1,1,471.7,0.0021
3,8,1,1655.2,0.0048
4,1,1,561.8,0.0018
4,8,1,2162.2,0.0037
7,1,1,689.7,0.00145
7,8,1,3478.3,0.0023
"""


def workload_with(tmp_path: Path, pattern: str, replacement: str) -> str:
    text, count = re.subn(pattern, replacement, SPIKE.read_text(), count=1, flags=re.M)
    assert count == 1
    path = tmp_path / "w.yaml"
    path.write_text(text)
    return str(path)


def alias_bomb() -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{c}: &{c} [{', '.join(['*' + p] * 9)}]" for p, c in zip("abcdefg", "bcdefgh", strict=True)]
    return "\n".join(lines) + "\n"


def file_of(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def plan_file(folder: Path) -> str:
    """A plan for spike-shift's first interval, as `rlmig plan --json` writes it."""
    path = folder / "plan.json"
    if not path.exists():
        run = run_planner(load_workload(SPIKE), make_planner("parva"), intervals=1)
        path.write_text(json.dumps(configuration_json(run.result.configurations[0])))
    return str(path)


CASES = {
    # the nine tracebacks
    "workload of random bytes": (
        lambda d: ["simulate", file_of(d, "w.yaml", bytes(range(256)) * 3)],
        "workload file is not UTF-8 text",
    ),
    "workload of invalid UTF-8": (
        lambda d: ["simulate", file_of(d, "w.yaml", b"gpu: A100-80GB\nname: \xff\xfe\n")],
        "workload file is not UTF-8 text (byte 21)",
    ),
    "YAML nested 100,000 deep": (
        lambda d: ["simulate", file_of(d, "w.yaml", b"x: " + b"[" * 100_000)],
        "nested deeper than 64 levels",
    ),
    "duration_s: 6e11": (
        lambda d: ["simulate", workload_with(d, r"^duration_s: .*", "duration_s: 6e11")],
        "duration_s: must span at most 100000 intervals",
    ),
    "garbage journal to apply --journal": (
        lambda d: [
            "apply",
            plan_file(d),
            "--backend",
            "fake",
            "--journal",
            file_of(d, "journal.jsonl", b"\x00\xff\xfe{garbage"),
        ],
        "the journal is not UTF-8 text",
    ),
    "truncated policy.npz": (
        lambda d: ["simulate", str(SPIKE), "--planner", "rl", "--checkpoint", truncated_checkpoint(d)],
        "cannot read the weights (BadZipFile",
    ),
    "plan --mig-parted into a missing directory": (
        lambda d: ["plan", str(SPIKE), "--planner", "parva", "--mig-parted", str(d / "no" / "x.yaml")],
        "does not exist",
    ),
    "a 5,000-digit start slot": (
        lambda d: ["validate", "--gpu", "A100-80GB", "1g.10gb@" + "9" * 5000],
        "malformed instance '1g.10gb@999",
    ),
    "agent --interval inf": (
        lambda d: ["agent", "--workload", str(SPIKE), "--backend", "fake", "--interval", "inf"],
        "--interval': must be a finite number, got inf",
    ),
    # the wrong behaviours
    "a 335-byte YAML alias bomb": (
        lambda d: ["simulate", file_of(d, "w.yaml", alias_bomb().encode())],
        "YAML aliases are not accepted",
    ),
    "gpus: 1e9": (
        lambda d: ["simulate", workload_with(d, r"^gpus: .*", "gpus: 1e9")],
        "gpus: must be at most 4096, got 1000000000",
    ),
    "max_processes: 1e6": (
        lambda d: ["simulate", workload_with(d, r"^tenants:", "max_processes: 1e6\ntenants:")],
        "max_processes: must be at most 48, got 1000000",
    ),
    "duplicate YAML keys": (
        lambda d: ["simulate", workload_with(d, r"^gpus: (.*)", r"gpus: \1\ngpus: 3")],
        "duplicate key 'gpus'",
    ),
    "a profile whose fit has 100% error": (
        lambda d: ["profiles", "import", poor_fit_csv(d), "--gpu", "A100-80GB"],
        "fits these measurements poorly",
    ),
    "NaN for --interval": (
        lambda d: ["agent", "--workload", str(SPIKE), "--backend", "fake", "--interval", "nan"],
        "--interval': must be a finite number, got nan",
    ),
    "NaN for --time-limit": (
        lambda d: ["simulate", str(SPIKE), "--planner", "ilp", "--time-limit", "nan"],
        "--time-limit': must be a finite number, got nan",
    ),
    "NaN for --shutdown-grace": (
        lambda d: ["agent", "--workload", str(SPIKE), "--backend", "fake", "--shutdown-grace", "nan"],
        "--shutdown-grace': must be a finite number, got nan",
    ),
    "--start-cmd with an unknown field": (
        lambda d: ["apply", plan_file(d), "--backend", "nvml", "--dry-run", "--start-cmd", "echo {nosuch}"],
        "unknown field {nosuch}",
    ),
    "nvml-only flags with --backend fake": (
        lambda d: ["apply", plan_file(d), "--backend", "fake", "--start-cmd", "echo {gpu}"],
        "--start-cmd is for the nvml backend, not fake",
    ),
    "--mig-parted-file into missing directories": (
        lambda d: [
            "apply",
            plan_file(d),
            "--backend",
            "mig-parted",
            "--mig-parted-file",
            str(d / "x" / "y.yaml"),
        ],
        "does not exist",
    ),
    "simulate --planner greedy --horizon 5": (
        lambda d: ["simulate", str(SPIKE), "--planner", "greedy", "--horizon", "5"],
        "--horizon is for the ILP planners (ilp, ilp-myopic, ilp-foresight), not greedy",
    ),
}


def truncated_checkpoint(folder: Path) -> str:
    target = folder / "checkpoint"
    target.mkdir()
    (target / "card.json").write_bytes((CHECKPOINT / "card.json").read_bytes())
    (target / "policy.npz").write_bytes((CHECKPOINT / "policy.npz").read_bytes()[:500])
    return str(target)


def poor_fit_csv(folder: Path) -> str:
    rows = README_CSV.splitlines()
    rng = np.random.default_rng(0)
    lines = [rows[0]]
    for row in rows[1:]:  # throughput and latency scrambled by up to 30x either way
        size, batch, procs, _, _ = row.split(",")
        throughput, latency = 100 * 30 ** rng.uniform(-1, 1), 0.01 * 30 ** rng.uniform(-1, 1)
        lines.append(f"{size},{batch},{procs},{throughput:.3f},{latency:.5f}")
    path = folder / "scrambled.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("RLMIG_HOME", str(tmp_path / "home"))  # imported profiles go here


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_input_is_one_line_and_exit_2(case, capsys, tmp_path):
    argv, message = CASES[case]
    args = argv(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.count("\n") == 1 and err.startswith("rlmig: error: "), err
    assert message in err and len(err) < 400, err
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, created or stored (no folder, journal line or profile)
    assert not (tmp_path / "x").exists() and not (tmp_path / "no").exists()


def test_a_poor_fit_is_stored_when_asked_for(capsys, tmp_path):
    code = main(["profiles", "import", poor_fit_csv(tmp_path), "--gpu", "A100-80GB", "--allow-poor-fit"])
    out, _ = capsys.readouterr()
    assert code == 0 and "imported scrambled for A100-80GB" in out
    assert list((tmp_path / "home").rglob("scrambled@A100-80GB.json"))


def test_one_configuration_list_for_two_gpus_leaves_the_second_empty_as_documented():
    doc = {
        "gpu": "A100-80GB", "gpus": 2, "interval_s": 60, "duration_s": 60,
        "tenants": [{"name": "a", "model": "resnet50", "slo_ms": 100, "load": 10}],
        "configuration": [["7g.80gb@0=a"]],
    }  # fmt: skip
    config = parse_workload(doc).configuration
    assert config is not None and len(config.gpus) == 2 and not config.gpus[1].used


def test_yaml_numbers_in_exponent_form_are_numbers():
    assert load_yaml("a: 1e3\nb: 6.5E-2\nc: -2e+1\nd: 1e\ne: '1e3'\n", "t") == {
        "a": 1000.0, "b": 0.065, "c": -20.0, "d": "1e", "e": "1e3",
    }  # fmt: skip


FILE_COMMANDS = {
    "simulate": lambda f, d: ["simulate", f],
    "plan": lambda f, d: ["plan", f],
    "bound": lambda f, d: ["bound", f],
    "eval": lambda f, d: ["eval", f, "--planners", "parva"],
    "agent --workload": lambda f, d: ["agent", "--workload", f, "--backend", "fake"],
    "train": lambda f, d: ["train", f, "--out", str(d / "run")],
    "profiles import": lambda f, d: ["profiles", "import", f, "--gpu", "A100-80GB", "--name", "fuzz"],
    "apply": lambda f, d: ["apply", f, "--backend", "fake", "--dry-run"],
    "apply --current": lambda f, d: ["apply", plan_file(d), "--backend", "fake", "--current", f],
    "apply --journal": lambda f, d: ["apply", plan_file(d), "--backend", "fake", "--journal", f],
    "simulate --checkpoint": lambda f, d: [
        "simulate",
        str(SPIKE),
        "--planner",
        "rl",
        "--checkpoint",
        card_of(f, d),
    ],
}
"""Every command that reads a file, with the fuzzed file in its place."""
WORKLOAD_COMMANDS = ("simulate", "plan", "bound", "eval", "agent --workload")


def card_of(path: str, folder: Path) -> str:
    """A checkpoint folder whose card.json is `path`'s bytes (the shipped weights beside it)."""
    target = folder / "fuzzed-checkpoint"
    target.mkdir(exist_ok=True)
    (target / "card.json").write_bytes(Path(path).read_bytes())
    (target / "policy.npz").write_bytes((CHECKPOINT / "policy.npz").read_bytes())
    return str(target)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(min_size=1, max_size=600), text=st.text(min_size=1, max_size=300))
def test_random_and_mutated_bytes_into_every_command_end_in_one_line(data, text, capsys, tmp_path_factory):
    import resource

    folder = tmp_path_factory.mktemp("fuzz")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, this process's high-water mark
    spike = SPIKE.read_bytes()
    cut = len(text) % len(spike)
    mutated = spike[:cut] + text.encode() + spike[cut + len(text) :]  # a real workload, spliced
    for content in (data, mutated):
        path = folder / "input"
        path.write_bytes(content)
        try:  # a splice that leaves a valid workload would run for minutes (the agent for ever)
            load_workload(path)
            valid_workload = True
        except RlmigError:
            valid_workload = False
        for name, argv in FILE_COMMANDS.items():
            if valid_workload and name in WORKLOAD_COMMANDS:
                continue
            if name == "apply --journal":  # a journal line of the fuzzer's is appended to: start afresh
                path.write_bytes(content)
            code = main(argv(str(path), folder))
            _, err = capsys.readouterr()
            if code == 0:  # the bytes happen to be a valid input (a journal of blank lines, say)
                continue
            assert code == 2, (name, content[:80], err)
            assert err.count("\n") == 1 and err.startswith("rlmig: error: "), (name, err)
    # bounded memory: no input made the process grow by 512 MiB (an alias bomb took 1.8 GB)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak < 512 * 1024
