"""Build the shipped model catalog, ``rlmig/data/catalog/*.json``, from public measurements.

Usage::

    rlmig catalog build --data ../shared/data             # rewrite rlmig/data/catalog, print fit errors
    rlmig catalog build --data DIR --out /tmp/c           # write elsewhere (to compare)
    rlmig catalog fit                                     # fit errors of the shipped catalog

The output is deterministic: the same data give byte-identical files. Inputs (read-only, never
copied): ``parvagpu-a100-80gb/prof_data/*.csv`` (ParvaGPU, arXiv 2409.14447, MIT) and
``migperf-a100/`` (MIGPerf, arXiv 2301.00407, MIT). What is derived, and how:

- latency models (`rlmig.catalog.LatencyModel`): fitted per model. ParvaGPU's 11 models on A100-80GB
  with 1-5 MPS processes per instance, so interference is fitted; MIGPerf's inference sweeps
  (A100-80GB: vision_transformer, bert-base; A100-40GB: five sentence-embedding models) have one
  process only, so their interference is the median of the ParvaGPU fits. MIGPerf's resnet50
  inference duplicates ParvaGPU's resnet50 and calibrates its footprint and retraining instead.
- footprints: MIGPerf's framebuffer use where measured (per instance size, a line in the batch
  size; the largest intercept and slope). Elsewhere an estimate from the architecture:
  context + fp32 weights + k × the largest activation tensor per item, with the context and k
  calibrated on the MIGPerf models, then scaled down where a measured ParvaGPU segment proves it
  smaller (p processes at batch b ran on an instance, so p × memory(b) fits it).
- retraining throughput: MIGPerf's measured training (resnet50, bert-base on A100-80GB: the best
  samples/s over batch sizes per instance size). Elsewhere ``train_infer_ratio`` × the best
  single-process inference throughput, the ratio being the median of MIGPerf's measured
  train/infer ratios (about 1/3: forward plus backward); for a size MIGPerf did not measure of a
  model it did, that estimate is corrected by the model's median measured/estimated ratio.

MIGPerf data quirks handled here: its NLP ``throughput`` column is 3000/latency whatever the batch,
so samples/s are recomputed as batch × 1000 / latency wherever the column disagrees with that by
more than 5%; rows with latency 0 did not run (out of memory) and are skipped.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlmig.catalog import (
    CALIBRATION_FORMAT,
    REFERENCE_GPU,
    Footprint,
    Measurements,
    ModelProfile,
    compute_sizes,
    estimated_training,
    fit_measurements,
    footprint_within_measurements,
    profile_from_measurements,
    read_parvagpu_csv,
)
from rlmig.errors import RlmigError
from rlmig.geometry import gpu_model

PARVAGPU = {
    "dataset": "ParvaGPU (Lee et al., SC24, arXiv 2409.14447)",
    "license": "MIT",
    "url": "https://github.com/MunQ-Lee/ParvaGPU_SC24",
}
MIGPERF = {
    "dataset": "MIGPerf (Zhang et al., arXiv 2301.00407)",
    "license": "MIT",
    "url": "https://github.com/MLSysOps/MIGProfiler",
}

# Architecture facts for footprint estimates: parameters (millions; torchvision and model-card figures)
# and the largest activation tensor of one item (millions of elements) at the input size profiled.
# ParvaGPU (scripts/dl_infer_runtime.py) runs torchvision CNNs on 224x224 images (inception_v3 too)
# and its `bert` is BERT-large at sequence length 128; MIGPerf's NLP runs use sequence length 64.
ARCH: dict[str, tuple[float, float, str]] = {
    "bert": (335.1, 128 * 4096 / 1e6, "BERT-large, sequence 128: FFN activation 128x4096"),
    "densenet121": (7.979, 64 * 112 * 112 / 1e6, "torchvision, 224x224: stem output 64x112x112"),
    "densenet169": (14.149, 64 * 112 * 112 / 1e6, "torchvision, 224x224: stem output 64x112x112"),
    "densenet201": (20.014, 64 * 112 * 112 / 1e6, "torchvision, 224x224: stem output 64x112x112"),
    "inceptionv3": (27.161, 64 * 109 * 109 / 1e6, "torchvision, 224x224: Conv2d_2b output 64x109x109"),
    "mobilenetv2": (3.505, 96 * 112 * 112 / 1e6, "torchvision, 224x224: expansion 96x112x112"),
    "resnet50": (25.557, 64 * 112 * 112 / 1e6, "torchvision, 224x224: stem output 64x112x112"),
    "resnet101": (44.549, 64 * 112 * 112 / 1e6, "torchvision, 224x224: stem output 64x112x112"),
    "resnet152": (60.192, 64 * 112 * 112 / 1e6, "torchvision, 224x224: stem output 64x112x112"),
    "vgg16": (138.358, 64 * 224 * 224 / 1e6, "torchvision, 224x224: conv1 output 64x224x224"),
    "vgg19": (143.667, 64 * 224 * 224 / 1e6, "torchvision, 224x224: conv1 output 64x224x224"),
    "vision_transformer": (86.568, 197 * 3072 / 1e6, "ViT-B/16, 224x224: MLP activation 197x3072"),
    "bert-base-multilingual-cased": (177.853, 64 * 3072 / 1e6, "sequence 64: FFN activation 64x3072"),
    "paraphrase-multilingual-mpnet-base-v2": (278.044, 64 * 3072 / 1e6, "sequence 64: FFN 64x3072"),
    "distiluse-base-multilingual-cased-v1": (134.734, 64 * 3072 / 1e6, "sequence 64: FFN 64x3072"),
    "distiluse-base-multilingual-cased-v2": (134.734, 64 * 3072 / 1e6, "sequence 64: FFN 64x3072"),
    "paraphrase-multilingual-MiniLM-L12-v2": (117.654, 64 * 1536 / 1e6, "sequence 64: FFN 64x1536"),
}
_MIB = 4e6 / 2**20  # MiB per million fp32 values
# MIGPerf's A100-40GB file tags: instance memory -> profile ID (checked against its *_MIG_profile_<ID> files)
_MIGPERF_40GB_TAGS = {"05g": 19, "10g": 14, "20g": 9, "40g": 0}
_PROFILE_COMPUTE = re.compile(r"^(\d+)g\.")


def default_output() -> Path:
    """The shipped catalog folder of this checkout, ``rlmig/data/catalog``."""
    return Path(__file__).resolve().parent / "data" / "catalog"


# -- reading MIGPerf ---------------------------------------------------------------------------


class _Sweep:
    """One model's MIGPerf rows (one process): compute, batch, latency s, samples/s, framebuffer MiB."""

    def __init__(self, name: str, files: list[str]) -> None:
        self.name = name
        self.files = files
        self.rows: list[tuple[int, int, float, float, float | None]] = []
        self.recomputed = 0

    def add(self, compute: int, row: Mapping[str, str], fb: bool = True) -> None:
        latency_ms = float(row["latency"])
        if latency_ms <= 0:
            return
        batch = int(float(row["batch_size"]))
        rate = float(row["throughput"])
        if abs(rate * latency_ms / (batch * 1000.0) - 1.0) > 0.05:
            rate = batch * 1000.0 / latency_ms
            self.recomputed += 1
        memory = float(row["fb_used_mean"]) if fb and row.get("fb_used_mean") else None
        self.rows.append((compute, batch, latency_ms / 1e3, rate, memory))

    def measurements(self) -> Measurements:
        table = np.array(sorted(r[:4] for r in self.rows), dtype=float)
        ones = np.ones(len(table))
        return Measurements(
            table[:, 0], table[:, 1], ones, table[:, 2], table[:, 3], file=", ".join(self.files)
        )

    def best_rate(self) -> dict[int, float]:
        best: dict[int, float] = {}
        for compute, _, _, rate, _ in self.rows:
            best[compute] = max(best.get(compute, 0.0), rate)
        return dict(sorted(best.items()))

    def footprint(self) -> Footprint:
        """Per instance size, a least-squares line of memory in batch; the largest intercept and slope."""
        lines = []
        for compute in sorted({r[0] for r in self.rows}):
            points = [(r[1], r[4]) for r in self.rows if r[0] == compute and r[4]]
            if len(points) >= 2:
                slope, intercept = np.polyfit(*np.array(points, dtype=float).T, 1)
                lines.append((intercept, max(slope, 0.0)))
        if not lines:
            raise RlmigError(f"MIGPerf {self.name}: no framebuffer measurements")
        return Footprint(float(max(i for i, _ in lines)), float(max(s for _, s in lines)))


def _read(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise RlmigError(f"missing input {path}")
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _profile_compute(name: str) -> int:
    match = _PROFILE_COMPUTE.match(name)
    if match is None:
        raise RlmigError(f"unexpected MIG profile name {name!r} in MIGPerf data")
    return int(match.group(1))


def _migperf_80gb(root: Path, base: Path) -> tuple[dict[str, _Sweep], dict[str, _Sweep]]:
    """MIGPerf A100-80GB: inference and training sweeps by model name."""
    infer: dict[str, _Sweep] = {}
    train: dict[str, _Sweep] = {}
    for kind, table, rel in (
        ("infer", infer, "A100-80g/infer/cv/integrated_result.csv"),
        ("infer", infer, "A100-80g/infer/nlp/integrated_result_bsz.csv"),
        ("train", train, "A100-80g/train/cv/cv_train.csv"),
        ("train", train, "A100-80g/train/nlp/nlp_train_bsz.csv"),
    ):
        path = root / rel
        for row in _read(path):
            name = row["model_name"]
            sweep = table.setdefault(name, _Sweep(name, []))
            file = str(path.relative_to(base))
            if file not in sweep.files:
                sweep.files.append(file)
            sweep.add(_profile_compute(row["mig_profile"]), row, fb=kind == "infer")
    return infer, train


def _migperf_40gb(root: Path, base: Path) -> dict[str, _Sweep]:
    """MIGPerf A100-40GB inference batch sweeps (sequence length 64) by model name."""
    a100 = gpu_model("A100-40GB")
    sweeps: dict[str, _Sweep] = {}
    for folder in sorted(p for p in (root / "A100-40g" / "infer_bsz").iterdir() if p.is_dir()):
        for tag, profile_id in _MIGPERF_40GB_TAGS.items():
            files = sorted(folder.glob(f"*_infer_{tag}_bsz.csv"))
            checks = sorted(folder.glob(f"*_MIG_profile_{profile_id}.csv"))
            if len(files) != 1 or len(checks) != 1:
                raise RlmigError(f"expected one {tag} sweep and one profile-{profile_id} file in {folder}")
            rows = _read(files[0])
            first = _read(checks[0])[0]
            if (rows[0]["latency"], rows[0]["batch_size"]) != (first["latency"], first["batch_size"]):
                raise RlmigError(f"{files[0]} does not match {checks[0]}: the {tag} -> profile map is wrong")
            compute = a100.profile(profile_id).compute
            for row in rows:
                name = row["model_name"]
                sweep = sweeps.setdefault(name, _Sweep(name, []))
                sweep.files.append(str(files[0].relative_to(base)))
                sweep.add(compute, row)
    return sweeps


# -- building ----------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return float(np.median(np.array(values, dtype=float)))


def _training_table(
    profile_latency: Any, sizes: Sequence[int], ratio: float, measured: Mapping[int, float] | None
) -> tuple[dict[int, float], dict[str, Any]]:
    estimate = estimated_training(profile_latency, sizes, ratio)
    if not measured:
        method = (
            f"{ratio:.3g} x best single-process inference throughput (train/infer ratio measured by MIGPerf)"
        )
        return estimate, {"estimate": True, "method": method}
    correction = _median([measured[c] / estimate[c] for c in measured if c in estimate])
    table = {c: measured.get(c, correction * estimate[c]) for c in sizes}
    missing = [c for c in sizes if c not in measured]
    method = "MIGPerf measured (best samples/s over batch sizes)"
    if missing:
        method += (
            f"; {', '.join(map(str, missing))} slices estimated: {ratio:.3g} x inference throughput"
            f" x {correction:.3g} (this model's measured/estimated ratio)"
        )
    return table, {"estimate": bool(missing), "measured_compute": sorted(measured), "method": method}


def build_catalog(data_dir: str | Path, out_dir: str | Path | None = None) -> list[ModelProfile]:
    """Fit every model of the public data sets and write the catalog JSON files; returns the profiles."""
    base = Path(data_dir).resolve()
    parva_dir = base / "parvagpu-a100-80gb" / "prof_data"
    migperf_dir = base / "migperf-a100"
    if not parva_dir.is_dir() or not migperf_dir.is_dir():
        raise RlmigError(f"{base} lacks parvagpu-a100-80gb/prof_data or migperf-a100 (DESIGN.md §4)")
    out = default_output() if out_dir is None else Path(out_dir)

    # 1. ParvaGPU: measured with MPS, interference fitted.
    parva: dict[str, Measurements] = {}
    for path in sorted(parva_dir.glob("*.csv")):
        data = read_parvagpu_csv(path, REFERENCE_GPU)
        parva[path.stem] = Measurements(
            data.compute,
            data.batch,
            data.processes,
            data.latency_s,
            data.throughput,
            str(path.relative_to(base)),
            data.not_run,
        )
    infer80, train80 = _migperf_80gb(migperf_dir, base)
    sweeps40 = _migperf_40gb(migperf_dir, base)

    # 2. Calibration: train/infer ratio, footprint context and activation factor.
    ratios = []
    for name, train in sorted(train80.items()):
        infer_best = infer80[name].best_rate()
        ratios += [rate / infer_best[c] for c, rate in train.best_rate().items() if c in infer_best]
    ratio = _median(ratios)
    measured_fp = {name: s.footprint() for name, s in [*infer80.items(), *sweeps40.items()]}
    calibrating = [n for n in measured_fp if n in ARCH]
    context = _median([measured_fp[n].base_mb - ARCH[n][0] * _MIB for n in calibrating])
    act_factor = _median([measured_fp[n].per_item_mb / (ARCH[n][1] * _MIB) for n in calibrating])
    calib: dict[str, Any] = {
        "format": CALIBRATION_FORMAT,
        "train_infer_ratio": round(ratio, 4),
        "train_infer_ratio_from": f"{len(ratios)} (model, instance size) pairs of MIGPerf A100-80GB: "
        + ", ".join(sorted(train80)),
        "memory": {
            "context_mb": round(context, 1),
            "activation_factor": round(act_factor, 3),
            "calibrated_on": sorted(calibrating),
        },
    }

    # 3. Fit the ParvaGPU models first: their median interference is the default for the others.
    parva_fits = {name: fit_measurements(data, calib) for name, data in parva.items()}
    calib["interference"] = {
        "gamma": round(_median([m.gamma for m in parva_fits.values()]), 4),
        "sched_over_floor": round(_median([m.sched_s / m.floor_s for m in parva_fits.values()]), 4),
        "from": f"median over the {len(parva_fits)} ParvaGPU fits",
    }

    profiles: list[ModelProfile] = []
    sizes80 = compute_sizes(REFERENCE_GPU)
    footprints = {}
    for name, data in parva.items():
        latency = parva_fits[name]
        if name in infer80:  # the same model measured by MIGPerf on the same GPU model
            estimate_fp = measured_fp[name]
            how = f"MIGPerf measured framebuffer ({', '.join(infer80[name].files)})"
            fp_estimate = False
        else:
            params, act, note = ARCH[name]
            estimate_fp = Footprint(context + params * _MIB, act_factor * act * _MIB)
            how = (
                f"estimate: context {context:.0f} MiB + fp32 weights ({params:g} M parameters) + "
                f"{act_factor:.3g} x largest activation per item ({note})"
            )
            fp_estimate = True
        footprint, scale = footprint_within_measurements(estimate_fp, data, REFERENCE_GPU)
        if scale < 1.0:
            how += f"; scaled by {scale:.3g} so every measured ParvaGPU segment fits its instance"
        footprints[name] = footprint
        measured_train = train80[name].best_rate() if name in train80 else None
        training, train_info = _training_table(latency, sizes80, ratio, measured_train)
        if measured_train:
            train_info["files"] = train80[name].files
        profile = profile_from_measurements(
            name,
            REFERENCE_GPU,
            data,
            source=f"ParvaGPU A100-80GB profiling (MIT), {data.file}",
            details={
                "provenance": PARVAGPU | {"files": [data.file]},
                "memory": {"estimate": fp_estimate, "method": how},
                "training": train_info,
            },
            latency=latency,
            footprint=footprint,
            training=training,
            calib=calib,
        )
        profiles.append(profile)
    calib["memory"]["default_base_mb"] = round(_median([f.base_mb for f in footprints.values()]), 1)
    calib["memory"]["default_per_item_mb"] = round(_median([f.per_item_mb for f in footprints.values()]), 3)

    # 4. MIGPerf inference sweeps (one process): A100-80GB models not in ParvaGPU, and A100-40GB.
    migperf_models = [(n, s, REFERENCE_GPU) for n, s in sorted(infer80.items()) if n not in parva]
    migperf_models += [(n, s, "A100-40GB") for n, s in sorted(sweeps40.items())]
    for name, sweep, gpu in migperf_models:
        data = sweep.measurements()
        sizes = compute_sizes(gpu)
        latency = fit_measurements(data, calib)
        measured_train = train80[name].best_rate() if gpu == REFERENCE_GPU and name in train80 else None
        training, train_info = _training_table(latency, sizes, ratio, measured_train)
        if measured_train:
            train_info["files"] = train80[name].files
        notes = "one process per instance: interference is the catalog default"
        if sweep.recomputed:
            notes += f"; {sweep.recomputed} throughput values recomputed as batch x 1000 / latency"
        profiles.append(
            profile_from_measurements(
                name,
                gpu,
                data,
                source=f"MIGPerf {gpu} inference (MIT), {sweep.files[0]}",
                details={
                    "provenance": MIGPERF | {"files": sweep.files, "notes": notes},
                    "memory": {
                        "estimate": False,
                        "method": "MIGPerf measured framebuffer, largest line over sizes",
                    },
                    "training": train_info,
                },
                latency=latency,
                footprint=measured_fp[name],
                training=training,
                calib=calib,
            )
        )

    # 5. Write: one file per model and GPU, plus the calibration; stale files removed.
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.json"):
        stale.unlink()
    (out / "calibration.json").write_text(json.dumps(calib, indent=1) + "\n")
    for profile in profiles:
        (out / f"{profile.name}@{profile.gpu}.json").write_text(
            json.dumps(profile.to_json(), indent=1) + "\n"
        )
    return sorted(profiles, key=lambda p: (p.gpu, p.name.lower()))


def fit_table(profiles: Sequence[ModelProfile]) -> str:
    """A Markdown table of each profile's fit error (relative, vs. the measurements)."""
    lines = [
        "| model | GPU | source | points | MPS | latency median | latency p90 "
        "| throughput median | throughput p90 |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    for p in profiles:
        if p.fit is None:
            continue
        dataset = str(p.details.get("provenance", {}).get("dataset", "user")).split(" (")[0]
        mps = "fitted" if p.details.get("interference") == "fitted" else "default"
        f = p.fit
        lines.append(
            f"| {p.name} | {p.gpu} | {dataset} | {f.points} | {mps} "
            f"| {f.latency_median:.1%} | {f.latency_p90:.1%} "
            f"| {f.throughput_median:.1%} | {f.throughput_p90:.1%} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rlmig.catalog_build --data DIR [--out DIR]``: ``rlmig catalog build``; with
    ``--report``: ``rlmig catalog fit``."""
    from rlmig.cli import main as rlmig_main

    args = list(sys.argv[1:] if argv is None else argv)
    return rlmig_main(["catalog", "fit"] if "--report" in args else ["catalog", "build", *args])


if __name__ == "__main__":
    sys.exit(main())
