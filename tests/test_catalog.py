"""The model catalog: fidelity to the public measurements, the latency model's shape, best segments,
scaling to other GPUs, and import of user profiles (with one-line errors for bad CSVs)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from rlmig.catalog import (
    BATCHES,
    PARVAGPU_COLUMNS,
    LatencyModel,
    ModelProfile,
    builtin_profiles,
    catalog,
    import_profile,
    model_profile,
    user_profile_dir,
)
from rlmig.cli.profiles import profiles as profiles_cli
from rlmig.errors import ProfileDataError, RlmigError, UnknownModelError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PARVA = DATA / "parvagpu-a100-80gb" / "prof_data"
MIGPERF = DATA / "migperf-a100"
needs_data = pytest.mark.skipif(not PARVA.is_dir(), reason=f"public measurements not found at {DATA}")

PARVA_MODELS = [
    "bert", "densenet121", "densenet169", "densenet201", "inceptionv3", "mobilenetv2",
    "resnet101", "resnet152", "resnet50", "vgg16", "vgg19",
]  # fmt: skip
# Measured when the catalog was built (rlmig catalog build --data ../shared/data): median
# relative error of latency and total throughput at most 6.2% for every ParvaGPU model (inceptionv3 and
# bert are the worst; most are 2-3%), 90th percentile at most 21.8%. The bounds leave a little room.
MEDIAN_BOUND = 0.07
P90_BOUND = 0.25


@pytest.fixture(autouse=True)
def _isolated_user_dir(tmp_path_factory, monkeypatch):
    """No test sees (or writes) the real user profile directory."""
    monkeypatch.setenv("RLMIG_HOME", str(tmp_path_factory.mktemp("rlmig-home")))


def _parvagpu_rows(model: str) -> np.ndarray:
    """Measured rows of a raw ParvaGPU CSV: compute, batch, processes, total throughput, latency s."""
    with open(PARVA / f"{model}.csv", newline="") as handle:
        rows = [[float(x) for x in row] for row in list(csv.reader(handle))[1:] if row]
    table = np.array(rows)
    table = table[table[:, 3] > 0]
    table[:, 3] *= table[:, 2]
    return table


def _relative_errors(profile: ModelProfile, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    latency = np.array([profile.latency_ms(int(c), int(b), int(p)) / 1e3 for c, b, p in rows[:, :3]])
    throughput = np.array([profile.throughput(int(c), int(b), int(p)) for c, b, p in rows[:, :3]])
    return np.abs(latency / rows[:, 4] - 1), np.abs(throughput / rows[:, 3] - 1)


# -- fidelity to the measurements ----------------------------------------------------------------


@needs_data
@pytest.mark.parametrize("model", PARVA_MODELS)
def test_parvagpu_models_reproduce_the_measurements(model):
    profile = model_profile(model)
    assert (profile.gpu, profile.estimate) == ("A100-80GB", False)
    assert f"prof_data/{model}.csv" in profile.source and "ParvaGPU" in profile.source
    latency_err, throughput_err = _relative_errors(profile, _parvagpu_rows(model))
    assert np.median(throughput_err) < MEDIAN_BOUND
    assert np.median(latency_err) < MEDIAN_BOUND
    assert np.percentile(throughput_err, 90) < P90_BOUND
    assert np.percentile(latency_err, 90) < P90_BOUND
    # the fit error the catalog ships (and `rlmig profiles list` shows) is the one measured here
    assert profile.fit is not None and profile.fit.points == len(throughput_err)
    assert profile.fit.throughput_median == pytest.approx(np.median(throughput_err), abs=1e-3)
    assert profile.fit.latency_p90 == pytest.approx(np.percentile(latency_err, 90), abs=1e-3)


@needs_data
def test_migperf_models_reproduce_the_measurements():
    def rows(path: Path, model: str) -> np.ndarray:
        with open(path, newline="") as handle:
            found = [
                r for r in csv.DictReader(handle) if r["model_name"] == model and float(r["latency"]) > 0
            ]
        return np.array(
            [[int(r["mig_profile"][0]), float(r["batch_size"]), float(r["latency"])] for r in found]
        )

    vit = rows(MIGPERF / "A100-80g/infer/cv/integrated_result.csv", "vision_transformer")
    profile = model_profile("vision_transformer")
    predicted = np.array([profile.latency_ms(int(c), int(b), 1) for c, b, _ in vit])
    err = np.abs(predicted / vit[:, 2] - 1)
    assert len(vit) == 36 and np.median(err) < 0.03 and np.percentile(err, 90) < 0.06
    # resnet50's retraining throughput is MIGPerf's measured best samples/s per instance size
    train = rows(MIGPERF / "A100-80g/train/cv/cv_train.csv", "resnet50")
    resnet = model_profile("resnet50")
    for c in (1, 2, 3, 7):
        at = train[train[:, 0] == c]
        assert resnet.train_throughput(c) == pytest.approx(np.max(at[:, 1] * 1000 / at[:, 2]), rel=2e-3)


def test_every_shipped_profile_names_its_source_and_round_trips():
    shipped = builtin_profiles()
    assert {p.name for p in shipped} >= set(PARVA_MODELS) | {"vision_transformer", "bert-base"}
    assert {p.gpu for p in shipped} == {"A100-80GB", "A100-40GB"}
    folder = Path(__file__).resolve().parents[1] / "rlmig" / "data" / "catalog"
    for profile in shipped:
        provenance = profile.details["provenance"]
        assert provenance["license"] == "MIT" and provenance["files"] and provenance["dataset"]
        assert not profile.estimate and profile.fit is not None
        text = (folder / f"{profile.name}@{profile.gpu}.json").read_text()
        assert json.dumps(profile.to_json(), indent=1) + "\n" == text


# -- the latency model -------------------------------------------------------------------------


@pytest.mark.parametrize("gpu", ["A100-80GB", "H100-80GB", "A30-24GB"])
def test_latency_is_monotone(gpu):
    c = np.arange(1, 8, dtype=float)[:, None, None]
    b = np.array(BATCHES, dtype=float)[None, :, None]
    p = np.arange(1, 6, dtype=float)[None, None, :]
    for name, profile in catalog(gpu).items():
        latency = profile.latency.latency_s(c, b, p)
        assert np.all(np.diff(latency, axis=1) > 0), f"{name}: latency must grow with batch"
        assert np.all(np.diff(latency, axis=2) > 0), f"{name}: latency must grow with processes"
        assert np.all(np.diff(latency, axis=0) <= 1e-12 * latency[1:]), f"{name}: must not grow with compute"
        assert latency[-1, -1, 0] < latency[0, -1, 0], (
            f"{name}: a 7-slice instance must beat 1 slice at batch 256"
        )


def test_interference_levels_off_total_throughput():
    profile = model_profile("resnet50")
    small = [profile.throughput(7, 1, p) for p in (1, 2, 3)]
    large = [profile.throughput(1, 64, p) for p in (1, 2, 3)]
    assert small[2] > 2 * small[0]  # batch 1 leaves the SMs idle: processes overlap almost for free
    assert large[2] < 1.1 * large[0]  # batch 64 saturates one slice: more processes add little


def test_latency_model_is_a_json_round_trip():
    model = model_profile("vgg16").latency
    assert LatencyModel.from_json(model.to_json()) == model
    assert float(model.latency_s(3, 8, 2)) == pytest.approx(model_profile("vgg16").latency_ms(3, 8, 2) / 1e3)


# -- best segments -----------------------------------------------------------------------------


def _brute_force(profile, compute, slo_ms, slo_fraction, max_processes, memory_gb):
    best = None
    for p in range(1, max_processes + 1):
        for b in BATCHES:
            segment = profile.segment(compute, b, p)  # measured where measured, else the model's
            if segment is None:  # measured as not run: never feasible
                continue
            latency, throughput = segment.latency_ms, segment.throughput
            if latency > slo_fraction * slo_ms:
                continue
            if memory_gb is not None and p * profile.memory_mb(b) > memory_gb * 1000:
                continue
            if best is None or throughput > best[0] * (1 + 1e-9):
                best = (throughput, b, p, latency)
    return best


@pytest.mark.parametrize("model", ["resnet50", "bert", "vgg19", "vision_transformer"])
def test_best_segment_is_the_brute_force_optimum(model):
    profile = model_profile(model)
    for compute in (1, 2, 3, 4, 7):
        for slo_ms in (20.0, 80.0, 250.0, 1000.0, 6434.0):
            for fraction, max_p, memory_gb in (
                (0.5, 3, None),
                (0.45, 3, 10.0),
                (0.5, 5, 20.0),
                (0.9, 1, None),
            ):
                got = profile.best_segment(
                    compute, slo_ms, slo_fraction=fraction, max_processes=max_p, memory_gb=memory_gb
                )
                want = _brute_force(profile, compute, slo_ms, fraction, max_p, memory_gb)
                if want is None:
                    assert got is None
                    continue
                assert got is not None and got.compute == compute
                assert (got.throughput, got.batch, got.processes) == pytest.approx(want[:3], rel=1e-9)
                assert got.latency_ms == pytest.approx(want[3]) and got.latency_ms <= fraction * slo_ms


def test_best_segment_none_when_infeasible_and_cached():
    profile = model_profile("resnet152")
    assert profile.best_segment(7, slo_ms=1.0) is None  # below even batch 1's latency
    assert profile.best_segment(7, slo_ms=500.0, memory_gb=0.5) is None  # no process fits 0.5 GB
    first = profile.best_segment(3, 300.0)
    assert first is not None and profile.best_segment(3, 300.0) is first
    assert profile.best_segment(3, 300.0).throughput >= profile.best_segment(3, 100.0).throughput


# -- other GPU models --------------------------------------------------------------------------


@pytest.mark.parametrize("gpu", ["H100-80GB", "H100-94GB", "H200-141GB", "B200"])
def test_scaled_profiles_are_estimates_and_faster_on_newer_gpus(gpu):
    a100 = model_profile("resnet50")
    scaled = model_profile("resnet50", gpu)
    assert scaled.estimate and scaled.gpu == gpu and "scaled from A100-80GB" in scaled.source
    for c, b, p in ((1, 32, 1), (3, 64, 2), (7, 128, 1), (7, 8, 3)):
        assert scaled.throughput(c, b, p) > a100.throughput(c, b, p)
        assert scaled.latency_ms(c, b, p) < a100.latency_ms(c, b, p)
    assert all(scaled.train_throughput(c) > a100.train_throughput(c) for c in (1, 2, 3, 4, 7))
    assert scaled.memory_mb(64) == a100.memory_mb(64)


def test_other_gpus_and_unknown_models():
    a30 = model_profile("bert", "A30-24GB")
    assert a30.estimate and sorted(a30.training) == [1, 2, 4]
    migperf_40 = model_profile("bert-base-multilingual-cased", "a100-40gb")  # names are case-insensitive
    assert not migperf_40.estimate and model_profile("BERT-base-multilingual-cased").estimate
    assert set(catalog("H200-141GB")) == set(catalog("A100-80GB"))
    with pytest.raises(UnknownModelError) as info:
        model_profile("resnet51")
    message = str(info.value)
    assert isinstance(info.value, RlmigError) and "\n" not in message
    assert "'resnet51'" in message and "resnet50" in message and "vgg16" in message
    with pytest.raises(RlmigError, match="unknown GPU model"):
        catalog("A200")


# -- user profiles -----------------------------------------------------------------------------


TRUTH = LatencyModel(
    load_s=0.002, load_item_s=4e-5, sched_s=3e-4, floor_s=0.004, work_s=0.002,
    work_item_s=0.003, alpha=0.95, gamma=0.02, sharpness=6.0,
)  # fmt: skip


def _write_csv(path: Path, rows: list[list[object]], header: tuple[str, ...] = PARVAGPU_COLUMNS) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _synthetic_rows(processes: tuple[int, ...] = (1, 2, 3)) -> list[list[object]]:
    rows: list[list[object]] = []
    for c in (1, 2, 3, 4, 7):
        for b in (1, 4, 16, 64):
            for p in processes:
                latency = float(TRUTH.latency_s(c, b, p))
                rows.append([c, b, p, round(b / latency, 3), round(latency, 4)])
    rows.append([1, 256, 3, 0, 0])  # not measured
    return rows


def test_import_fits_stores_and_joins_the_catalog(tmp_path):
    path = _write_csv(tmp_path / "my-net.csv", _synthetic_rows())
    profile = import_profile(path, "A100-80GB")
    assert (profile.name, profile.gpu, profile.estimate, profile.user) == ("my-net", "A100-80GB", False, True)
    assert profile.fit is not None and profile.fit.points == 60 and profile.fit.throughput_p90 < 0.01
    for c, b, p in ((2, 8, 2), (7, 256, 3), (1, 2, 5)):  # also outside the measured grid
        assert profile.throughput(c, b, p) == pytest.approx(b * p / float(TRUTH.latency_s(c, b, p)), rel=0.05)
    stored = user_profile_dir() / "my-net@A100-80GB.json"
    assert stored.parent.parent == Path(os.environ["RLMIG_HOME"])
    record = json.loads(stored.read_text())
    assert record["format"] == builtin_profiles()[0].to_json()["format"] and record["training"]["estimate"]
    assert catalog()["my-net"].user and model_profile("MY-NET").fit == profile.fit
    assert model_profile("my-net", "H100-80GB").estimate


def test_import_with_one_process_uses_default_interference(tmp_path):
    path = _write_csv(tmp_path / "solo.csv", _synthetic_rows(processes=(1,)))
    profile = import_profile(path, "A100-80GB", name="solo_v1")
    assert profile.details["interference"].startswith("default")
    assert profile.latency_ms(3, 16, 3) > profile.latency_ms(3, 16, 1)


def test_profiles_cli_import_and_list(tmp_path, capsys):
    path = _write_csv(tmp_path / "net.csv", _synthetic_rows())
    profiles_cli.main(["import", str(path), "--gpu", "A100-80GB", "--name", "cli-net"], standalone_mode=False)
    assert "imported cli-net for A100-80GB from 60 measured segments" in capsys.readouterr().out
    profiles_cli.main(["list", "--gpu", "H100-80GB", "--json"], standalone_mode=False)
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["cli-net"]["estimate"] and listed["cli-net"]["user"] and listed["resnet50"]["fit_error"]
    profiles_cli.main(["list"], standalone_mode=False)
    assert "cli-net" in capsys.readouterr().out
    with pytest.raises(RlmigError, match="unknown GPU model"):
        profiles_cli.main(["import", str(path), "--gpu", "Z100"], standalone_mode=False)


GOOD = [[c, 1, 1, 100.0, 0.01] for c in (1, 2, 3, 4, 7)] + [[c, 8, 1, 400.0, 0.02] for c in (1, 2, 3, 4, 7)]


@pytest.mark.parametrize(
    ("rows", "header", "expected"),
    [
        (
            GOOD,
            ("Mig instance", "Batch", "Workload Number", "Throughput", "Latency"),
            ":1: column 2 is 'Batch'",
        ),
        (GOOD, PARVAGPU_COLUMNS[:4], ":1: column 5 is missing"),
        (
            [*GOOD, [3, 16, 1, "fast", 0.03]],
            PARVAGPU_COLUMNS,
            ":12: field 'Throughput' is not a number: 'fast'",
        ),
        ([*GOOD, [3, 16, 1, 100.0]], PARVAGPU_COLUMNS, ":12: expected 5 fields, got 4"),
        (
            [*GOOD, [3, 2.5, 1, 100.0, 0.03]],
            PARVAGPU_COLUMNS,
            ":12: field 'Batch size' must be a positive integer",
        ),
        (
            [*GOOD, [5, 2, 1, 100.0, 0.03]],
            PARVAGPU_COLUMNS,
            ":12: field 'Mig instance' is 5, not a compute size",
        ),
        (
            [*GOOD, [3, 2, 1, 0, 0.03]],
            PARVAGPU_COLUMNS,
            ":12: fields 'Throughput' and 'Latency' must both be 0",
        ),
        ([*GOOD, [3, 2, 1, -4, 0.03]], PARVAGPU_COLUMNS, ":12: field 'Throughput' must not be negative"),
        (
            [*GOOD, [3, 1, 1, 90.0, 0.011]],
            PARVAGPU_COLUMNS,
            ":12: duplicate row for Mig instance 3, Batch size 1",
        ),
        (
            [r for r in GOOD if r[0] != 4],
            PARVAGPU_COLUMNS,
            "field 'Mig instance' has no measured rows for compute sizes 4",
        ),
        ([r for r in GOOD if r[1] == 1] * 1, PARVAGPU_COLUMNS, "the fit needs at least 10"),
    ],
)
def test_malformed_csv_gives_one_line_errors(tmp_path, rows, header, expected):
    path = _write_csv(tmp_path / "bad.csv", rows, header)
    with pytest.raises(ProfileDataError) as info:
        import_profile(path, "A100-80GB")
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)) and expected in message
    assert not user_profile_dir().exists()


def test_empty_or_missing_csv_and_bad_names(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ProfileDataError, match=r"empty\.csv:1: empty file"):
        import_profile(empty, "A100-80GB")
    with pytest.raises(ProfileDataError, match="cannot read"):
        import_profile(tmp_path / "absent.csv", "A100-80GB")
    with pytest.raises(RlmigError, match="bad model name"):
        import_profile(empty, "A100-80GB", name="../escape")
