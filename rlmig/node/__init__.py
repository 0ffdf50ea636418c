"""The node agent: from a checkpoint to a running reconfiguration loop on a GPU node.

Usage::

    rlmig agent --checkpoint checkpoints/a100-80gb --workload workload.yaml --backend nvml \\
        --rates prometheus:http://localhost:8002/metrics --journal /var/lib/rlmig/journal.jsonl \\
        --metrics-port 9410
    rlmig agent --workload workload.yaml --backend fake --planner ilp --interval 0   # simulated load

Each interval the agent reads the tenants' request rates (`rates`), forecasts them, asks a planner
(the trained policy with its guard, or any `rlmig.planners` planner) with a `ClusterState` built from
the node as read back and the retraining state it tracks, and applies the decision through the
executor (`node`); it exports Prometheus metrics (`metrics`) and JSON-lines logs (`logs`). The loop and
the way it tracks retraining are in `rlmig.node.agent`; the Kubernetes side of the mig-parted path in
`rlmig.node.kube`. Deploying it: docs/deploy.md.
"""

from rlmig.node.agent import NodeAgent, RoundRecord
from rlmig.node.kube import GpuClients, KubeClient, KubeError, MigManagerPublisher, PodDeviceHolders
from rlmig.node.logs import JsonFormatter, event, setup_logging
from rlmig.node.metrics import AgentMetrics, MetricsServer
from rlmig.node.node import AgentStopped, ExecutorNode, MigPartedNode, Node, StopSignal, config_name
from rlmig.node.rates import (
    FileRates,
    PrometheusRates,
    PromqlRates,
    RateSource,
    RatesUnavailable,
    SimulatedRates,
    make_rate_source,
    parse_prometheus_text,
)

__all__ = [
    "AgentMetrics",
    "AgentStopped",
    "ExecutorNode",
    "FileRates",
    "GpuClients",
    "JsonFormatter",
    "KubeClient",
    "KubeError",
    "MetricsServer",
    "MigManagerPublisher",
    "MigPartedNode",
    "Node",
    "NodeAgent",
    "PodDeviceHolders",
    "PrometheusRates",
    "PromqlRates",
    "RateSource",
    "RatesUnavailable",
    "RoundRecord",
    "SimulatedRates",
    "StopSignal",
    "config_name",
    "event",
    "make_rate_source",
    "parse_prometheus_text",
    "setup_logging",
]
