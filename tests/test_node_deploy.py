"""Deployment: the Kubernetes manifests against the Kubernetes schemas (offline, kubernetes-validate), the
DaemonSet's arguments against the real CLI, the container build files; the mig-parted path's Kubernetes
client against a fake API server on loopback, and the mig-parted node under the agent."""

from __future__ import annotations

import json
import re
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from rlmig.cli.agent import agent_command
from rlmig.configuration import Configuration
from rlmig.errors import RlmigError
from rlmig.executor import FakeNvml, FakeTenantHooks, NvmlBackend
from rlmig.geometry import gpu_model
from rlmig.migparted import from_mig_parted
from rlmig.node import (
    ExecutorNode,
    FileRates,
    GpuClients,
    KubeClient,
    KubeError,
    MigManagerPublisher,
    MigPartedNode,
    NodeAgent,
    PodDeviceHolders,
    config_name,
)
from rlmig.planners import make_planner
from rlmig.workload import load_workload, parse_workload
from tests.test_node_e2e import write_workload

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(K8S.rglob("*.yaml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in documents(path) if doc.get("kind") == kind]


def the(kind: str) -> dict[str, Any]:
    (doc,) = by_kind(kind)
    return doc


@pytest.mark.parametrize("version", ["1.28.0", "1.37.0"])
def test_manifests_validate_against_the_kubernetes_schemas(version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    checked = set()
    for path in MANIFESTS:
        for doc in documents(path):
            if doc["kind"] in ("Kustomization", "ServiceMonitor"):  # not core APIs: no schema ships
                continue
            if doc["apiVersion"] == "admissionregistration.k8s.io/v1" and version < "1.30":
                continue  # ValidatingAdmissionPolicy is GA from 1.30 (node-scope.yaml says so)
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.relative_to(ROOT)}: {doc['kind']} {doc['metadata']['name']}: {exc}")
            checked.add(doc["kind"])
    assert {
        "DaemonSet",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "Service",
    } <= checked
    assert {"Namespace", "Role", "RoleBinding"} <= checked
    if version >= "1.30":
        assert {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} <= checked


def admit(change: dict[str, Any]) -> str | None:
    """What deploy/k8s/optional/node-scope.yaml answers to a node UPDATE: None (admitted, or not the
    policy's to judge) or the message of the first validation that denies it. Its CEL runs in cel-python,
    with the variables evaluated in order as the API server does."""
    celpy = pytest.importorskip("celpy")
    policy = next(d for d in documents(K8S / "optional" / "node-scope.yaml") if d["kind"].endswith("Policy"))
    binding = next(
        d for d in documents(K8S / "optional" / "node-scope.yaml") if d["kind"].endswith("Binding")
    )
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    env = celpy.Environment()

    def run(expression: str, activation: dict[str, Any]) -> Any:
        return env.program(env.compile(expression)).evaluate(activation)

    activation = {k: celpy.json_to_cel(v) for k, v in change.items()}
    if not all(run(c["expression"], activation) for c in policy["spec"]["matchConditions"]):
        return None
    variables: dict[str, Any] = {}
    for variable in policy["spec"]["variables"]:
        variables[variable["name"]] = run(variable["expression"], {**activation, "variables": variables})
    activation["variables"] = celpy.celtypes.MapType(
        {celpy.celtypes.StringType(k): v for k, v in variables.items()}
    )
    for rule in policy["spec"]["validations"]:
        if not run(rule["expression"], activation):
            return rule["message"]
    return None


def node_change(
    node: str = "gpu-1",
    token_node: str | None = "gpu-1",
    user: str = "system:serviceaccount:rlmig:rlmig-agent",
    labels: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    before = {"kubernetes.io/hostname": node, "nvidia.com/mig.config": "all-disabled"}
    extra = {"authentication.kubernetes.io/node-name": [token_node]} if token_node else {}
    user_info: dict[str, Any] = {"username": user, **({"extra": extra} if extra else {})}
    return {
        "request": {"userInfo": user_info},
        "oldObject": {"metadata": {"name": node, "labels": before}, "spec": {"podCIDR": "10.0.0.0/24"}},
        "object": {
            "metadata": {"name": node, "labels": {**before, **(labels or {})}},
            "spec": spec if spec is not None else {"podCIDR": "10.0.0.0/24"},
        },
    }


def test_the_node_scope_policy_lets_an_agent_change_only_its_own_labels_on_its_own_node():
    own = {"nvidia.com/mig.config": "rlmig-1a2b", "nvidia.com/mig.config.state": "pending"}
    assert admit(node_change(labels=own)) is None
    assert admit(node_change(labels={"nvidia.com/gpu.deploy.device-plugin": "paused-for-mig-change"})) is None
    assert "only the node its pod runs on" in admit(node_change(token_node="gpu-2", labels=own))
    assert "only the node its pod runs on" in admit(node_change(token_node=None, labels=own))
    assert "only its own node labels" in admit(
        node_change(labels={"node-role.kubernetes.io/control-plane": ""})
    )
    assert "only its own node labels" in admit(node_change(labels={"kubernetes.io/hostname": "gpu-9"}))
    removed = node_change()
    del removed["object"]["metadata"]["labels"]["kubernetes.io/hostname"]
    assert "only its own node labels" in admit(removed)
    assert "spec or annotations" in admit(node_change(spec={"podCIDR": "10.0.0.0/24", "unschedulable": True}))
    annotated = node_change(labels=own)
    annotated["object"]["metadata"]["annotations"] = {"x": "y"}
    assert "spec or annotations" in admit(annotated)
    # other users (the GPU Operator, an administrator) are not this policy's to judge
    assert admit(node_change(user="system:serviceaccount:gpu-operator:mig-manager", token_node=None)) is None


def test_kustomization_and_service_monitor():
    kustomization = the("Kustomization")
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    monitor = the("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = the("Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"


def _agent_container(daemonset: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in daemonset["spec"]["template"]["spec"]["containers"] if c["name"] == "agent")


def test_daemonset_runs_the_agent_as_the_cli_understands_it():
    daemonset = the("DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    container = _agent_container(daemonset)
    context = agent_command.make_context("agent", list(container["args"]))  # parses and checks every option
    params = context.params
    assert params["backend"] == "nvml" and params["metrics_port"] == 9410
    assert params["rates_spec"].startswith("promql:http")  # the Prometheus server, not a Service of pods

    # GPU access: NVIDIA runtime, privileged (MIG management), host PIDs (NVML's processes), GPU nodes.
    assert pod["runtimeClassName"] == "nvidia" and pod["hostPID"] is True
    assert container["securityContext"]["privileged"] is True
    assert pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    # Only MIG-capable GPUs of the checkpoint's model, and never beside the GPU Operator's mig-manager.
    assert pod["nodeSelector"]["nvidia.com/mig.capable"] == "true"
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    (expression,) = terms["nodeSelectorTerms"][0]["matchExpressions"]
    assert expression == {"key": "nvidia.com/gpu.deploy.mig-manager", "operator": "NotIn", "values": ["true"]}
    # The nvml backend talks to no API server: no token in the pod, and no role bound in this folder.
    assert pod["automountServiceAccountToken"] is False
    base = [doc for path in K8S.glob("*.yaml") for doc in documents(path)]
    assert not [d for d in base if d["kind"] in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]
    images = [c["image"] for c in pod["containers"] + pod["initContainers"]]
    assert all(":" in i.rsplit("/", 1)[-1] and not i.endswith(":latest") for i in images), images
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["NVIDIA_MIG_CONFIG_DEVICES"]["value"] == "all"
    assert pod["serviceAccountName"] == the("ServiceAccount")["metadata"]["name"]
    assert pod["terminationGracePeriodSeconds"] > params["shutdown_grace"]

    # Every path the arguments name is mounted: workload from the ConfigMap, checkpoint, journal on the host.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}

    def volume_of(path: str) -> dict[str, Any]:
        mount = max((m for m in mounts if path.startswith(m + "/") or path == m), key=len)
        return volumes[mounts[mount]]

    workload_volume = volume_of(params["workload_file"])
    config_map = next(c for c in by_kind("ConfigMap") if c["metadata"]["name"] == "rlmig-workload")
    assert workload_volume["configMap"]["name"] == "rlmig-workload"
    key = Path(params["workload_file"]).name
    workload = parse_workload(yaml.safe_load(config_map["data"][key]))
    assert workload.gpu.name == "A100-80GB" and workload.mode == "dynamic"
    assert "hostPath" in volume_of(params["journal_path"])  # survives the pod: recovery needs it
    checkpoint_volume = volume_of(params["checkpoint"])
    init = pod["initContainers"][0]
    assert any(m["name"] == checkpoint_volume["name"] for m in init["volumeMounts"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == params["metrics_port"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def named(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in by_kind(kind) if d["metadata"]["name"] == name]
    return doc


def test_rbac_allows_the_label_and_config_map_paths():
    account = the("ServiceAccount")["metadata"]["name"]
    for name in ("rlmig-agent", "rlmig-agent-gpu-clients"):  # the mig-parted path; --gpu-clients=pause
        role = named("ClusterRole", name)
        assert {"get", "patch"} <= set(role["rules"][0]["verbs"]) and role["rules"][0]["resources"] == [
            "nodes"
        ]
        binding = named("ClusterRoleBinding", name)
        assert binding["roleRef"]["name"] == name and binding["subjects"][0]["name"] == account
    cm = next(c for c in by_kind("ConfigMap") if c["metadata"]["name"] == "rlmig-mig-parted-config")
    config_role = named("Role", "rlmig-agent-mig-parted-config")
    rule = config_role["rules"][0]
    assert rule["resourceNames"] == [cm["metadata"]["name"]] and {"get", "update"} <= set(rule["verbs"])
    assert config_role["metadata"]["namespace"] == cm["metadata"]["namespace"] == "gpu-operator"
    pods = named("Role", "rlmig-agent-gpu-clients")
    assert pods["metadata"]["namespace"] == "gpu-operator"
    assert pods["rules"][0]["resources"] == ["pods"] and set(pods["rules"][0]["verbs"]) == {"list", "delete"}
    assert named("RoleBinding", "rlmig-agent-gpu-clients")["roleRef"]["name"] == "rlmig-agent-gpu-clients"
    busy = named("ClusterRole", "rlmig-agent-busy-check")["rules"][0]  # --busy-check=pods
    assert busy["resources"] == ["pods"] and busy["verbs"] == ["list"]
    assert named("ClusterRoleBinding", "rlmig-agent-busy-check")["subjects"][0]["name"] == account
    doc = yaml.safe_load(cm["data"]["config.yaml"])
    assert doc["version"] == "v1" and "all-disabled" in doc["mig-configs"]


def test_container_build_files():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim-\w+$", text, re.M)  # a release, not a moving tag
    assert (
        "pip install -c requirements/ci.txt ." in text
    )  # the versions CI tests and "[train]" not in text and "torch" not in text.split("FROM")[1]
    assert 'ENTRYPOINT ["rlmig", "agent"]' in text
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for name in source.split():
            assert (ROOT / name).exists(), name
    checkpoint = (ROOT / "deploy" / "checkpoint.Dockerfile").read_text()
    assert "card.json" in checkpoint and "policy.npz" in checkpoint
    init = the("DaemonSet")["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"][:2] == ["cp", "-r"] and init["command"][2].startswith("/checkpoint")


# -- the mig-parted path against a fake Kubernetes API ---------------------------------------------


class FakeApi:
    """Nodes and ConfigMaps behind GET, PUT (with resourceVersion) and merge PATCH, on loopback."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {"gpu-1": {"metadata": {"name": "gpu-1", "labels": {}}}}
        self.config_maps: dict[tuple[str, str], dict[str, Any]] = {}
        self.conflicts = 0  # PUTs to answer 409 to, as if another agent wrote first
        # GPU Operator pods in gpu-operator: (name, app label, node, deploy label whose "true" keeps it)
        self.pods: list[dict[str, Any]] = []
        self.lag = 0  # lists of pods a paused DaemonSet's pod survives, as pods take time to terminate
        self.node_pods: list[dict[str, Any]] = []  # every namespace's pods, as /api/v1/pods lists them
        self.requests: list[tuple[str, str, Any]] = []
        self.token_seen: str | None = None
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _reply(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def _handle(self, method: str) -> None:
                api.token_seen = self.headers.get("Authorization")
                body = self._body()
                api.requests.append((method, self.path, body))
                path, _, query = self.path.partition("?")
                if path == "/api/v1/pods":
                    node = urllib.parse.parse_qs(query)["fieldSelector"][0].removeprefix("spec.nodeName=")
                    return self._reply(
                        200, {"items": [p for p in api.node_pods if p["spec"]["nodeName"] == node]}
                    )
                pods = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?", path)
                if pods:
                    return self._reply(*api.pod_request(method, pods.group(1), pods.group(2), query))
                node = re.fullmatch(r"/api/v1/nodes/([^/]+)", self.path)
                cm = re.fullmatch(r"/api/v1/namespaces/([^/]+)/configmaps/([^/]+)", self.path)
                if node and node.group(1) in api.nodes:
                    obj = api.nodes[node.group(1)]
                    if method == "PATCH":
                        assert self.headers["Content-Type"] == "application/merge-patch+json"
                        labels = obj["metadata"]["labels"]
                        for key, value in body["metadata"]["labels"].items():
                            if value is None:
                                labels.pop(key, None)
                            else:
                                labels[key] = value
                    return self._reply(200, obj)
                if cm and (cm.group(1), cm.group(2)) in api.config_maps:
                    obj = api.config_maps[cm.group(1), cm.group(2)]
                    if method == "PUT":
                        if api.conflicts:
                            api.conflicts -= 1
                            obj["metadata"]["resourceVersion"] = str(
                                int(obj["metadata"]["resourceVersion"]) + 1
                            )
                            return self._reply(409, {"message": "the object has been modified"})
                        if body["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
                            return self._reply(409, {"message": "stale resourceVersion"})
                        body["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1)
                        api.config_maps[cm.group(1), cm.group(2)] = body
                        return self._reply(200, body)
                    return self._reply(200, json.loads(json.dumps(obj)))
                return self._reply(404, {"message": f"{self.path} not found"})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_pod(self, name: str, app: str, node: str, deploy_label: str | None = None) -> None:
        self.pods.append({"name": name, "app": app, "node": node, "deploy": deploy_label})

    def pod_request(self, method: str, namespace: str, name: str | None, query: str) -> tuple[int, Any]:
        """List pods by labelSelector app=... and fieldSelector spec.nodeName=...; delete one by name. A
        pod whose DaemonSet's deploy label on its node is no longer "true" goes away after `lag` lists."""
        if namespace != "gpu-operator":
            return 200, {"items": []}
        if method == "DELETE":
            before = len(self.pods)
            self.pods = [p for p in self.pods if p["name"] != name]
            return (200, {}) if len(self.pods) < before else (404, {"message": f"pods {name} not found"})
        params = urllib.parse.parse_qs(query)
        app = params["labelSelector"][0].removeprefix("app=")
        node = params["fieldSelector"][0].removeprefix("spec.nodeName=")
        labels = self.nodes[node]["metadata"]["labels"]
        if self.lag > 0:
            self.lag -= 1
        else:
            self.pods = [p for p in self.pods if p["deploy"] is None or labels.get(p["deploy"]) == "true"]
        items = [
            {"metadata": {"name": p["name"], "labels": {"app": p["app"]}}, "spec": {"nodeName": p["node"]}}
            for p in self.pods
            if p["app"] == app and p["node"] == node
        ]
        return 200, {"items": items}

    def add_config_map(self, namespace: str, name: str, text: str) -> None:
        meta = {"name": name, "namespace": namespace, "resourceVersion": "1"}
        self.config_maps[namespace, name] = {"metadata": meta, "data": {"config.yaml": text}}

    def mig_configs(self) -> dict[str, Any]:
        return yaml.safe_load(self.config_maps["gpu-operator", "rlmig"]["data"]["config.yaml"])["mig-configs"]


@pytest.fixture
def api():
    fake = FakeApi()
    fake.add_config_map(
        "gpu-operator",
        "rlmig",
        "version: v1\nmig-configs:\n  all-disabled:\n    - {devices: all, mig-enabled: false}\n",
    )
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


GPU = gpu_model("A100-80GB")
TARGET = Configuration.parse(GPU, [["4g.40gb@0=detect", "3g.40gb@4=qa"], ["7g.80gb@0=thumbs"]])


def test_kube_client_labels_nodes_and_reports_errors(api):
    client = KubeClient(api.url, token="secret")
    client.label_node("gpu-1", {"nvidia.com/mig.config": "rlmig-x", "other": "1"})
    client.label_node("gpu-1", {"other": None})
    assert client.node_labels("gpu-1") == {"nvidia.com/mig.config": "rlmig-x"}
    assert api.token_seen == "Bearer secret"
    with pytest.raises(KubeError, match="HTTP 404: /api/v1/nodes/nope not found") as info:
        client.node_labels("nope")
    assert info.value.status == 404
    with pytest.raises(KubeError, match="GET /api/v1/nodes/gpu-1: "):
        KubeClient("http://127.0.0.1:9", timeout_s=2).node_labels("gpu-1")


def test_in_cluster_client_reads_the_service_account(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(RlmigError, match="not running in a Kubernetes pod"):
        KubeClient.in_cluster(tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(RlmigError, match="service account token"):
        KubeClient.in_cluster(tmp_path)
    (tmp_path / "token").write_text("tok\n")
    with pytest.raises(RlmigError, match="cannot read the cluster's CA"):
        KubeClient.in_cluster(tmp_path)
    bundle = ssl.get_default_verify_paths().cafile
    if not bundle or not Path(bundle).exists():
        pytest.skip("no CA bundle here to stand in for the cluster's")
    (tmp_path / "ca.crt").write_text(Path(bundle).read_text())
    client = KubeClient.in_cluster(tmp_path)
    assert client.server == "https://10.96.0.1:443" and client.token == "tok"


def test_publisher_adds_its_config_despite_conflicts_then_labels(api):
    api.conflicts = 2
    stop = threading.Event()
    publisher = MigManagerPublisher(
        KubeClient(api.url), "gpu-1", config_map=("gpu-operator", "rlmig"), delay_s=0, stop=stop
    )
    name = config_name(TARGET)
    node = MigPartedNode(GPU, 2, publisher=publisher)
    result = node.apply(TARGET)
    assert result.status == "written"
    configs = api.mig_configs()
    assert "all-disabled" in configs  # the other entries stay
    layouts = from_mig_parted({"version": "v1", "mig-configs": configs}, GPU, config_name=name)
    assert [layouts[i].counts() for i in range(2)] == [g.layout.counts() for g in TARGET.gpus]
    assert api.nodes["gpu-1"]["metadata"]["labels"]["nvidia.com/mig.config"] == name
    assert node.read() == result.plan.target  # mig-parted's placements, the target's owners
    puts = [r for r in api.requests if r[0] == "PUT"]
    assert len(puts) == 3  # two conflicts, then the write

    # mig-manager reports failure: the node goes back to what it had; the retry needs a new label value.
    api.nodes["gpu-1"]["metadata"]["labels"]["nvidia.com/mig.config.state"] = "failed"
    assert node.read() == Configuration.empty(GPU, 2)
    node.apply(TARGET)
    assert api.nodes["gpu-1"]["metadata"]["labels"]["nvidia.com/mig.config"] == f"{name}-r1"
    assert f"{name}-r1" in api.mig_configs()
    api.nodes["gpu-1"]["metadata"]["labels"]["nvidia.com/mig.config.state"] = "success"
    assert node.read() == result.plan.target

    # A stop during the wait for the kubelet leaves the label alone.
    waiting = MigManagerPublisher(
        KubeClient(api.url), "gpu-1", config_map=("gpu-operator", "rlmig"), delay_s=60, stop=stop
    )
    stop.set()
    assert waiting.publish("rlmig-other", "version: v1\nmig-configs:\n  rlmig-other: []\n") is False
    assert api.nodes["gpu-1"]["metadata"]["labels"]["nvidia.com/mig.config"] == f"{name}-r1"


def test_agent_with_the_mig_parted_backend_writes_configs(tmp_path):
    workload = load_workload(write_workload(tmp_path))
    rates = tmp_path / "rates.json"
    rates.write_text(json.dumps({"detect": 300, "qa": 400, "thumbs": 600}))
    config_file = tmp_path / "mig.yaml"
    node = MigPartedNode(workload.gpu, workload.gpu_count, path=config_file)
    agent = NodeAgent(
        workload,
        make_planner("ilp-myopic", gap=0.0, time_limit=None),
        node,
        FileRates(rates, workload.tenant_names),
    )
    first = agent.round()
    assert first.result == "applied" and config_file.exists()
    decided = first.decision.configuration
    written = from_mig_parted(config_file.read_text(), workload.gpu, config_name=config_name(decided))
    assert [written[i].counts() for i in range(2)] == [g.layout.counts() for g in decided.gpus]
    rates.write_text(json.dumps({"detect": 1500, "qa": 400, "thumbs": 150}))
    later = [agent.round(), agent.round()]
    assert "applied" in [r.result for r in later] and later[-1].configuration != first.configuration
    assert node.read() == later[-1].configuration


def test_the_node_waits_for_mig_managers_own_report_of_each_config(api):
    # The state label says "success" from an earlier config; publishing a new one marks it pending, so
    # only mig-manager's report for the new config ends the wait, and no new label goes on meanwhile
    # (neither while pending nor while mig-manager reboots the node).
    labels = api.nodes["gpu-1"]["metadata"]["labels"]
    labels["nvidia.com/mig.config.state"] = "success"
    publisher = MigManagerPublisher(
        KubeClient(api.url), "gpu-1", config_map=("gpu-operator", "rlmig"), delay_s=0, stop=threading.Event()
    )
    node = MigPartedNode(GPU, 2, publisher=publisher)
    node.apply(TARGET)
    assert labels["nvidia.com/mig.config.state"] == "pending"
    node.read()
    other = Configuration.empty(GPU, 2)
    for state in ("pending", "rebooting"):
        labels["nvidia.com/mig.config.state"] = state
        node.read()
        with pytest.raises(RlmigError, match=f"still applying .*state={state}"):
            node.apply(other)
    labels["nvidia.com/mig.config.state"] = "success"
    node.read()
    assert node.apply(other).status == "written"


def test_gpu_clients_are_paused_around_a_mig_change_as_mig_manager_does(api):
    labels = api.nodes["gpu-1"]["metadata"]["labels"]
    labels.update(
        {
            "nvidia.com/gpu.deploy.device-plugin": "true",
            "nvidia.com/gpu.deploy.gpu-feature-discovery": "true",
            "nvidia.com/gpu.deploy.dcgm-exporter": "false",  # not deployed here: left alone
        }
    )
    api.add_pod("plugin-x", "nvidia-device-plugin-daemonset", "gpu-1", "nvidia.com/gpu.deploy.device-plugin")
    api.add_pod("gfd-x", "gpu-feature-discovery", "gpu-1", "nvidia.com/gpu.deploy.gpu-feature-discovery")
    api.add_pod("validator-x", "nvidia-operator-validator", "gpu-1")
    api.lag = 2  # the pods take two polls to terminate
    waits: list[float] = []

    class Recorded(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            return False

    clients = GpuClients(KubeClient(api.url), "gpu-1", poll_s=1.0, stop=Recorded())
    clients.pause()
    assert labels["nvidia.com/gpu.deploy.device-plugin"] == "paused-for-mig-change"
    assert labels["nvidia.com/gpu.deploy.gpu-feature-discovery"] == "paused-for-mig-change"
    assert labels["nvidia.com/gpu.deploy.dcgm-exporter"] == "false"
    assert waits and not [p for p in api.pods if p["app"] != "nvidia-operator-validator"]
    clients.resume()
    assert labels["nvidia.com/gpu.deploy.device-plugin"] == "true"
    assert labels["nvidia.com/gpu.deploy.gpu-feature-discovery"] == "true"
    assert labels["nvidia.com/gpu.deploy.dcgm-exporter"] == "false"
    assert api.pods == []  # the validator was deleted, to validate the node again
    # Pods that never leave: a one-line error naming them, after the wait.
    api.add_pod("plugin-y", "nvidia-device-plugin-daemonset", "gpu-1")  # no deploy label: stays
    stuck = GpuClients(KubeClient(api.url), "gpu-1", wait_s=3, poll_s=1.0, stop=Recorded())
    with pytest.raises(
        RlmigError, match="GPU clients still on node gpu-1 3 s after pausing them: app=nvidia-device"
    ):
        stuck.pause()
    stuck.resume()  # what ExecutorNode does when the pause fails: the paused clients come back
    assert labels["nvidia.com/gpu.deploy.device-plugin"] == "true"


def test_an_apply_that_changes_mig_instances_runs_inside_the_pause(tmp_path):
    calls: list[str] = []

    class Clients:
        def pause(self) -> None:
            calls.append("pause")

        def resume(self) -> None:
            calls.append("resume")

    marker = tmp_path / "cdi"
    gpu = gpu_model("A100-80GB")
    current = Configuration.parse(gpu, [["4g.40gb@0=a", "3g.40gb@4=b"]])
    fake = FakeNvml.from_configuration(current)
    post = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"]
    node = ExecutorNode(
        NvmlBackend(gpu, fake),
        hooks=FakeTenantHooks(fake),
        owners=current,
        gpu_clients=Clients(),
        post_apply=post,
    )
    # Owners change only: the GPU clients see the same devices, nothing is paused, nothing run.
    swapped = Configuration.parse(gpu, [["4g.40gb@0=b", "3g.40gb@4=a"]])
    assert node.apply(swapped).status == "complete"
    assert calls == [] and not marker.exists()
    # Instances change: paused, applied, the post-apply command, resumed.
    split = Configuration.parse(gpu, [["4g.40gb@0=b", "2g.20gb@4=a", "1g.10gb@6=a"]])
    assert node.apply(split).status == "complete"
    assert calls == ["pause", "resume"] and marker.read_text() == "x"
    # A failing post-apply command is one line, and the clients still come back.
    failing = ExecutorNode(
        NvmlBackend(gpu, fake),
        hooks=FakeTenantHooks(fake),
        owners=split,
        gpu_clients=Clients(),
        post_apply=[sys.executable, "-c", "import sys; sys.exit('cdi: no such device')"],
    )
    with pytest.raises(RlmigError, match=r"post-apply command .* exited 1: cdi: no such device"):
        failing.apply(current)
    assert calls[-2:] == ["pause", "resume"]


def _pod(node: str, phase: str, *limits: dict[str, int]) -> dict[str, Any]:
    containers = [{"name": f"c{i}", "resources": {"limits": lim}} for i, lim in enumerate(limits)]
    return {"spec": {"nodeName": node, "containers": containers}, "status": {"phase": phase}}


def test_pod_device_holders_count_the_mig_devices_of_unfinished_pods_on_the_node(api):
    api.node_pods = [
        _pod("gpu-1", "Running", {"nvidia.com/mig-3g.40gb": 1}, {"cpu": 1}),
        _pod("gpu-1", "Pending", {"nvidia.com/mig-3g.40gb": 1}),  # devices allocated before it starts
        _pod("gpu-1", "Succeeded", {"nvidia.com/mig-3g.40gb": 1}),  # finished: holds nothing
        _pod("gpu-1", "Running", {"nvidia.com/mig-1g.10gb.me": 2}),
        _pod("gpu-2", "Running", {"nvidia.com/mig-3g.40gb": 4}),  # another node
    ]
    holders = PodDeviceHolders(KubeClient(api.url), "gpu-1")
    assert holders.holders(GPU.profile("3g.40gb")) == 2
    assert holders.holders(GPU.profile("1g.10gb+me")) == 2
    assert holders.holders(GPU.profile("7g.80gb")) == 0
