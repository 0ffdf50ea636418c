"""nvidia-mig-parted configs: export a multi-GPU configuration, and read one back.

The format (NVIDIA/mig-parted, ``version: v1``)::

    version: v1
    mig-configs:
      rlmig:
        - devices: [0]
          mig-enabled: true
          mig-devices: {"4g.40gb": 1, "3g.40gb": 1}
        - devices: [1]
          mig-enabled: false

mig-parted names profile counts, not placements: `nvidia-mig-parted apply` destroys every instance
of a GPU whose layout differs and recreates them in its own order. Reading a config back therefore
places the counts with `GpuModel.layout_for_counts`. A GPU with MIG disabled is ``None`` here.

Usage::

    >>> from rlmig.geometry import gpu_model
    >>> gpu = gpu_model("A100-80GB")
    >>> doc = to_mig_parted([gpu.layout(["4g.40gb@0", "3g.40gb@4"]), None])
    >>> [str(lay) for lay in from_mig_parted(doc, gpu).values()]
    ['4g.40gb@0 3g.40gb@4', 'None']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from rlmig.errors import ConfigError, RlmigError
from rlmig.geometry import GpuModel, Layout
from rlmig.inputs import load_yaml

DEFAULT_CONFIG_NAME = "rlmig"

MigConfig = Mapping[int, Layout | None]
"""A configuration of a node's GPUs for mig-parted: GPU index -> layout, or None for MIG disabled."""


def to_mig_parted(
    layouts: Sequence[Layout | None] | MigConfig, config_name: str = DEFAULT_CONFIG_NAME
) -> dict[str, Any]:
    """A nvidia-mig-parted v1 document with one device entry per GPU."""
    by_index = dict(layouts) if isinstance(layouts, Mapping) else dict(enumerate(layouts))
    if not by_index:
        raise RlmigError("a mig-parted config needs at least one GPU")
    entries: list[dict[str, Any]] = []
    for index in sorted(by_index):
        layout = by_index[index]
        if layout is None:
            entries.append({"devices": [index], "mig-enabled": False})
            continue
        counts = {p.name: n for p, n in sorted(layout.counts().items(), key=lambda kv: -kv[0].compute)}
        entries.append({"devices": [index], "mig-enabled": True, "mig-devices": counts})
    return {"version": "v1", "mig-configs": {config_name: entries}}


def dump_mig_parted(
    layouts: Sequence[Layout | None] | MigConfig, config_name: str = DEFAULT_CONFIG_NAME
) -> str:
    """The nvidia-mig-parted v1 config as YAML text."""
    return yaml.safe_dump(to_mig_parted(layouts, config_name), sort_keys=False)


def from_mig_parted(
    doc: Mapping[str, Any] | str,
    gpu: GpuModel,
    gpu_count: int | None = None,
    config_name: str | None = None,
    device_id: str | None = None,
) -> dict[int, Layout | None]:
    """Read a mig-parted v1 config back into GPU index -> layout (None where MIG is disabled).

    ``devices: all`` needs `gpu_count`. GPUs the config does not name are absent from the result, as
    mig-parted leaves them untouched. `config_name` may be omitted when the file holds one config. An
    entry with a ``device-filter`` applies only to GPUs whose PCI device ID (`device_id`, e.g.
    ``0x20B210DE``) it lists, so such an entry needs `device_id`. What mig-parted's own parser
    (api/spec/v1) rejects is rejected too: unknown fields, an empty config, an entry without `devices`
    or `mig-enabled`, `mig-enabled: true` without `mig-devices`, `mig-devices` on a GPU with MIG
    disabled, and counts that are all zero. Raises `ConfigError` with the entry and field at fault.
    """
    if isinstance(doc, str):
        doc = load_yaml(doc, "mig-parted config")
    if not isinstance(doc, Mapping):
        raise ConfigError("mig-parted config must be a mapping with 'version' and 'mig-configs'")
    if doc.get("version") != "v1":
        raise ConfigError(f"mig-parted config: version must be 'v1', not {doc.get('version')!r}")
    for key in doc:
        if key not in ("version", "mig-configs"):
            raise ConfigError(f"mig-parted config: unexpected field {key!r}")
    configs = doc.get("mig-configs")
    if not isinstance(configs, Mapping) or not configs:
        raise ConfigError("mig-parted config: 'mig-configs' must be a non-empty mapping")
    for name, listed in configs.items():
        if isinstance(listed, list) and not listed:
            raise ConfigError(f"mig-configs.{name}: at least one device entry is required")
    if config_name is None:
        if len(configs) != 1:
            raise ConfigError(f"mig-parted config holds several configs; name one of: {', '.join(configs)}")
        config_name = next(iter(configs))
    if config_name not in configs:
        raise ConfigError(f"mig-parted config has no config {config_name!r} (has: {', '.join(configs)})")
    entries = configs[config_name]
    if not isinstance(entries, list):
        raise ConfigError(f"mig-configs.{config_name} must be a list of device entries")

    result: dict[int, Layout | None] = {}
    for n, entry in enumerate(entries):
        where = f"mig-configs.{config_name}[{n}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where} must be a mapping")
        for key in entry:
            if key not in ("device-filter", "devices", "mig-enabled", "mig-devices"):
                raise ConfigError(f"{where}: unexpected field {key!r}")
        if "devices" not in entry:
            raise ConfigError(f"{where}: missing required field 'devices'")
        devices = _devices(entry.get("devices"), gpu_count, where)
        enabled = entry.get("mig-enabled")
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}.mig-enabled must be true or false")
        if "device-filter" in entry and not _filter_matches(entry["device-filter"], device_id, where):
            continue  # for GPUs of another model: mig-parted skips it on this node
        layout: Layout | None = None
        if not enabled and entry.get("mig-devices"):
            raise ConfigError(f"{where}: mig-devices given while mig-enabled is false")
        if enabled:
            if entry.get("mig-devices") is None:
                raise ConfigError(f"{where}: mig-devices is required when mig-enabled is true")
            mig_devices = entry["mig-devices"]
            if not isinstance(mig_devices, Mapping):
                raise ConfigError(f"{where}.mig-devices must map profile names to counts")
            counts = {}
            for name, count in mig_devices.items():
                if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                    raise ConfigError(f"{where}.mig-devices.{name}: count must be a non-negative integer")
                try:
                    counts[gpu.profile(str(name))] = count
                except RlmigError as exc:
                    raise ConfigError(f"{where}.mig-devices: {exc}") from None
            if counts and not any(counts.values()):
                raise ConfigError(f"{where}.mig-devices: all counts are 0")
            try:
                layout = gpu.layout_for_counts(counts)
            except RlmigError as exc:
                raise ConfigError(f"{where}.mig-devices: {exc}") from None
        for index in devices:
            if index in result:
                raise ConfigError(f"{where}.devices: GPU {index} is already configured by an earlier entry")
            result[index] = layout
    return result


def _filter_matches(value: object, device_id: str | None, where: str) -> bool:
    """Whether an entry's device-filter (a PCI device ID, or a list of them) names this node's GPUs."""
    ids = [value] if isinstance(value, str) else value
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ConfigError(f"{where}.device-filter must be a device ID or a list of them")
    if device_id is None:
        raise ConfigError(f"{where} has a device-filter: the GPUs' PCI device ID must be given to read it")
    return device_id.lower() in {i.lower() for i in ids}


def _devices(value: object, gpu_count: int | None, where: str) -> list[int]:
    if value == "all":
        if gpu_count is None:
            raise ConfigError(f"{where}.devices is 'all': the GPU count must be given")
        return list(range(gpu_count))
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}.devices must be 'all' or a non-empty list of GPU indices")
    for index in value:
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ConfigError(f"{where}.devices: {index!r} is not a GPU index")
        if gpu_count is not None and index >= gpu_count:
            raise ConfigError(f"{where}.devices: GPU {index} does not exist (the node has {gpu_count})")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}.devices lists a GPU twice")
    return list(value)
