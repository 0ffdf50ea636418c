"""``rlmig apply``: the dry run's operations and nvidia-smi commands, applying to the fake node, mig-parted
output, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import re

import pynvml
import pytest
import yaml

import rlmig.cli.apply
from rlmig.cli import cli, main
from rlmig.cli.apply import apply_command
from rlmig.executor import FakeNvml

PLAN = {
    "gpu_model": "A100-80GB",
    "gpus_used": 2,
    "gpus": [
        {
            "index": 0,
            "mig_enabled": True,
            "time_shared": [],
            "instances": [
                {"profile": "4g.40gb", "start": 0, "tenant": "gpt", "role": "inference", "throughput": 410.5},
                {
                    "profile": "3g.40gb",
                    "start": 4,
                    "tenant": "bert",
                    "role": "retraining",
                    "throughput": 12.0,
                },
            ],
        },
        {"index": 1, "mig_enabled": False, "time_shared": ["resnet"], "instances": []},
    ],
    "unmet": {},
    "optimal": True,
    "solve_seconds": 0.25,
}
CURRENT = {
    "gpu_model": "A100-80GB",
    "gpus": [
        {
            "index": 0,
            "mig_enabled": True,
            "time_shared": [],
            "instances": [
                {"profile": "4g.40gb", "start": 0, "tenant": "bert", "role": "inference"},
                {"profile": "2g.20gb", "start": 4, "tenant": "gpt", "role": "inference"},
            ],
        },
        {
            "index": 1,
            "mig_enabled": True,
            "instances": [{"profile": "7g.80gb", "start": 0, "tenant": None, "role": "idle"}],
        },
    ],
}


@pytest.fixture(autouse=True)
def registered():
    """The lead registers `apply` in rlmig.cli; until then the tests do."""
    if "apply" not in cli.commands:
        cli.add_command(apply_command)


@pytest.fixture
def files(tmp_path):
    plan, current = tmp_path / "plan.json", tmp_path / "current.json"
    plan.write_text(json.dumps(PLAN))
    current.write_text(json.dumps(CURRENT))
    return str(plan), str(current)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_the_operations_and_nvidia_smi_commands(capsys, files):
    plan, current = files
    code, out, err = run(capsys, "apply", plan, "--backend", "fake", "--current", current, "--dry-run")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"fake node: 2 x A100-80GB; target: 2 GPUs from {plan}"
    assert (
        lines[1] == "plan: 12 operations (0 instances untouched, 1 created, 2 destroyed, 1 MIG mode change)"
    )
    assert lines[2:14] == [
        "   1. GPU 0: drain gpt from 2g.20gb@4",
        "   2. GPU 0: destroy compute instance of 2g.20gb@4",
        "   3. GPU 0: destroy GPU instance 2g.20gb@4",
        "   4. GPU 0: create GPU instance 3g.40gb@4 (profile 9, placement 4:4)",
        "   5. GPU 0: create compute instance of 3g.40gb@4",
        "   6. GPU 0: start bert:retraining on 3g.40gb@4",
        "   7. GPU 1: destroy compute instance of 7g.80gb@0",
        "   8. GPU 1: destroy GPU instance 7g.80gb@0",
        "   9. GPU 1: disable MIG",
        "  10. GPU 1: start resnet on the whole GPU",
        "  11. GPU 0: drain bert from 4g.40gb@0",
        "  12. GPU 0: start gpt on 4g.40gb@0",
    ]
    assert "note: MIG mode changes need --allow-mode-change" in lines
    commands = lines[lines.index("nvidia-smi commands (as root):") + 1 :]
    # GPU instance IDs are the driver's (read back from the node), whatever they are
    ids = [re.search(r"-gi (\d+)", c) for c in commands]
    assert ids[1] and ids[2] and ids[1][1] == ids[2][1] and ids[5] and ids[6] and ids[5][1] == ids[6][1]
    commands = [re.sub(r"-gi \d+", "-gi N", c) for c in commands]
    assert commands == [
        "  # GPU 0: drain gpt from 2g.20gb@4 (tenant hook)",
        "  nvidia-smi mig -i 0 -dci -gi N -ci 0",
        "  nvidia-smi mig -i 0 -dgi -gi N",
        "  nvidia-smi mig -i 0 -cgi 9:4 -C",
        "  # GPU 0: start bert:retraining on 3g.40gb@4 (tenant hook)",
        "  nvidia-smi mig -i 1 -dci -gi N -ci 0",
        "  nvidia-smi mig -i 1 -dgi -gi N",
        "  nvidia-smi -i 1 -mig 0",
        "  # GPU 1: start resnet on the whole GPU (tenant hook)",
        "  # GPU 0: drain bert from 4g.40gb@0 (tenant hook)",
        "  # GPU 0: start gpt on 4g.40gb@0 (tenant hook)",
    ]


def test_dry_run_from_empty_gpus_creates_with_placements(capsys, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({**PLAN, "gpus": PLAN["gpus"][:1]}))
    code, out, _ = run(capsys, "apply", str(plan), "--backend", "fake", "--dry-run")
    assert code == 0
    assert out.splitlines()[-4:] == [
        "  nvidia-smi mig -i 0 -cgi 5:0 -C",
        "  # GPU 0: start gpt on 4g.40gb@0 (tenant hook)",
        "  nvidia-smi mig -i 0 -cgi 9:4 -C",
        "  # GPU 0: start bert:retraining on 3g.40gb@4 (tenant hook)",
    ]


def test_apply_to_the_fake_node_waits_for_a_reset_on_a100(capsys, files):
    plan, current = files
    code, out, _ = run(
        capsys, "apply", plan, "--backend", "fake", "--current", current, "--allow-mode-change"
    )
    assert code == 0
    assert out.splitlines()[-5:] == [
        "applied 11 operations; 1 GPU(s) wait for a reset to change MIG mode",
        "  GPU 1: MIG mode change to off is pending until a GPU reset (NVML_ERROR_RESET_REQUIRED); "
        "reset it (nvidia-smi -i 1 -r) and apply again",
        "node:",
        "  GPU 0: 4g.40gb@0=gpt 3g.40gb@4=bert:retraining",
        "  GPU 1: (empty)",
    ]


def hopper(files):
    for path in files:
        with open(path) as f:
            doc = json.load(f)
        with open(path, "w") as f:
            json.dump({**doc, "gpu_model": "H100-80GB"}, f)
    return files


def test_apply_to_the_fake_node(capsys, files):
    plan, current = hopper(files)
    code, out, _ = run(
        capsys, "apply", plan, "--backend", "fake", "--current", current, "--allow-mode-change"
    )
    assert code == 0
    assert out.splitlines()[-4:] == [
        "applied 12 operations; the node is at the target",
        "node:",
        "  GPU 0: 4g.40gb@0=gpt 3g.40gb@4=bert:retraining",
        "  GPU 1: whole=resnet",
    ]


def test_apply_with_a_journal(capsys, files, tmp_path):
    plan, current = hopper(files)
    journal = tmp_path / "journal.jsonl"
    code, _, _ = run(
        capsys,
        "apply",
        plan,
        "--backend",
        "fake",
        "--current",
        current,
        "--allow-mode-change",
        "--journal",
        str(journal),
    )
    assert code == 0
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [r["type"] for r in records[:3]] == ["begin", "intent", "done"] and records[-1][
        "status"
    ] == "complete"


def test_mig_parted_prints_the_config_and_the_label(capsys, files, tmp_path):
    plan, current = files
    code, out, _ = run(capsys, "apply", plan, "--backend", "mig-parted", "--current", current, "--node", "n1")
    assert code == 0
    assert "plan (nvidia-mig-parted rebuilds every GPU whose profile counts change" in out
    text = out[out.index("version: v1") : out.index("or let the GPU Operator")]
    assert yaml.safe_load(text)["mig-configs"]["rlmig"][1] == {"devices": [1], "mig-enabled": False}
    assert "kubectl label node n1 nvidia.com/mig.config=rlmig --overwrite" in out
    assert (
        "kubectl patch node n1 --type merge -p "
        """'{"metadata":{"labels":{"nvidia.com/mig.config":"rlmig"}}}'""" in out
    )
    target = tmp_path / "out" / "mig.yaml"
    argv = ["apply", plan, "--backend", "mig-parted", "--mig-parted-file", str(target)]
    assert "the folder" in one_line_error(capsys, *argv) and not target.parent.exists()  # not created
    target.parent.mkdir()
    code, out, _ = run(capsys, *argv)
    assert code == 0 and f"wrote {target}" in out and yaml.safe_load(target.read_text())["version"] == "v1"


def one_line_error(capsys, *argv) -> str:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("rlmig: error: ")
    return err.strip()


def test_errors_are_one_line(capsys, files, tmp_path):
    plan, current = files
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "bad.json: not JSON" in one_line_error(capsys, "apply", str(bad), "--backend", "fake")
    bad.write_text(
        json.dumps({**PLAN, "gpus": [{"index": 0, "instances": [{"profile": "3g.40gb", "start": 2}]}]})
    )
    assert (
        "bad.json: gpus[0]: invalid layout on A100-80GB: 3g.40gb cannot start at memory slot 2"
        in one_line_error(capsys, "apply", str(bad), "--backend", "fake")
    )
    assert "needs a MIG mode change: not allowed" in one_line_error(
        capsys, "apply", plan, "--backend", "fake", "--current", current
    )
    assert "none.json: cannot read" in one_line_error(
        capsys, "apply", str(tmp_path / "none.json"), "--backend", "fake"
    )


def failing_fake(monkeypatch, arm):
    def make(target, current):
        fake = FakeNvml.from_configuration(current) if current else FakeNvml(target.gpu, len(target.gpus))
        arm(fake)
        return fake

    monkeypatch.setattr(rlmig.cli.apply, "make_fake", make)


def test_no_permission_surfaces_as_one_line(capsys, monkeypatch, files):
    plan, current = files
    failing_fake(monkeypatch, lambda fake: fake.deny_permission())
    err = one_line_error(
        capsys, "apply", plan, "--backend", "fake", "--current", current, "--allow-mode-change"
    )
    assert "NVML_ERROR_NO_PERMISSION (4): MIG management needs root" in err


def test_in_use_surfaces_as_one_line_and_the_node_is_shown(capsys, monkeypatch, files):
    plan, current = files
    failing_fake(monkeypatch, lambda fake: fake.fail("nvmlGpuInstanceDestroy", pynvml.NVML_ERROR_IN_USE))
    code, out, err = run(
        capsys, "apply", plan, "--backend", "fake", "--current", current, "--allow-mode-change"
    )
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("rlmig: error: GPU 0: destroy GPU instance 2g.20gb@4: NVML_ERROR_IN_USE (19)")
    assert out.splitlines()[-3:] == [
        "the node was left rolled back:",
        "  GPU 0: 4g.40gb@0=bert 2g.20gb@4=gpt",
        "  GPU 1: 7g.80gb@0",
    ]


def test_nvml_without_a_driver_is_one_line(capsys, monkeypatch, files):
    plan, _ = files

    def no_library():
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", no_library)
    err = one_line_error(capsys, "apply", plan, "--backend", "nvml", "--dry-run")
    assert (
        err == "rlmig: error: nvmlInit: NVML_ERROR_LIBRARY_NOT_FOUND (12): "
        "no NVIDIA driver (libnvidia-ml.so) on this machine"
    )


def test_a_torn_journal_tail_does_not_block_later_applies(capsys, files, tmp_path):
    # A crash mid-write leaves a partial last line; the next applies must still succeed and leave a
    # journal every line of which is JSON.
    plan, current = hopper(files)
    journal = tmp_path / "journal.jsonl"
    argv = ["apply", plan, "--backend", "fake", "--current", current, "--allow-mode-change"]
    assert run(capsys, *argv, "--journal", str(journal))[0] == 0
    with journal.open("r+b") as f:
        f.truncate(journal.stat().st_size - 10)
    for _ in range(2):
        code, _, err = run(capsys, *argv, "--journal", str(journal))
        assert code == 0, err
    lines = journal.read_text().splitlines()
    assert all(json.loads(line) for line in lines) and json.loads(lines[-1])["status"] == "complete"
