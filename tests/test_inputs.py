"""The input layer (`rlmig.inputs`): every file rlmig reads goes through it, and bad bytes of any kind end
in one line naming the file, never a traceback, in bounded time."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rlmig.errors import RlmigError
from rlmig.executor import Journal
from rlmig.executor.planfile import load_configuration
from rlmig.geometry import gpu_model
from rlmig.inputs import load_json, load_yaml, quote, read_text
from rlmig.migparted import from_mig_parted
from rlmig.node.rates import FileRates, RatesUnavailable
from rlmig.policy import load_checkpoint
from rlmig.workload import load_workload, parse_workload

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "checkpoints" / "a100-80gb"
H100 = gpu_model("H100-80GB")

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True)
)


def one_line(exc: BaseException, path: Path) -> str:
    text = str(exc)
    assert "\n" not in text and len(text) < 400, text
    assert str(path) in text or path.name in text, text
    return text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\xff\xfe\x00garbage\x80", "is not UTF-8 text"),
        (ALIAS_BOMB.encode(), "YAML aliases are not accepted"),
        (b"gpu: A100-80GB\ngpu: H100-80GB\n", "duplicate key 'gpu'"),
        (b"x: " + b"[" * 100_000, "nested deeper than 64 levels"),
        (b"gpu: [A100\n", "not valid YAML: line 2"),
    ],
)
def test_a_bad_workload_file_is_one_line_quickly(tmp_path, content, message):
    path = tmp_path / "w.yaml"
    path.write_bytes(content)
    start = time.perf_counter()
    with pytest.raises(RlmigError) as caught:
        load_workload(path)
    assert message in one_line(caught.value, path)
    assert time.perf_counter() - start < 5  # the alias bomb expands to nothing: it is refused first


def test_json_duplicates_and_depth_and_long_values():
    with pytest.raises(RlmigError, match=r"p\.json: duplicate key 'gpus'"):
        load_json('{"gpus": [], "gpus": []}', "p.json")
    with pytest.raises(RlmigError, match=r"p\.json: nested too deep"):
        load_json("[" * 100_000, "p.json")
    assert len(quote("x" * 10_000)) == 80
    with pytest.raises(RlmigError, match=r"w\.yaml: line 1: duplicate key"):
        load_yaml("{a: 1, a: 2}", "w.yaml")


def test_garbage_journals_plans_cards_and_weights_are_one_line(tmp_path):
    journal = tmp_path / "journal.jsonl"
    journal.write_bytes(b"\x93\xff not a journal \x00")
    with pytest.raises(RlmigError) as caught:
        Journal(journal).last_run(H100)
    assert "the journal is not UTF-8 text" in one_line(caught.value, journal)
    plan = tmp_path / "plan.json"
    plan.write_bytes(b'{"gpu_model": "H100-80GB", "gpu_model": "A100-80GB", "gpus": []}')
    with pytest.raises(RlmigError) as caught:
        load_configuration(plan)
    assert "duplicate key 'gpu_model'" in one_line(caught.value, plan)
    folder = tmp_path / "checkpoint"
    shutil.copytree(CHECKPOINT, folder)
    weights = folder / "policy.npz"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(RlmigError) as caught:
        load_checkpoint(folder)
    assert "cannot read the weights" in one_line(caught.value, weights)
    (folder / "card.json").write_bytes(b"\xc3\x28")
    with pytest.raises(RlmigError) as caught:
        load_checkpoint(folder)
    assert "the checkpoint card is not UTF-8 text" in one_line(caught.value, folder / "card.json")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2_000))
@example(b"\r\x00")  # once a csv.Error from the rate file reader
def test_random_bytes_into_every_loader_end_in_one_line(tmp_path, data):
    path, as_json = tmp_path / "input", tmp_path / "input.json"
    path.write_bytes(data)
    as_json.write_bytes(data)
    checks = [
        lambda: load_workload(path),
        lambda: load_configuration(path),
        lambda: Journal(path).last_run(H100),
        lambda: from_mig_parted(data.decode("utf-8", errors="replace"), H100),
        lambda: FileRates(path, ("a", "b")).read(),
        lambda: FileRates(as_json, ("a",)).read(),
    ]
    for check in checks:
        try:
            check()
        except (RlmigError, RatesUnavailable) as exc:
            assert "\n" not in str(exc)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c) | st.dictionaries(st.text(max_size=5), c),
        max_leaves=20,
    )
)
def test_structured_nonsense_in_a_workload_and_a_plan_is_one_line(tmp_path, doc):
    for name, text in (("w.yaml", json.dumps(doc)), ("p.json", json.dumps(doc))):
        path = tmp_path / name
        path.write_text(text)
        loader = load_workload if name.endswith(".yaml") else load_configuration
        try:
            loader(path)
        except RlmigError as exc:
            assert "\n" not in str(exc)


def test_read_text_names_a_missing_file(tmp_path):
    with pytest.raises(RlmigError, match=r"nowhere\.yaml: cannot read workload file"):
        read_text(tmp_path / "nowhere.yaml", "workload file")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gpus": 10**9}, "gpus: must be at most 4096, got 1000000000"),
        ({"duration_s": 6e11}, "duration_s: must span at most 100000 intervals"),
        ({"max_processes": 10**6}, "max_processes: must be at most 48"),
        ({"gpus": 10**5000}, "gpus: must be at most 4096, got an integer of about 5001 digits"),
    ],
)
def test_sizes_that_would_exhaust_memory_or_time_are_refused_at_once(change, message):
    base = {
        "gpu": "A100-80GB",
        "gpus": 1,
        "interval_s": 60,
        "duration_s": 600,
        "tenants": [{"name": "a", "model": "bert", "slo_ms": 100, "load": 10}],
    }
    start = time.perf_counter()
    with pytest.raises(RlmigError) as caught:
        parse_workload({**base, **change}, source="w.yaml")
    text = str(caught.value)
    assert message in text and "\n" not in text and len(text) < 200
    assert time.perf_counter() - start < 1


def test_a_start_slot_of_thousands_of_digits_is_one_short_line():
    from rlmig.configuration import Configuration

    with pytest.raises(RlmigError) as caught:
        Configuration.parse(gpu_model("A100-80GB"), [["1g.10gb@" + "9" * 5000]])
    text = str(caught.value)
    assert "malformed instance" in text and len(text) < 200 and "\n" not in text
