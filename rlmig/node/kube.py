"""The Kubernetes side of the mig-parted path: publish a config for the GPU Operator, label the node.

Usage (inside a pod whose service account may get/patch nodes and get/update the ConfigMap)::

    from rlmig.node.kube import KubeClient, MigManagerPublisher

    publisher = MigManagerPublisher(KubeClient.in_cluster(), node="gpu-node-1",
                                    config_map=("gpu-operator", "rlmig-mig-parted-config"))
    publisher.publish("rlmig-3f2a9c01d4", mig_parted_yaml_text)   # ConfigMap entry, then the label
    publisher.state()                                            # nvidia.com/mig.config.state

The GPU Operator's mig-manager applies the nvidia-mig-parted config named by the node label
``nvidia.com/mig.config``, read from its config file (a ConfigMap the ClusterPolicy names in
``migManager.config.name``), and only when the label's value changes. So each distinct target gets a
config of its own, named after its content, added to that ConfigMap (read, modify, replace with the
resourceVersion read: agents on several nodes do not overwrite each other's entries); the label is set
once the kubelet has had time to refresh the mounted ConfigMap (`delay_s`). A retry after mig-manager
reported ``failed`` needs a new label value: `publish` takes any name.

`KubeClient` is a minimal in-cluster REST client (the service account's token and CA, urllib): no
dependency on the kubernetes package.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from rlmig.errors import RlmigError
from rlmig.geometry import Profile
from rlmig.inputs import load_yaml

CONFIG_LABEL = "nvidia.com/mig.config"
STATE_LABEL = "nvidia.com/mig.config.state"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(RlmigError):
    """A Kubernetes API call failed; `status` is the HTTP status (0 when no answer came)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class KubeClient:
    """Just enough of the Kubernetes API: GET, PUT and merge PATCH of JSON objects."""

    def __init__(
        self, server: str, token: str | None = None, ca_file: str | None = None, *, timeout_s: float = 10.0
    ) -> None:
        self.server = server.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self.context = None
        if server.startswith("https"):
            try:
                self.context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise RlmigError(f"cannot read the cluster's CA {ca_file}: {exc}") from None

    @classmethod
    def in_cluster(cls, account: Path = SERVICE_ACCOUNT) -> KubeClient:
        """The client of the pod's service account."""
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if not host or not port:
            raise RlmigError("not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set)")
        try:
            token = (account / "token").read_text().strip()
        except OSError as exc:
            raise RlmigError(f"cannot read the service account token: {exc.strerror or exc}") from None
        host = f"[{host}]" if ":" in host else host
        return cls(f"https://{host}:{port}", token, str(account / "ca.crt"))

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", "User-Agent": "rlmig-agent"}
        if data is not None:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.server + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self.context) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(json.JSONDecodeError, AttributeError):
                detail = json.loads(detail).get("message", detail)
            raise KubeError(f"{method} {path}: HTTP {exc.code}: {str(detail)[:200]}", exc.code) from None
        except (urllib.error.URLError, OSError) as exc:
            raise KubeError(f"{method} {path}: {getattr(exc, 'reason', None) or exc}") from None
        return json.loads(text) if text else None

    def node_labels(self, node: str) -> dict[str, str]:
        return dict(self.request("GET", f"/api/v1/nodes/{node}").get("metadata", {}).get("labels") or {})

    def label_node(self, node: str, labels: dict[str, str | None]) -> None:
        """Set (or, with None, remove) labels by a merge patch of the Node object."""
        patch = {"metadata": {"labels": labels}}
        self.request("PATCH", f"/api/v1/nodes/{node}", patch, "application/merge-patch+json")

    def list_pods(self, namespace: str, label_selector: str, node: str) -> list[dict[str, Any]]:
        """The pods of `namespace` matching `label_selector` that run on `node`."""
        query = urllib.parse.urlencode(
            {"labelSelector": label_selector, "fieldSelector": f"spec.nodeName={node}"}
        )
        return list(self.request("GET", f"/api/v1/namespaces/{namespace}/pods?{query}").get("items") or [])

    def node_pods(self, node: str) -> list[dict[str, Any]]:
        """Every pod the API server has bound to `node`, in every namespace."""
        query = urllib.parse.urlencode({"fieldSelector": f"spec.nodeName={node}"})
        return list(self.request("GET", f"/api/v1/pods?{query}").get("items") or [])

    def delete_pod(self, namespace: str, name: str) -> None:
        self.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}")

    def get_config_map(self, namespace: str, name: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")

    def replace_config_map(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        self.request("PUT", f"/api/v1/namespaces/{namespace}/configmaps/{name}", body)


# What the GPU Operator's mig-manager does around a MIG change (NVIDIA/mig-parted,
# pkg/mig/reconfigure/reconfigure.go): each GPU client DaemonSet runs on nodes where its deploy label is
# "true"; setting it to "paused-for-mig-change" takes the client off the node, and "true" again brings
# it back, so the device plugin, feature discovery and the exporters enumerate the new MIG devices.
GPU_CLIENT_LABELS = (
    "nvidia.com/gpu.deploy.device-plugin",
    "nvidia.com/gpu.deploy.gpu-feature-discovery",
    "nvidia.com/gpu.deploy.dcgm-exporter",
    "nvidia.com/gpu.deploy.dcgm",
    "nvidia.com/gpu.deploy.nvsm",
    "nvidia.com/gpu.deploy.client",
)
GPU_CLIENT_PODS = (
    "app=nvidia-device-plugin-daemonset",
    "app=gpu-feature-discovery",
    "app=nvidia-dcgm-exporter",
    "app=nvidia-dcgm",
)
PAUSED = "paused-for-mig-change"
VALIDATOR_POD = "app=nvidia-operator-validator"


class GpuClients:
    """Pauses the GPU Operator's GPU clients on one node around a MIG change and brings them back, as
    mig-manager does: `pause` sets every deploy label that is "true" to "paused-for-mig-change" and waits
    (up to `wait_s`) for their pods to leave the node; `resume` sets those labels back to "true" and
    deletes the operator's validator pod so that it validates the node again."""

    def __init__(
        self,
        client: KubeClient,
        node: str,
        *,
        namespace: str = "gpu-operator",
        wait_s: float = 300.0,
        poll_s: float = 2.0,
        stop: threading.Event | None = None,
    ) -> None:
        self.client = client
        self.node = node
        self.namespace = namespace
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.stop = stop or threading.Event()
        self.paused: list[str] = []  # the labels this object paused, to bring back

    def pause(self) -> None:
        labels = self.client.node_labels(self.node)
        chosen = [key for key in GPU_CLIENT_LABELS if labels.get(key) == "true"]
        if chosen:
            self.client.label_node(self.node, dict.fromkeys(chosen, PAUSED))
        self.paused = chosen
        waited = 0.0
        while True:
            left = [sel for sel in GPU_CLIENT_PODS if self.client.list_pods(self.namespace, sel, self.node)]
            if not left:
                return
            if waited >= self.wait_s:
                raise RlmigError(
                    f"GPU clients still on node {self.node} {self.wait_s:g} s after pausing them: "
                    + ", ".join(left)
                )
            if self.stop.wait(self.poll_s):
                raise RlmigError("stopped while waiting for the GPU clients to leave the node")
            waited += self.poll_s

    def resume(self) -> None:
        if self.paused:
            self.client.label_node(self.node, dict.fromkeys(self.paused, "true"))
            self.paused = []
        for pod in self.client.list_pods(self.namespace, VALIDATOR_POD, self.node):
            self.client.delete_pod(self.namespace, pod["metadata"]["name"])


def mig_resource(profile: Profile) -> str:
    """The device plugin's resource name for a profile in its mixed strategy (``nvidia.com/mig-3g.40gb``;
    a media-extension profile ``1g.10gb+me`` is ``nvidia.com/mig-1g.10gb.me``)."""
    return "nvidia.com/mig-" + profile.name.replace("+", ".")


class PodDeviceHolders:
    """The MIG devices the pods on one node hold, from the API server: per profile, the sum over the
    containers of every pod not finished (Pending included: the kubelet allocates devices before the
    containers start) of its `mig_resource` limit. The executor's pigeonhole check before destroying an
    instance (`rlmig.executor.executor.DeviceHolders`)."""

    def __init__(self, client: KubeClient, node: str) -> None:
        self.client = client
        self.node = node

    def holders(self, profile: Profile) -> int:
        resource = mig_resource(profile)
        held = 0
        for pod in self.client.node_pods(self.node):
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for container in (pod.get("spec") or {}).get("containers") or []:
                limits = (container.get("resources") or {}).get("limits") or {}
                held += int(limits.get(resource, 0) or 0)
        return held


class MigManagerPublisher:
    """Hands configs to the GPU Operator's mig-manager on one node (see the module docstring)."""

    def __init__(
        self,
        client: KubeClient,
        node: str,
        *,
        config_map: tuple[str, str] | None = None,
        key: str = "config.yaml",
        delay_s: float = 90.0,
        stop: threading.Event | None = None,
        attempts: int = 5,
    ) -> None:
        self.client = client
        self.node = node
        self.config_map = config_map
        self.key = key
        self.delay_s = delay_s if config_map else 0.0
        self.stop = stop or threading.Event()
        self.attempts = attempts

    def add_config(self, name: str, config_text: str) -> None:
        """Put the config named `name` (from a mig-parted YAML holding it) into the ConfigMap."""
        if self.config_map is None:
            return
        namespace, cm_name = self.config_map
        entry = (load_yaml(config_text, "the mig-parted config") or {}).get("mig-configs", {}).get(name)
        if entry is None:
            raise RlmigError(f"the mig-parted config holds no entry {name!r}")
        for _ in range(self.attempts):
            cm = self.client.get_config_map(namespace, cm_name)
            data = cm.setdefault("data", {}) or {}
            cm["data"] = data
            doc = load_yaml(data.get(self.key) or "", f"ConfigMap {namespace}/{cm_name}: {self.key}") or {}
            doc.setdefault("version", "v1")
            configs = doc.setdefault("mig-configs", {}) or {}
            doc["mig-configs"] = configs
            if configs.get(name) == entry:
                return
            configs[name] = entry
            data[self.key] = yaml.safe_dump(doc, sort_keys=False)
            try:
                self.client.replace_config_map(namespace, cm_name, cm)  # carries the resourceVersion read
                return
            except KubeError as exc:
                if exc.status != 409:  # 409: another node's agent wrote in between; read again
                    raise
        raise RlmigError(f"ConfigMap {namespace}/{cm_name}: still conflicting after {self.attempts} attempts")

    def publish(self, name: str, config_text: str) -> bool:
        """Add the config, wait for the kubelet to refresh the mounted ConfigMap, set the label. False
        when a stop came during the wait (the label is left as it was)."""
        self.add_config(name, config_text)
        if self.delay_s > 0 and self.stop.wait(self.delay_s):
            return False
        # The state label still says how the previous config went ("success") until mig-manager picks
        # the new one up: set it to "pending" with the config, so only mig-manager's own report for this
        # config reads as done.
        self.client.label_node(self.node, {CONFIG_LABEL: name, STATE_LABEL: "pending"})
        return True

    def state(self) -> tuple[str | None, str | None]:
        """The node's (config label, mig-manager's state label)."""
        labels = self.client.node_labels(self.node)
        return labels.get(CONFIG_LABEL), labels.get(STATE_LABEL)
