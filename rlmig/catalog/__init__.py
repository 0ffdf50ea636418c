"""Model catalog: latency, throughput, memory and retraining speed of DNN models on MIG instances.

Usage::

    >>> from rlmig.catalog import catalog, model_profile
    >>> resnet = model_profile("resnet50")                 # A100-80GB, fitted on ParvaGPU's measurements
    >>> seg = resnet.best_segment(3, slo_ms=100)           # best (batch, processes) on a 3g instance
    >>> seg.latency_ms <= 50 and seg.processes <= 3
    True
    >>> resnet.latency_ms(7, 32, 2) < resnet.latency_ms(1, 32, 2)
    True
    >>> h100 = model_profile("resnet50", "H100-80GB")      # scaled from A100-80GB: an estimate
    >>> h100.estimate, h100.throughput(3, 64, 1) > resnet.throughput(3, 64, 1)
    (True, True)
    >>> "bert" in catalog("A100-80GB")
    True

A `ModelProfile` answers, for one model on one GPU model, the latency and throughput of a *segment*
(ParvaGPU's term, DESIGN.md §3): one MIG instance of ``compute`` slices serving the model with batch
size ``batch`` and ``processes`` MPS processes. Every figure comes from a fitted latency model
(`LatencyModel`), never from a table lookup, so it extends to batch sizes and process counts that
were not measured and stays monotone.

The shipped profiles are JSON files in ``rlmig/data/catalog/``, derived from public measurements
(ParvaGPU, MIGPerf) by ``python -m rlmig.catalog_build --data ../shared/data``; each names its source,
licence and file. The runtime never reads the raw measurements. Profiles for GPU models that were not
measured are scaled from a measured one (`scale_profile`) and flagged ``estimate``. Users add their
own measurements in ParvaGPU's CSV format with `import_profile` (``rlmig profiles import``); those
are stored under ``$RLMIG_HOME/profiles`` (default ``~/.local/share/rlmig/profiles``).

The package, one module per job: `latency` (the model and its fit), `measurements` (ParvaGPU-format
rows and fit errors), `profile` (a model's profile and its JSON form), `build` (profiles from
measurements), `scaling` (estimates for GPU models nobody measured), `store` (the shipped and imported
profiles, by GPU model).
"""

from rlmig.catalog.build import (
    CALIBRATION_FORMAT,
    calibration,
    catalog_dir,
    estimated_training,
    fit_measurements,
    footprint_within_measurements,
    profile_from_measurements,
)
from rlmig.catalog.check import Flag, check_points
from rlmig.catalog.latency import LatencyModel, fit_latency_model, rounded
from rlmig.catalog.measurements import (
    BATCHES,
    PARVAGPU_COLUMNS,
    FitError,
    Measurements,
    compute_sizes,
    fit_error,
    read_parvagpu_csv,
)
from rlmig.catalog.profile import PROFILE_FORMAT, Footprint, MeasuredPoints, ModelProfile, Segment
from rlmig.catalog.scaling import (
    COMPUTE_SHARE,
    bandwidth_per_slot,
    gpu_time_factor,
    scale_profile,
    sms_per_slice,
)
from rlmig.catalog.store import (
    REFERENCE_GPU,
    builtin_profiles,
    catalog,
    import_profile,
    measured_profiles,
    model_profile,
    user_profile_dir,
    user_profile_path,
    user_profiles,
)

__all__ = [
    "BATCHES",
    "CALIBRATION_FORMAT",
    "COMPUTE_SHARE",
    "PARVAGPU_COLUMNS",
    "PROFILE_FORMAT",
    "REFERENCE_GPU",
    "FitError",
    "Flag",
    "Footprint",
    "LatencyModel",
    "MeasuredPoints",
    "Measurements",
    "ModelProfile",
    "Segment",
    "bandwidth_per_slot",
    "builtin_profiles",
    "calibration",
    "catalog",
    "catalog_dir",
    "check_points",
    "compute_sizes",
    "estimated_training",
    "fit_error",
    "fit_latency_model",
    "fit_measurements",
    "footprint_within_measurements",
    "gpu_time_factor",
    "import_profile",
    "measured_profiles",
    "model_profile",
    "profile_from_measurements",
    "read_parvagpu_csv",
    "rounded",
    "scale_profile",
    "sms_per_slice",
    "user_profile_dir",
    "user_profile_path",
    "user_profiles",
]
