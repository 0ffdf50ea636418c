"""The catalog: the shipped profiles, the user's imported ones, and the profiles of any GPU model."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

from rlmig.catalog.build import catalog_dir, profile_from_measurements
from rlmig.catalog.measurements import read_parvagpu_csv
from rlmig.catalog.profile import ModelProfile
from rlmig.catalog.scaling import scale_profile
from rlmig.errors import ProfileDataError, RlmigError, UnknownModelError
from rlmig.geometry import DEFAULT_GPU_MODEL, GpuModel, gpu_model

REFERENCE_GPU = DEFAULT_GPU_MODEL
"""The GPU model the measurements come from; other models are scaled from it."""


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


@functools.cache
def builtin_profiles() -> tuple[ModelProfile, ...]:
    """The shipped, measured profiles (not scaled), in name order."""
    found = []
    for entry in catalog_dir().iterdir():
        if entry.name.endswith(".json") and entry.name != "calibration.json":
            found.append(ModelProfile.from_json(json.loads(entry.read_text()), origin=str(entry)))
    return tuple(sorted(found, key=lambda p: (p.name.lower(), p.gpu)))


def user_profile_dir() -> Path:
    """Where imported profiles live: ``$RLMIG_HOME/profiles``, else ``$XDG_DATA_HOME/rlmig/profiles``
    (default ``~/.local/share/rlmig/profiles``)."""
    home = os.environ.get("RLMIG_HOME")
    if home:
        return Path(home).expanduser() / "profiles"
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "rlmig" / "profiles"


def user_profile_path(name: str, gpu: str) -> Path:
    """The file an imported profile of model ``name`` for this GPU model is stored in."""
    return user_profile_dir() / f"{name}@{gpu_model(gpu).name}.json"


def user_profiles() -> tuple[ModelProfile, ...]:
    """The imported profiles of the user profile directory."""
    return _user_profiles(*_user_signature())


def _user_signature() -> tuple[str, tuple[tuple[str, int], ...]]:
    folder = user_profile_dir()
    if not folder.is_dir():
        return str(folder), ()
    files = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.json") if p.is_file()))
    return str(folder), files


@functools.lru_cache(maxsize=8)
def _user_profiles(folder: str, files: tuple[tuple[str, int], ...]) -> tuple[ModelProfile, ...]:
    found = []
    for name, _ in files:
        path = Path(folder) / name
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ProfileDataError(f"{path}: unreadable model profile: {exc}") from None
        found.append(ModelProfile.from_json(record, origin=str(path), user=True))
    return tuple(sorted(found, key=lambda p: (p.name.lower(), p.gpu)))


def measured_profiles() -> dict[str, dict[str, ModelProfile]]:
    """Every measured profile (built-in, then imported ones overriding on name and GPU), by name and GPU."""
    found: dict[str, dict[str, ModelProfile]] = {}
    names: dict[str, str] = {}
    for profile in (*builtin_profiles(), *user_profiles()):
        key = names.setdefault(profile.name.lower(), profile.name)
        found.setdefault(key, {})[profile.gpu] = profile
    return found


def catalog(gpu: str | GpuModel = REFERENCE_GPU) -> dict[str, ModelProfile]:
    """Every model for this GPU model, by name: built-in and imported, measured on it or scaled to it."""
    return dict(_catalog(gpu_model(gpu).name, *_user_signature()))


@functools.lru_cache(maxsize=32)
def _catalog(
    gpu: str, folder: str, files: tuple[tuple[str, int], ...]
) -> tuple[tuple[str, ModelProfile], ...]:
    del folder, files  # cache key only: the user directory and its files' modification times
    result = []
    for name, by_gpu in sorted(measured_profiles().items(), key=lambda item: item[0].lower()):
        if gpu in by_gpu:
            result.append((name, by_gpu[gpu]))
        else:
            source = by_gpu.get(REFERENCE_GPU) or by_gpu[sorted(by_gpu)[0]]
            result.append((name, scale_profile(source, gpu)))
    return tuple(result)


def model_profile(
    name: str, gpu: str | GpuModel = REFERENCE_GPU, models: Mapping[str, ModelProfile] | None = None
) -> ModelProfile:
    """The profile of model ``name`` (case-insensitive) for this GPU model; `UnknownModelError` if none.
    `models` may pass the GPU model's `catalog` when the caller looks up several."""
    models = catalog(gpu) if models is None else models
    wanted = name.strip().lower()
    for known, profile in models.items():
        if known.lower() == wanted:
            return profile
    raise UnknownModelError(f"unknown model {name!r} for {gpu_model(gpu).name} (known: {', '.join(models)})")


MAX_FIT_ERROR = 0.5
"""The worst 90th-percentile error (latency or throughput, |model / measured - 1|) an imported profile's
fit may have without `allow_poor_fit`. The shipped profiles' worst is 22% (inceptionv3, A100-80GB)."""


def import_profile(
    csv_path: str | Path, gpu: str, name: str | None = None, allow_poor_fit: bool = False
) -> ModelProfile:
    """Fit a profile to a ParvaGPU-format CSV (`read_parvagpu_csv`) and store it as a user profile.

    The profile is saved as ``<name>@<gpu>.json`` in `user_profile_dir`, in the built-in format, and
    from then on is part of `catalog` (replacing a built-in profile of the same name on that GPU).
    A fit worse than `MAX_FIT_ERROR` is refused unless `allow_poor_fit`: plans use the measured rows,
    but the model fills every segment that was not measured.
    """
    model = gpu_model(gpu)
    path = Path(csv_path)
    name = path.stem if name is None else name.strip()
    if not _NAME.match(name):
        raise RlmigError(
            f"bad model name {name!r}: use letters, digits and . _ + - "
            "(at most 64, starting with a letter or digit)"
        )
    data = read_parvagpu_csv(path, model)
    profile = profile_from_measurements(
        name,
        model.name,
        data,
        source=f"user measurements, {path.name}",
        details={
            "provenance": {
                "dataset": "user-supplied",
                "license": "user-supplied",
                "files": [str(path.resolve())],
            }
        },
        user=True,
    )
    fit = profile.fit
    if fit is not None and not allow_poor_fit:
        worst = max(fit.latency_p90, fit.throughput_p90)
        if worst > MAX_FIT_ERROR:
            raise RlmigError(
                f"{path}: the latency model fits these measurements poorly (90th-percentile error: latency "
                f"{fit.latency_p90:.0%}, throughput {fit.throughput_p90:.0%}; at most {MAX_FIT_ERROR:.0%}); "
                "check the rows (rlmig profiles check) or import anyway with --allow-poor-fit"
            )
    target = user_profile_path(name, model.name)
    record = profile.to_json()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record, indent=1) + "\n")
    except OSError as exc:
        raise RlmigError(f"cannot write the profile to {target.parent}: {exc.strerror or exc}") from None
    _user_profiles.cache_clear()
    _catalog.cache_clear()
    return ModelProfile.from_json(record, origin=str(target), user=True)  # exactly as the catalog loads it
