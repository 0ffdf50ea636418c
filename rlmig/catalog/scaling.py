"""Profiles for GPU models nobody measured: A100 profiles scaled by SMs per slice and memory bandwidth,
flagged as estimates.
"""

from __future__ import annotations

from rlmig.catalog.latency import rounded
from rlmig.catalog.measurements import compute_sizes
from rlmig.catalog.profile import MeasuredPoints, ModelProfile
from rlmig.errors import RlmigError
from rlmig.geometry import GpuModel, gpu_model

COMPUTE_SHARE = 0.5
"""Share of a segment's GPU time taken as compute-bound when scaling to another GPU (`scale_profile`)."""


def sms_per_slice(gpu: str | GpuModel) -> float:
    """SMs per compute slice: from the profiles' SM counts where known, else SMs / memory slots."""
    model = gpu_model(gpu)
    known = [p.sms / p.compute for p in model.base_profiles() if p.sms]
    if known:
        return float(min(known))
    if not model.sms:
        raise RlmigError(f"{model.name} has no SM count in rlmig/data/gpus.yaml; cannot scale profiles to it")
    return model.sms / model.slots


def bandwidth_per_slot(gpu: str | GpuModel) -> float:
    """Memory bandwidth (GB/s) per memory slot: an instance gets its slots' share."""
    model = gpu_model(gpu)
    if not model.memory_bandwidth_gbps:
        raise RlmigError(f"{model.name} has no memory bandwidth in rlmig/data/gpus.yaml; cannot scale to it")
    return model.memory_bandwidth_gbps / model.slots


def gpu_time_factor(source: str | GpuModel, target: str | GpuModel) -> float:
    """Ratio of a segment's GPU time on ``target`` to that on ``source`` (see `scale_profile`)."""
    compute = sms_per_slice(source) / sms_per_slice(target)
    memory = bandwidth_per_slot(source) / bandwidth_per_slot(target)
    return COMPUTE_SHARE * compute + (1.0 - COMPUTE_SHARE) * memory


def scale_profile(profile: ModelProfile, gpu: str | GpuModel) -> ModelProfile:
    """Estimate a profile on another GPU model from one measured on ``profile.gpu``.

    The SM work of the latency model (work_s, work_item_s) is multiplied by

        f = COMPUTE_SHARE · sms_src / sms_dst + (1 - COMPUTE_SHARE) · bw_src / bw_dst

    where sms is the SM count per compute slice and bw the memory bandwidth per memory slot (an
    instance of c slices gets c slices' SMs and its memory slots' bandwidth), COMPUTE_SHARE = 0.5: half
    the GPU time taken as compute-bound, half as memory-bound. Retraining throughput is divided by f.
    Host time, scheduling delay, the launch floor and the memory footprint are kept. This is an
    ESTIMATE (``estimate=True``): it ignores per-SM architectural gains (H100 and later do more per SM
    and clock), so it understates newer GPUs' speed, which errs on the safe side for SLOs. A segment
    measured as not run (it did not fit, or did not run) stays infeasible on the estimated GPU.
    """
    target = gpu_model(gpu)
    factor = gpu_time_factor(profile.gpu, target)
    details = dict(profile.details)
    details["scaled_from"] = {"gpu": profile.gpu, "gpu_time_factor": rounded(factor, 4)}
    details["training"] = dict(details.get("training", {})) | {"estimate": True}
    return ModelProfile(
        profile.name,
        target.name,
        source=f"estimate scaled from {profile.gpu} (SMs per slice, memory bandwidth): {profile.source}",
        estimate=True,
        latency=profile.latency.scaled(factor),
        footprint=profile.footprint,
        training={c: profile.train_throughput(c) / factor for c in compute_sizes(target)},
        fit=profile.fit,
        details=details,
        user=profile.user,
        # A segment that did not run on the measured GPU is not extrapolated into on this one.
        measured=MeasuredPoints({}, profile.measured.not_run),
    )
