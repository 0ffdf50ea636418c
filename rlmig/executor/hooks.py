"""Tenant hooks: how the executor stops a tenant's work on an instance (drain) and starts it (start).

Usage::

    >>> from rlmig.configuration import Owner
    >>> hooks = CommandHooks(drain="echo drain {tenant} {gpu} {instance}", start=None)
    >>> hooks.render(hooks.drain_cmd, 0, None, Owner("bert"))
    ['echo', 'drain', 'bert', '0', 'whole']

MIG does not know tenants; the hooks connect the executor to whatever serves them (a Kubernetes
controller, systemd units, a model server's admin API). A drain must return only once the tenant's
processes on that instance have exited: the nvml backend then refuses to destroy an instance that still
runs processes. Hooks must be idempotent, since recovery after a crash repeats an operation whose
completion was not journaled. `instance` is None for a tenant time-sharing a whole GPU.
"""

from __future__ import annotations

import shlex
import string
import subprocess
from typing import Protocol

from rlmig.configuration import Owner
from rlmig.errors import RlmigError
from rlmig.executor.planfile import SEGMENT_FIELDS, Segments
from rlmig.geometry import Instance


class TenantHooks(Protocol):
    """Drains and starts tenants."""

    def drain(self, gpu: int, instance: Instance | None, owner: Owner) -> None:
        """Stop `owner`'s work on the instance; return once its processes there have exited."""

    def start(self, gpu: int, instance: Instance | None, owner: Owner) -> None:
        """Start `owner`'s work on the instance (which has its compute instance)."""


class NoopHooks:
    """Hooks that do nothing: tenants are managed elsewhere (an instance still busy is not destroyed)."""

    def drain(self, gpu: int, instance: Instance | None, owner: Owner) -> None:
        return None

    def start(self, gpu: int, instance: Instance | None, owner: Owner) -> None:
        return None


class CommandHooks:
    """Hooks that run a command for each drain and start.

    The templates may use ``{gpu}``, ``{instance}`` (``3g.40gb@4``, or ``whole``), ``{profile}``,
    ``{profile_id}``, ``{start}``, ``{tenant}``, ``{role}``, and, for an inference instance whose plan
    says how to run it (`segments`, from the plan file), ``{batch}``, ``{processes}`` and
    ``{latency_ms}`` (empty otherwise); the command runs without a shell and a non-zero exit fails the
    operation.
    """

    FIELDS = ("gpu", "instance", "profile", "profile_id", "start", "tenant", "role", *SEGMENT_FIELDS)

    def __init__(
        self,
        drain: str | None,
        start: str | None,
        *,
        timeout_s: float = 300.0,
        segments: Segments | None = None,
    ) -> None:
        self.drain_cmd = drain
        self.start_cmd = start
        self.timeout_s = timeout_s
        self.segments = segments or {}
        for flag, template in (("--drain-cmd", drain), ("--start-cmd", start)):
            self._check(flag, template)

    def _check(self, flag: str, template: str | None) -> None:
        """Refuse, before any apply, a template that cannot be split or names a field there is not."""
        if template is None:
            return
        try:
            parts = shlex.split(template)
        except ValueError as exc:
            raise RlmigError(f"{flag} {template!r}: {exc}") from None
        if not parts:
            raise RlmigError(f"{flag} is empty")
        for part in parts:
            try:
                names = [name for _, name, _, _ in string.Formatter().parse(part) if name is not None]
            except ValueError as exc:
                raise RlmigError(f"{flag} {template!r}: {exc}") from None
            for name in names:
                if name.split(".")[0].split("[")[0] not in self.FIELDS:
                    known = ", ".join("{" + f + "}" for f in self.FIELDS)
                    raise RlmigError(f"{flag} {template!r}: unknown field {{{name}}} (known: {known})")

    def render(self, template: str | None, gpu: int, instance: Instance | None, owner: Owner) -> list[str]:
        """The argv of a hook command for one (GPU, instance, owner)."""
        if template is None:
            return []
        segment = self.segments.get((gpu, instance), {}) if instance and owner.role == "inference" else {}
        fields = {
            "gpu": gpu,
            "instance": str(instance) if instance else "whole",
            "profile": instance.profile.name if instance else "",
            "profile_id": instance.profile.id if instance else "",
            "start": instance.start if instance else "",
            "tenant": owner.tenant,
            "role": owner.role,
            **{key: segment.get(key, "") for key in SEGMENT_FIELDS},
        }
        try:
            return [part.format(**fields) for part in shlex.split(template)]
        except (KeyError, IndexError, ValueError) as exc:
            raise RlmigError(f"hook command {template!r}: {exc}") from None

    def _run(self, argv: list[str]) -> None:
        if not argv:
            return
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise RlmigError(f"hook {shlex.join(argv)}: {exc}") from None
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            raise RlmigError(
                f"hook {shlex.join(argv)} exited {done.returncode}" + (f": {why[-1]}" if why else "")
            )

    def drain(self, gpu: int, instance: Instance | None, owner: Owner) -> None:
        self._run(self.render(self.drain_cmd, gpu, instance, owner))

    def start(self, gpu: int, instance: Instance | None, owner: Owner) -> None:
        self._run(self.render(self.start_cmd, gpu, instance, owner))
