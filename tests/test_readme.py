"""The README's blocks, run as written: every `$ rlmig ...` line of its console blocks (and the output
lines it shows), its Python blocks, its workload YAML and its profile CSV. The few commands that cannot
run here are listed in `SKIPPED` with the reason; the test fails on any other command it cannot run."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from rlmig.cli import main
from rlmig.workload import parse_workload

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)

SKIPPED = {
    "pip install": "installs packages (CI's own install runs the README's pip command)",
    "tensorboard": "a long-running viewer",
    "rlmig train agents/configs/a100-80gb.yaml": "trains the shipped policy for minutes (tiny runs here)",
    "rlmig report": "about ten minutes; `rlmig report` is run for every committed report",
    "rlmig simulate eval/scenarios/azure-retrain.yaml --planner ilp ": "two minutes of ILP decisions",
    "--backend nvml": "needs a GPU node and root",
    "rlmig bound eval/scenarios/azure-retrain.yaml": "every planner's run for its best plan: 80 s",
    "rlmig eval eval/scenarios/azure-retrain.yaml eval/scenarios/spike-shift.yaml": "minutes of ILP",
    "my-model.csv": "a placeholder file name (the CSV block below is imported instead)",
    "[": "shows optional flags in brackets, not a command",
}


def commands() -> list[tuple[str, list[str]]]:
    """Each `$ ...` line of the console blocks (continuation lines joined), with the lines it shows."""
    found: list[tuple[str, list[str]]] = []
    for lang, body in BLOCKS:
        if lang != "console":
            continue
        lines = body.splitlines()
        n = 0
        while n < len(lines):
            line = lines[n]
            n += 1
            if not line.startswith("$ "):
                continue
            command = line[2:]
            while command.rstrip().endswith("\\") and n < len(lines):
                command = command.rstrip()[:-1] + " " + lines[n].strip()
                n += 1
            shown = []
            while n < len(lines) and lines[n] and not lines[n].startswith("$ "):
                shown.append(lines[n])
                n += 1
            found.append((command, shown))
    return found


def _skip_reason(command: str) -> str | None:
    return next((why for key, why in SKIPPED.items() if key in command), None)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory where the README's relative paths (eval/, agents/) resolve."""
    for name in ("eval", "agents", "checkpoints"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLMIG_HOME", str(tmp_path / "home"))
    return tmp_path


def test_every_console_command_runs_as_written(workdir: Path) -> None:
    ran = 0
    for command, shown in commands():
        if _skip_reason(command) is not None:
            continue
        text = command.split("  #")[0].strip()  # the comment after two spaces is prose
        out_file = None
        if " > " in text:
            text, out_file = (part.strip() for part in text.split(" > ", 1))
        argv = shlex.split(text)
        assert argv[0] == "rlmig", command
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = main(argv[1:])
        # `rlmig validate` exits 1 for an invalid layout, as the README shows it
        expected = 1 if shown and shown[0].startswith("invalid:") else 0
        assert code == expected, (command, buffer.getvalue()[-500:])
        if out_file:
            Path(out_file).write_text(buffer.getvalue())
        for line in shown:  # the output the README shows is what the command prints
            assert line.strip() in buffer.getvalue(), (command, line)
        ran += 1
    assert ran >= 10  # most of the README's commands run here


def test_every_skipped_command_is_named_and_exists() -> None:
    skipped = [command for command, _ in commands() if _skip_reason(command) is not None]
    assert skipped and all(command.split()[0] in ("rlmig", "pip", "tensorboard") for command in skipped)


def test_the_python_blocks_run(workdir: Path) -> None:
    for lang, body in BLOCKS:
        if lang == "python":
            if 'make_planner("ilp")' in body:  # the ILP over a whole run: the same with a short budget
                body = body.replace('make_planner("ilp")', 'make_planner("ilp", time_limit=0.05)')
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(body, "README.md", "exec"), {})


def test_the_workload_block_is_a_valid_workload() -> None:
    import yaml

    (body,) = [body for lang, body in BLOCKS if lang == "yaml"]
    workload = parse_workload(yaml.safe_load(body), source="README.md")
    assert workload.gpu_count == 2 and workload.tenants[0].name == "chat"


def test_the_profile_csv_block_imports(workdir: Path) -> None:
    (body,) = [body for lang, body in BLOCKS if body.startswith("Mig instance,")]
    path = workdir / "my-model.csv"
    path.write_text(body)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["profiles", "import", str(path), "--gpu", "A100-80GB", "--name", "my-model"]) == 0
    assert any((workdir / "home" / "profiles").glob("my-model@A100-80GB.json"))


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "benchmarks").glob("[!_]*.py")))
def test_every_benchmark_runs_as_a_script(script: str) -> None:
    """`python benchmarks/NAME.py` works as the README says, not only `python -m benchmarks.NAME`."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--help"], capture_output=True, text=True, cwd="/"
    )
    assert done.returncode == 0 and "usage" in done.stdout, done.stderr[-500:]
