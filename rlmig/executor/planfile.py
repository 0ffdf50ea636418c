"""Read the JSON that ``rlmig plan --json`` writes into a `Configuration`, with one-line errors.

Usage::

    >>> doc = {"gpu_model": "A100-80GB", "gpus": [{"index": 0, "mig_enabled": True, "time_shared": [],
    ...        "instances": [{"profile": "3g.40gb", "start": 4, "tenant": "bert", "role": "inference"}]}]}
    >>> print(parse_configuration(doc))
    GPU 0: 3g.40gb@4=bert
    >>> parse_configuration({"gpu_model": "A100-80GB", "gpus": [{"index": 0, "instances": [
    ...     {"profile": "3g.40gb", "start": 2, "tenant": None, "role": "idle"}]}]})
    Traceback (most recent call last):
    ...
    rlmig.errors.ConfigError: plan: gpus[0]: invalid layout on A100-80GB: 3g.40gb cannot start at memory ...

The format::

    {"gpu_model": "A100-80GB", "gpus_used": 1, "optimal": true, "gap": 0.0, "solve_seconds": 0.1, "unmet": {},
     "gpus": [{"index": 0, "mig_enabled": true, "time_shared": [],
               "instances": [{"profile": "3g.40gb", "start": 4, "tenant": "bert", "role": "inference",
                              "throughput": 812.0}]}]}

GPUs are listed in index order, each once; ``mig_enabled`` defaults to true and ``time_shared`` to none.
A MIG-disabled GPU has no instances and lists the tenants that time-share it. ``role`` is inference,
retraining or idle (``tenant`` null). A profile is a name as shown or an NVML profile ID. The keys the
executor does not need (``gpus_used``, ``unmet``, ``optimal``, ``gap``, ``solve_seconds``, ``throughput``) are
type-checked when present. `configuration_json` writes the same format back.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rlmig.configuration import ROLES, Configuration, GpuConfig, Owner
from rlmig.errors import ConfigError, RlmigError
from rlmig.geometry import Instance, gpu_model
from rlmig.inputs import load_json, read_text

SEGMENT_FIELDS = ("batch", "processes", "latency_ms")
"""How to run an inference instance, as a plan gives it (what the inference server must be set to)."""
Segments = dict[tuple[int, Instance], dict[str, Any]]
"""Per (GPU index, instance) of a plan, its `SEGMENT_FIELDS` (inference instances that have them)."""


def load_configuration(
    path: str | Path, what: str | None = None, segments: Segments | None = None
) -> Configuration:
    """Read a plan file (or a current-configuration file in the same format); `segments`, when given,
    receives each inference instance's batch size, MPS processes and latency."""
    path = Path(path)
    what = what or path.name
    doc = load_json(read_text(path, "plan file"), what)
    return parse_configuration(doc, what, segments)


def configuration_json(config: Configuration) -> dict[str, Any]:
    """A configuration in the plan file format (without the planner's figures)."""
    return {"gpu_model": config.gpu.name, "gpus": config.to_json()}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


def parse_configuration(doc: object, what: str = "plan", segments: Segments | None = None) -> Configuration:
    """Validate a plan document and build its configuration; `ConfigError` names the field at fault."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{what}: must be a JSON object with 'gpu_model' and 'gpus'")
    name = doc.get("gpu_model")
    if not isinstance(name, str):
        raise ConfigError(f"{what}: 'gpu_model' must be a GPU model name, for example A100-80GB")
    try:
        gpu = gpu_model(name)
    except RlmigError as exc:
        raise ConfigError(f"{what}: gpu_model: {exc}") from None
    for key, check, kind in (
        ("gpus_used", _is_int, "an integer"),
        ("optimal", lambda v: isinstance(v, bool), "true or false"),
        ("solve_seconds", _is_number, "a number"),
        ("gap", lambda v: v is None or _is_number(v), "a number or null"),
        ("unmet", lambda v: isinstance(v, dict), "an object"),
    ):
        if key in doc and not check(doc[key]):
            raise ConfigError(f"{what}: '{key}' must be {kind}")
    gpus = doc.get("gpus")
    if not isinstance(gpus, list):
        raise ConfigError(f"{what}: 'gpus' must be a list of GPUs")
    found: Segments = {} if segments is None else segments
    return Configuration(
        gpu, tuple(_gpu_config(gpu, entry, n, f"{what}: gpus[{n}]", found) for n, entry in enumerate(gpus))
    )


def _gpu_config(gpu: Any, entry: object, n: int, where: str, segments: Segments) -> GpuConfig:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be an object with 'index' and 'instances'")
    index = entry.get("index", n)
    if not _is_int(index) or index != n:
        raise ConfigError(
            f"{where}.index: expected {n} (GPUs are listed in index order, each once), got {index!r}"
        )
    enabled = entry.get("mig_enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.mig_enabled: must be true or false")
    shared = entry.get("time_shared", [])
    if not isinstance(shared, list) or not all(isinstance(t, str) and t.strip() for t in shared):
        raise ConfigError(f"{where}.time_shared: must be a list of tenant names")
    items = entry.get("instances", [])
    if not isinstance(items, list):
        raise ConfigError(f"{where}.instances: must be a list")
    if not enabled:
        if items:
            raise ConfigError(f"{where}: a GPU with MIG disabled has no instances")
        try:
            return GpuConfig.whole(gpu, [t.strip() for t in shared])
        except RlmigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if shared:
        raise ConfigError(f"{where}.time_shared: only a GPU with MIG disabled is time-shared")
    owned: dict[Instance, Owner | None] = {}
    for k, item in enumerate(items):
        inst, owner = _instance(gpu, item, f"{where}.instances[{k}]")
        if inst in owned:
            raise ConfigError(f"{where}.instances[{k}]: {inst} is listed twice")
        owned[inst] = owner
        given = {key: item[key] for key in SEGMENT_FIELDS if key in item}  # type: ignore[index, operator]
        if given:
            segments[n, inst] = given
    try:
        layout = gpu.layout(owned)
    except RlmigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return GpuConfig(layout, tuple(owned[i] for i in layout.instances))


def _instance(gpu: Any, item: object, where: str) -> tuple[Instance, Owner | None]:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: must be an object with 'profile' and 'start'")
    profile, start = item.get("profile"), item.get("start")
    if not isinstance(profile, str) and not _is_int(profile):
        raise ConfigError(f"{where}.profile: must be a profile name or NVML profile ID")
    if not _is_int(start) or start < 0:
        raise ConfigError(f"{where}.start: must be a memory slot (a non-negative integer)")
    try:
        inst = Instance(gpu.profile(profile), start)
    except RlmigError as exc:
        raise ConfigError(f"{where}.profile: {exc}") from None
    tenant, role = item.get("tenant"), item.get("role", "inference" if item.get("tenant") else "idle")
    if "throughput" in item and not _is_number(item["throughput"]):
        raise ConfigError(f"{where}.throughput: must be a number")
    for key in ("batch", "processes"):
        if key in item and not (_is_int(item[key]) and item[key] >= 1):
            raise ConfigError(f"{where}.{key}: must be a positive integer")
    if "latency_ms" in item and not (_is_number(item["latency_ms"]) and item["latency_ms"] > 0):
        raise ConfigError(f"{where}.latency_ms: must be a positive number")
    if "measured" in item and not isinstance(item["measured"], bool):
        raise ConfigError(f"{where}.measured: must be true or false")
    if role == "idle":
        if tenant is not None:
            raise ConfigError(f"{where}: an idle instance has tenant null, not {tenant!r}")
        return inst, None
    if role not in ROLES:
        raise ConfigError(f"{where}.role: must be one of inference, retraining, idle; got {role!r}")
    if not isinstance(tenant, str) or not tenant.strip():
        raise ConfigError(f"{where}.tenant: a {role} instance names its tenant")
    return inst, Owner(tenant.strip(), role)
