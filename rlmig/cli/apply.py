"""``rlmig apply``: apply a plan (``rlmig plan --json`` output) to a node's GPUs.

Usage::

    rlmig apply PLAN.json --backend fake --current CURRENT.json --dry-run   # operations, nvidia-smi
    rlmig apply PLAN.json --backend nvml --journal /var/lib/rlmig/journal.jsonl --current CURRENT.json
    rlmig apply PLAN.json --backend mig-parted --mig-parted-file mig.yaml --node gpu-node-1

Backends: ``fake`` applies to an in-memory node (empty GPUs, or ``--current``) through the same NVML code
path as ``nvml``, which applies to this machine's GPUs (as root) with explicit placements, touching only
the instances that change; ``mig-parted`` writes the nvidia-mig-parted config instead (and prints the GPU
Operator node label), which rebuilds every GPU whose layout changed. ``--current`` says which tenant runs
on which instance (NVML does not know tenants); the layout always comes from the node. Errors are one
line, exit code 2 (see `rlmig.cli.main`); a failed apply also prints where the node was left.
"""

from __future__ import annotations

import json

import click

from rlmig.configuration import Configuration
from rlmig.errors import RlmigError
from rlmig.executor import (
    ApplyError,
    CommandHooks,
    Executor,
    FakeNvml,
    FakeTenantHooks,
    MigPartedBackend,
    NvmlBackend,
    Transition,
    load_configuration,
)
from rlmig.executor.hooks import TenantHooks
from rlmig.executor.planfile import Segments


def make_fake(target: Configuration, current: Configuration | None) -> FakeNvml:
    """The fake node the ``fake`` backend applies to: `current`, or empty MIG-enabled GPUs."""
    count = max(len(target.gpus), len(current.gpus) if current else 0)
    if current is None:
        return FakeNvml(target.gpu, count)
    return FakeNvml.from_configuration(current, count)


def _print_plan(plan: Transition, title: str = "plan") -> None:
    click.echo(f"{title}: {plan.summary()}")
    for line in str(plan).splitlines():
        click.echo(f"  {line}")


def _print_state(config: Configuration | None, title: str) -> None:
    if config is None:
        return
    click.echo(f"{title}:")
    for line in str(config).splitlines():
        click.echo(f"  {line}")


@click.command("apply")
@click.argument("plan_file", metavar="PLAN.json", type=click.Path(dir_okay=False))
@click.option(
    "--backend",
    type=click.Choice(["fake", "nvml", "mig-parted"]),
    required=True,
    help="fake: an in-memory node; nvml: this machine's GPUs; mig-parted: write a nvidia-mig-parted config.",
)
@click.option("--dry-run", is_flag=True, help="Print the operations and nvidia-smi commands; change nothing.")
@click.option("--journal", "journal_path", type=click.Path(dir_okay=False), help="Journal file (JSON lines).")
@click.option(
    "--current",
    "current_file",
    type=click.Path(dir_okay=False),
    help="The node's configuration now, in the same format (fake: its start; nvml: who runs where).",
)
@click.option(
    "--allow-mode-change", is_flag=True, help="Allow MIG mode changes (A100/A30: wait for a GPU reset)."
)
@click.option("--drain-cmd", help="nvml: command draining a tenant ({gpu} {instance} {tenant} {role} ...).")
@click.option("--start-cmd", help="nvml: command starting a tenant (same fields as --drain-cmd).")
@click.option(
    "--mig-parted-file", type=click.Path(dir_okay=False), help="mig-parted: where to write the config."
)
@click.option("--config-name", default="rlmig", show_default=True, help="mig-parted: the config's name.")
@click.option("--node", help="mig-parted: the Kubernetes node to label nvidia.com/mig.config.")
def apply_command(
    plan_file: str,
    backend: str,
    dry_run: bool,
    journal_path: str | None,
    current_file: str | None,
    allow_mode_change: bool,
    drain_cmd: str | None,
    start_cmd: str | None,
    mig_parted_file: str | None,
    config_name: str,
    node: str | None,
) -> None:
    """Apply PLAN.json to the node's GPUs and print the operations."""
    hook_flags = [flag for flag, value in (("--drain-cmd", drain_cmd), ("--start-cmd", start_cmd)) if value]
    if hook_flags and backend != "nvml":  # the fake runs fake tenants, mig-parted drains nothing: say so
        verb = "is" if len(hook_flags) == 1 else "are"
        raise RlmigError(f"{' and '.join(hook_flags)} {verb} for the nvml backend, not {backend}")
    segments: Segments = {}  # how the plan runs each inference instance, for the start hook
    target = load_configuration(plan_file, segments=segments)
    current = load_configuration(current_file) if current_file else None
    if current is not None and current.gpu != target.gpu:
        raise RlmigError(f"--current is for {current.gpu.name} GPUs, the plan for {target.gpu.name}")
    if backend == "mig-parted":
        _mig_parted(target, current, dry_run, mig_parted_file, config_name, node)
        return
    if backend == "fake":
        fake = make_fake(target, current)
        nvml_backend = NvmlBackend(target.gpu, fake, allow_mode_change=allow_mode_change)
        hooks: TenantHooks = FakeTenantHooks(fake)
    else:
        nvml_backend = NvmlBackend(target.gpu, allow_mode_change=allow_mode_change)
        hooks = CommandHooks(drain_cmd, start_cmd, segments=segments)
    with nvml_backend:
        executor = Executor(nvml_backend, journal=journal_path, hooks=hooks, owners=current)
        state, now, _ = executor.observe()
        where = "fake node" if backend == "fake" else "node"
        click.echo(
            f"{where}: {len(state.gpus)} x {target.gpu.name}; "
            f"target: {len(target.gpus)} GPUs from {plan_file}"
        )
        if current is not None and [g.layout for g in now.gpus[: len(current.gpus)]] != [
            g.layout for g in current.gpus
        ]:
            click.echo("note: the node's layouts differ from --current; planning from the node as read back")
        interrupted = executor.journal.last_run(target.gpu) if executor.journal else None
        if interrupted is not None and not interrupted.finished:
            click.echo(
                f"note: the journal's last run ({interrupted.phase}) was interrupted; "
                "its owners are used and the node is reconciled from its state as read back"
            )
        plan = executor.plan(target)
        _print_plan(plan)
        if plan.mode_changes and not allow_mode_change:
            click.echo("note: MIG mode changes need --allow-mode-change")
        if dry_run:
            click.echo("nvidia-smi commands (as root):")
            for line in plan.nvidia_smi(state.ids()):
                click.echo(f"  {line}")
            return
        try:
            result = executor.apply(target)
        except ApplyError as exc:
            _print_state(exc.result.state, f"the node was left {exc.result.status.replace('_', ' ')}")
            raise
        click.echo(result.summary())
        for note in result.pending.values():
            click.echo(f"  {note}")
        _print_state(result.state, "node")


def _mig_parted(
    target: Configuration,
    current: Configuration | None,
    dry_run: bool,
    path: str | None,
    config_name: str,
    node: str | None,
) -> None:
    backend = MigPartedBackend(None if dry_run else path, config_name=config_name, node=node, current=current)
    plan = backend.plan(target)
    _print_plan(
        plan,
        "plan (nvidia-mig-parted rebuilds every GPU whose profile counts change, placing instances itself)",
    )
    result = backend.apply(target)
    if path is None or dry_run:
        how = f"nvidia-mig-parted apply -f {path or 'FILE'} -c {config_name}"
        click.echo(
            f"nvidia-mig-parted config ({'not written: dry run; ' if path else ''}apply it with: {how}):"
        )
        click.echo(backend.config_text(target).rstrip())
    for note in result.notes:
        click.echo(note)
    if node is not None:
        patch = json.dumps(backend.label_patch(), separators=(",", ":"))
        click.echo(f"or, as a patch: kubectl patch node {node} --type merge -p '{patch}'")


__all__ = ["apply_command", "make_fake"]
