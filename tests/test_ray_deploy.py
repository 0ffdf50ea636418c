"""deploy/ray: the KubeRay RayJob that trains on a cluster validates against KubeRay's own CRD schema
(shipped in tests/data, strict about unknown fields) and its pod templates against Kubernetes' schemas;
its entrypoint is a command the CLI accepts; the trainer image pins the Ray that CI tests."""

from __future__ import annotations

import gzip
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RAY = ROOT / "deploy" / "ray"
SCHEMA = ROOT / "tests" / "data" / "kuberay-rayjob-v1.schema.json.gz"
VERSIONS = ["1.28.0", "1.37.0"]


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def the_job() -> dict[str, Any]:
    (job,) = [doc for doc in documents(RAY / "rayjob-train.yaml") if doc["kind"] == "RayJob"]
    return job


def unknown_fields(doc: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the schema does not define, as the API server's strict field validation reports them."""
    found: list[str] = []
    if isinstance(doc, dict) and "properties" in schema:
        if not schema.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in schema:
            found += [f"{path}.{key}" for key in doc if key not in schema["properties"]]
        for key, value in doc.items():
            if key in schema["properties"]:
                found += unknown_fields(value, schema["properties"][key], f"{path}.{key}")
    elif isinstance(doc, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, value in doc.items():
            found += unknown_fields(value, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(doc, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(doc):
            found += unknown_fields(value, schema["items"], f"{path}[{i}]")
    return found


def kuberay_schema() -> dict[str, Any]:
    return json.loads(gzip.decompress(SCHEMA.read_bytes()))["openAPIV3Schema"]


def test_the_rayjob_validates_against_kuberays_crd_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema, job = kuberay_schema(), the_job()
    jsonschema.validate(job, schema)
    assert unknown_fields(job, schema) == []
    # the checker catches what it must: a misspelt field and a wrong type
    wrong = json.loads(json.dumps(job))
    wrong["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParam"] = {}
    assert unknown_fields(wrong, schema) == [".spec.rayClusterSpec.headGroupSpec.rayStartParam"]
    wrong["spec"]["ttlSecondsAfterFinished"] = "ten minutes"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(wrong, schema)


@pytest.mark.parametrize("version", VERSIONS)
def test_pod_templates_and_core_objects_validate_against_the_kubernetes_schemas(version):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    spec = the_job()["spec"]["rayClusterSpec"]
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    for group in groups:
        template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "t"},
            "template": group["template"],
        }
        kubernetes_validate.validate(template, version, strict=True)
    kinds = set()
    for path in (RAY / "runs-volume.yaml", RAY / "runs-reader.yaml"):
        for doc in documents(path):
            kubernetes_validate.validate(doc, version, strict=True)
            kinds.add(doc["kind"])
    assert kinds == {"PersistentVolumeClaim", "Pod"}


def test_the_entrypoint_is_a_training_the_cli_accepts_and_the_image_holds_its_files():
    from rlmig.cli.planning import train

    job = the_job()
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["rlmig", "train"]
    context = train.make_context("train", argv[2:])
    assert context.params["ray"] == "auto"  # joins the cluster the job runs on
    config = Path(context.params["config"])
    dockerfile = (RAY / "trainer.Dockerfile").read_text()
    # the image copies agents/configs to the config's folder and eval/scenarios beside its workdir
    assert f"cp -r agents/configs {config.parent}" in dockerfile
    assert (ROOT / "agents" / "configs" / config.name).is_file()
    (workdir,) = re.findall(r"^WORKDIR (\S+)$", dockerfile.split("rlmig --help")[1], re.M)
    assert f"cp -r eval/scenarios {workdir}/eval/scenarios" in dockerfile
    for scenario in yaml.safe_load((ROOT / "agents" / "configs" / config.name).read_text())["evaluation"][
        "scenarios"
    ]:
        assert (ROOT / scenario).is_file()
    # the run folder and the checkpoint are on the volume the head mounts
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    (mount,) = head["containers"][0]["volumeMounts"]
    assert context.params["out"].startswith(mount["mountPath"] + "/")
    assert context.params["export"].startswith(mount["mountPath"] + "/")
    claim = head["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == documents(RAY / "runs-volume.yaml")[0]["metadata"]["name"]


def test_the_trainer_image_pins_the_ray_ci_tests():
    pinned = re.search(r"^ray==(\S+)$", (ROOT / "requirements" / "ci.txt").read_text(), re.M)
    assert pinned is not None
    dockerfile = (RAY / "trainer.Dockerfile").read_text()
    assert f"FROM rayproject/ray:{pinned[1]}-py311-cpu" in dockerfile
    assert the_job()["spec"]["rayClusterSpec"]["rayVersion"] == pinned[1]
    assert "pip install -c requirements/ci.txt" in dockerfile and "torch==2.13.0" in dockerfile
    for source in re.findall(r"^COPY --chown=\S+ (.+) \S+$", dockerfile, re.M):
        for name in source.split():
            assert (ROOT / name).exists(), name
    kustomization = documents(RAY / "kustomization.yaml")[0]
    assert kustomization["resources"] == ["runs-volume.yaml", "rayjob-train.yaml"]
