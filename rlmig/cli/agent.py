"""``rlmig agent``: the node agent, a reconfiguration loop on a GPU node (see `rlmig.node`).

Usage::

    rlmig agent --checkpoint checkpoints/a100-80gb --workload workload.yaml --backend nvml \\
        --rates promql:http://prometheus.monitoring:9090 --journal /var/lib/rlmig/journal.jsonl \\
        --metrics-port 9410 --drain-cmd '...' --start-cmd '...'
    rlmig agent --workload workload.yaml --backend fake --planner ilp --interval 0     # simulated load
    rlmig agent --workload workload.yaml --backend mig-parted --node "$NODE_NAME" \\
        --mig-config-map gpu-operator/rlmig-mig-parted-config --rates file:/run/rates.csv

Each round reads the rates, forecasts, asks the planner (``--planner``, the checkpoint's policy with its
guard by default) and applies the decision through the backend: ``nvml`` (this node's GPUs, as root,
explicit placements, journaled), ``fake`` (an in-memory node; its rates default to the workload's own,
``--rates simulated``, and ``--interval 0`` runs them back to back) or ``mig-parted`` (writes the
nvidia-mig-parted config and, with ``--node``, hands it to the GPU Operator's mig-manager through the
node label). Logs are JSON lines on stderr; ``--metrics-port`` serves Prometheus metrics. SIGTERM ends
the loop after the round in flight (exit 0); an apply in flight gets ``--shutdown-grace`` seconds, then
stops between two operations with its journal run open, which the next start recovers. Bad input is one
line, exit code 2 (see `rlmig.cli.main`).
"""

from __future__ import annotations

import logging
import shlex
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from rlmig.cli.common import SECONDS, make_planner_from_flags, rl_options
from rlmig.errors import RlmigError
from rlmig.workload import load_workload

_BACKENDS = ("nvml", "mig-parted", "fake")


@contextmanager
def _signals_stop(stop: Any) -> Iterator[None]:
    """SIGTERM and SIGINT request a stop while inside (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    for s in previous:
        signal.signal(s, lambda signum, frame: stop.request())
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _split_config_map(value: str | None) -> tuple[str, str] | None:
    if value is None:
        return None
    namespace, _, name = value.partition("/")
    if not namespace or not name:
        raise RlmigError(f"--mig-config-map must be NAMESPACE/NAME, got {value!r}")
    return namespace, name


@click.command("agent")
@click.option(
    "--workload",
    "workload_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="The workload: GPUs, interval, tenants, SLOs and retraining.",
)
@click.option(
    "--checkpoint",
    type=click.Path(file_okay=False),
    help="rl: the policy checkpoint folder (default: the shipped one for the workload's GPU model).",
)
@rl_options
@click.option(
    "--backend",
    type=click.Choice(_BACKENDS),
    required=True,
    help="nvml: this node's GPUs; mig-parted: via nvidia-mig-parted; fake: an in-memory node.",
)
@click.option(
    "--planner",
    "planner_name",
    default="rl",
    show_default=True,
    help="rl (the checkpoint, guarded), ilp, parva, greedy, static-best, ekya, static, as-is.",
)
@click.option(
    "--interval",
    "interval_s",
    type=SECONDS,
    default=None,
    help="Seconds between rounds [default: the workload's interval_s]; 0: back to back.",
)
@click.option("--once", is_flag=True, help="Run one round and exit.")
@click.option(
    "--rates",
    "rates_spec",
    default=None,
    help="promql:URL (a Prometheus server: the cluster's choice), prometheus:URL (one text-format "
    "endpoint), file:PATH or simulated [default with --backend fake: simulated].",
)
@click.option(
    "--rate-query",
    default=None,
    help="promql: the query, an instant vector of req/s per tenant; {label}, {metric} and {window} "
    "(the workload's interval, s) are filled in [default: sum by ({label}) (rate({metric}[{window}s]))].",
)
@click.option(
    "--rate-metric",
    default="nv_inference_request_success",
    show_default=True,
    help="prometheus: the metric (a counter of requests, or a gauge of req/s).",
)
@click.option(
    "--rate-label",
    default="model",
    show_default=True,
    help="prometheus: the label whose value is the tenant's name.",
)
@click.option(
    "--max-stale",
    "max_stale_s",
    type=SECONDS,
    default=None,
    help="Hold the last rates this long during an outage, then stop reconfiguring "
    "[default: 5 workload intervals].",
)
@click.option(
    "--forecaster", default="auto", show_default=True, help="Forecaster per tenant (rlmig.forecast)."
)
@click.option(
    "--time-limit", type=SECONDS, default=None, help="ilp: solver time limit per decision, seconds."
)
@click.option("--horizon", type=int, default=None, help="ilp: intervals planned ahead.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics on this port (/metrics, /healthz); 0: any free port.",
)
@click.option("--metrics-address", default="0.0.0.0", show_default=True, help="Address the metrics bind.")
@click.option(
    "--journal",
    "journal_path",
    type=click.Path(dir_okay=False),
    help="nvml, fake: the executor's journal (recovered at start).",
)
@click.option(
    "--downtime",
    "downtime_mode",
    type=click.Choice(["measured", "configured"]),
    default=None,
    help="The downtime a changed instance is accounted with: the wall time of the apply, or the "
    "workload's downtime_s [default: measured; configured with --backend fake].",
)
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where the agent keeps its tenants' retraining state, to go on from after a restart "
    "[default: beside --journal, as JOURNAL.state.json; none without --journal].",
)
@click.option(
    "--current",
    "current_file",
    type=click.Path(dir_okay=False),
    help="Who runs where now, as `rlmig plan --json` writes it (owners NVML cannot tell).",
)
@click.option("--drain-cmd", help="nvml: command draining a tenant ({gpu} {instance} {tenant} {role} ...).")
@click.option("--start-cmd", help="nvml: command starting a tenant (same fields as --drain-cmd).")
@click.option(
    "--allow-mode-change",
    is_flag=True,
    help="nvml, fake: allow MIG mode changes; without it the planners turn no GPU MIG off (nor on).",
)
@click.option(
    "--gpu-clients",
    type=click.Choice(["leave", "pause"]),
    default="leave",
    show_default=True,
    help="nvml: pause the GPU Operator's GPU clients (device plugin, GFD, DCGM, exporter) on --node around "
    "each MIG change and bring them back after, as mig-manager does (in-cluster; needs rights on nodes and "
    "pods).",
)
@click.option(
    "--busy-check",
    type=click.Choice(["processes", "pods"]),
    default="processes",
    show_default=True,
    help="nvml: before destroying an instance, check NVML's processes only, or also the MIG devices the "
    "node's pods hold (in-cluster; needs --node and the right to list pods).",
)
@click.option(
    "--post-apply-cmd",
    help="nvml: a command run after each apply that changed MIG instances, before the GPU clients come back "
    "(no shell; for example 'nvidia-ctk cdi generate --output=/var/run/cdi/nvidia.yaml').",
)
@click.option("--mig-parted-file", type=click.Path(dir_okay=False), help="mig-parted: write the config here.")
@click.option(
    "--node",
    "node_name",
    envvar="NODE_NAME",
    help="mig-parted: label this Kubernetes node nvidia.com/mig.config (in-cluster) [env NODE_NAME].",
)
@click.option(
    "--mig-config-map", help="mig-parted: NAMESPACE/NAME of mig-manager's config ConfigMap to add to."
)
@click.option(
    "--mig-config-delay",
    type=SECONDS,
    default=90.0,
    show_default=True,
    help="mig-parted: seconds between updating the ConfigMap and labelling the node.",
)
@click.option(
    "--shutdown-grace",
    type=SECONDS,
    default=30.0,
    show_default=True,
    help="On SIGTERM, seconds an apply in flight may still run before stopping between operations.",
)
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info", show_default=True
)
def agent_command(
    workload_file: str,
    checkpoint: str | None,
    no_guard: bool,
    guard_with: str | None,
    guard_horizon: int | None,
    fallback: str | None,
    backend: str,
    planner_name: str,
    interval_s: float | None,
    once: bool,
    rates_spec: str | None,
    rate_query: str | None,
    rate_metric: str,
    rate_label: str,
    max_stale_s: float | None,
    forecaster: str,
    time_limit: float | None,
    horizon: int | None,
    metrics_port: int | None,
    metrics_address: str,
    journal_path: str | None,
    downtime_mode: str | None,
    state_file: str | None,
    current_file: str | None,
    drain_cmd: str | None,
    start_cmd: str | None,
    allow_mode_change: bool,
    gpu_clients: str,
    busy_check: str,
    post_apply_cmd: str | None,
    mig_parted_file: str | None,
    node_name: str | None,
    mig_config_map: str | None,
    mig_config_delay: float,
    shutdown_grace: float,
    log_level: str,
) -> None:
    """Run the node agent: observe rates, forecast, plan and reconfigure the node's MIG GPUs."""
    from rlmig.node import (
        AgentMetrics,
        MetricsServer,
        NodeAgent,
        StopSignal,
        event,
        make_rate_source,
        setup_logging,
    )

    workload = load_workload(workload_file)
    rates_spec = rates_spec or ("simulated" if backend == "fake" else None)
    if rates_spec is None:
        raise RlmigError(f"--backend {backend} needs --rates promql:URL, prometheus:URL or file:PATH")
    if rates_spec == "simulated" and backend != "fake":
        raise RlmigError("--rates simulated replays the workload's own load: only with --backend fake")
    if interval_s == 0 and rates_spec != "simulated":
        raise RlmigError("--interval 0 runs rounds back to back: only with --rates simulated")
    planner = make_planner_from_flags(
        planner_name,
        time_limit,
        horizon,
        checkpoint,
        no_guard=no_guard,
        fallback=fallback,
        guard_with=guard_with,
        guard_horizon=guard_horizon,
        mode_changes=allow_mode_change or backend == "mig-parted",  # mig-manager changes modes itself
    )
    query = {"query": rate_query} if rate_query else {}
    rates = make_rate_source(rates_spec, workload, metric=rate_metric, label=rate_label, **query)
    stop = StopSignal(shutdown_grace)
    node = _node(
        backend,
        workload,
        stop,
        journal_path,
        current_file,
        drain_cmd,
        start_cmd,
        allow_mode_change,
        mig_parted_file,
        node_name,
        _split_config_map(mig_config_map),
        mig_config_delay,
        gpu_clients=gpu_clients,
        post_apply_cmd=post_apply_cmd,
        busy_check=busy_check,
    )

    handler = setup_logging(log_level)
    server = None
    try:
        metrics = AgentMetrics()
        if metrics_port is not None:
            try:
                server = MetricsServer(metrics.registry, metrics_port, metrics_address).start()
            except OSError as exc:
                raise RlmigError(f"cannot serve metrics on {metrics_address}:{metrics_port}: {exc}") from None
            event(logging.getLogger("rlmig.node"), "metrics", address=metrics_address, port=server.port)
        agent = NodeAgent(
            workload,
            planner,
            node,
            rates,
            interval_s=interval_s,
            forecaster=forecaster,
            max_stale_s=max_stale_s,
            metrics=metrics,
            stop=stop,
            state_path=state_file
            or (Path(journal_path).with_suffix(".state.json") if journal_path else None),
            measure_downtime=(downtime_mode or ("configured" if backend == "fake" else "measured"))
            == "measured",
        )
        with _signals_stop(stop):
            agent.run(once=once)
    finally:
        if server is not None:
            server.stop()
        logger = logging.getLogger("rlmig")
        logger.removeHandler(handler)
        logger.propagate = True
        close = getattr(node, "close", None)
        if close is not None:
            close()


def _node(
    backend: str,
    workload: Any,
    stop: Any,
    journal_path: str | None,
    current_file: str | None,
    drain_cmd: str | None,
    start_cmd: str | None,
    allow_mode_change: bool,
    mig_parted_file: str | None,
    node_name: str | None,
    config_map: tuple[str, str] | None,
    delay_s: float,
    *,
    gpu_clients: str = "leave",
    post_apply_cmd: str | None = None,
    busy_check: str = "processes",
) -> Any:
    from rlmig.executor import CommandHooks, FakeNvml, FakeTenantHooks, NvmlBackend, load_configuration
    from rlmig.node import (
        ExecutorNode,
        GpuClients,
        KubeClient,
        MigManagerPublisher,
        MigPartedNode,
        PodDeviceHolders,
    )

    current = load_configuration(current_file) if current_file else None
    if current is not None and current.gpu != workload.gpu:
        raise RlmigError(f"--current is for {current.gpu.name} GPUs, the workload for {workload.gpu.name}")
    if backend == "mig-parted":
        nvml_only = gpu_clients != "leave" or post_apply_cmd or busy_check != "processes"
        if journal_path or drain_cmd or start_cmd or nvml_only:
            raise RlmigError(
                "--journal, --drain-cmd, --start-cmd, --gpu-clients, --busy-check and --post-apply-cmd are "
                "for the nvml and fake backends (mig-manager does its own)"
            )
        publisher = None
        if node_name:
            publisher = MigManagerPublisher(
                KubeClient.in_cluster(), node_name, config_map=config_map, delay_s=delay_s, stop=stop.event
            )
        elif config_map:
            raise RlmigError("--mig-config-map needs --node (or NODE_NAME)")
        return MigPartedNode(
            workload.gpu, workload.gpu_count, path=mig_parted_file, publisher=publisher, current=current
        )
    if mig_parted_file or config_map:
        raise RlmigError("--mig-parted-file and --mig-config-map are for the mig-parted backend")
    if journal_path:
        try:
            Path(journal_path).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RlmigError(f"--journal {journal_path}: {exc.strerror or exc}") from None
    if backend == "fake":
        ignored = [flag for flag, value in (("--drain-cmd", drain_cmd), ("--start-cmd", start_cmd)) if value]
        if ignored:  # the fake node runs its own tenant processes: say so rather than ignore them
            verb = "is" if len(ignored) == 1 else "are"
            raise RlmigError(f"{' and '.join(ignored)} {verb} for the nvml backend, not fake")
        fake = (
            FakeNvml.from_configuration(current, workload.gpu_count)
            if current is not None
            else FakeNvml(workload.gpu, workload.gpu_count)
        )
        nvml = NvmlBackend(workload.gpu, fake, allow_mode_change=allow_mode_change)
        hooks: Any = FakeTenantHooks(fake)
    else:
        nvml = NvmlBackend(workload.gpu, allow_mode_change=allow_mode_change)
        hooks = CommandHooks(drain_cmd, start_cmd)
    clients = holders = None
    if (gpu_clients == "pause" or busy_check == "pods") and not node_name:
        raise RlmigError("--gpu-clients pause and --busy-check pods need --node (or NODE_NAME)")
    if gpu_clients == "pause":
        clients = GpuClients(KubeClient.in_cluster(), node_name, stop=stop.event)
    if busy_check == "pods":
        holders = PodDeviceHolders(KubeClient.in_cluster(), node_name)
    post_apply = shlex.split(post_apply_cmd) if post_apply_cmd else None
    return ExecutorNode(
        nvml.open(),
        journal=journal_path,
        hooks=hooks,
        owners=current,
        stop=stop,
        name=backend,
        gpu_clients=clients,
        post_apply=post_apply,
        device_holders=holders,
    )


__all__ = ["agent_command"]
