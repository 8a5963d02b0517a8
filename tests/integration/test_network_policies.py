"""deploy/k8s/networkpolicies.yaml: what the policies allow, evaluated with the NetworkPolicy semantics
(a pod selected by no policy of a direction is open in it; a selected pod allows only what one of the
rules selecting it allows; a connection needs the source's egress and the destination's ingress).
Schema validity is checked with every other manifest in test_deploy.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

POLICIES = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "networkpolicies.yaml"
NAMESPACE = "tradedesk"


def _matches(selector: dict | None, labels: dict[str, str]) -> bool:
    if selector is None:
        return True
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


Pod = tuple[str | None, dict[str, str]]  # (namespace, labels); namespace None: outside the cluster


def _peer_matches(peer: dict, pod: Pod) -> bool:
    namespace, labels = pod
    if namespace is None or "ipBlock" in peer:
        return False  # no ipBlock peers are used; nothing outside the cluster is allowed
    if "namespaceSelector" in peer:
        if not _matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}):
            return False
    elif namespace != NAMESPACE:
        return False
    return _matches(peer.get("podSelector"), labels)


def _allowed(
    direction: str, policies: list[dict], subject: Pod, other: Pod, port: int, protocol: str
) -> bool:
    if subject[0] != NAMESPACE:
        return True  # not governed by these policies
    selecting = [
        p
        for p in policies
        if direction in p["spec"]["policyTypes"] and _matches(p["spec"]["podSelector"], subject[1])
    ]
    if not selecting:
        return True
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            ports = rule.get("ports")
            if peers is not None and not any(_peer_matches(peer, other) for peer in peers):
                continue
            if ports is not None and not any(
                p.get("port") == port and p.get("protocol", "TCP") == protocol for p in ports
            ):
                continue
            return True
    return False


def connects(src: Pod, dst: Pod, port: int, protocol: str = "TCP") -> bool:
    policies = [d for d in yaml.safe_load_all(POLICIES.read_text()) if d]
    return _allowed("Egress", policies, src, dst, port, protocol) and _allowed(
        "Ingress", policies, dst, src, port, protocol
    )


def td(component: str) -> Pod:
    return (NAMESPACE, {"app.kubernetes.io/name": "tradedesk", "app.kubernetes.io/component": component})


API, STREAMS, WORKER, MIGRATE = td("api"), td("streams"), td("worker"), td("migrate")
POSTGRES: Pod = (NAMESPACE, {"app.kubernetes.io/name": "postgresql"})
REDIS: Pod = (NAMESPACE, {"app.kubernetes.io/name": "redis"})
INGRESS: Pod = ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
PROMETHEUS: Pod = ("monitoring", {"app.kubernetes.io/name": "prometheus"})
GRAFANA: Pod = ("monitoring", {"app.kubernetes.io/name": "grafana"})
DNS: Pod = ("kube-system", {"k8s-app": "kube-dns"})
STRAY: Pod = (NAMESPACE, {"app": "debug-shell"})
OTHER_APP: Pod = ("default", {"app": "shop"})
INTERNET: Pod = (None, {})


@pytest.mark.parametrize(
    ("src", "dst", "port", "protocol", "allowed"),
    [
        # API <- ingress controller only (and Prometheus for /metrics)
        (INGRESS, API, 8000, "TCP", True),
        (INGRESS, API, 9100, "TCP", False),
        (PROMETHEUS, API, 8000, "TCP", True),
        (GRAFANA, API, 8000, "TCP", False),
        (OTHER_APP, API, 8000, "TCP", False),
        (WORKER, API, 8000, "TCP", False),
        (STRAY, API, 8000, "TCP", False),
        (INGRESS, STREAMS, 8000, "TCP", True),
        (PROMETHEUS, STREAMS, 8000, "TCP", True),
        (OTHER_APP, STREAMS, 8000, "TCP", False),
        (WORKER, STREAMS, 8000, "TCP", False),
        (INGRESS, WORKER, 9100, "TCP", False),
        (PROMETHEUS, WORKER, 9100, "TCP", True),
        # PostgreSQL / Redis <- API and workers (and the migration job for PostgreSQL) only
        (API, POSTGRES, 5432, "TCP", True),
        (WORKER, POSTGRES, 5432, "TCP", True),
        (MIGRATE, POSTGRES, 5432, "TCP", True),
        (API, REDIS, 6379, "TCP", True),
        (WORKER, REDIS, 6379, "TCP", True),
        (STREAMS, POSTGRES, 5432, "TCP", True),
        (STREAMS, REDIS, 6379, "TCP", True),
        (STREAMS, INTERNET, 443, "TCP", False),
        (MIGRATE, REDIS, 6379, "TCP", False),
        (STRAY, POSTGRES, 5432, "TCP", False),
        (STRAY, REDIS, 6379, "TCP", False),
        (INGRESS, POSTGRES, 5432, "TCP", False),
        (OTHER_APP, REDIS, 6379, "TCP", False),
        (API, POSTGRES, 6379, "TCP", False),
        # Egress denied by default: DNS and the datastores only
        (API, DNS, 53, "UDP", True),
        (WORKER, DNS, 53, "TCP", True),
        (API, INTERNET, 443, "TCP", False),
        (WORKER, INTERNET, 443, "TCP", False),
        (STRAY, INTERNET, 443, "TCP", False),
        (API, OTHER_APP, 80, "TCP", False),
        (API, WORKER, 9100, "TCP", False),
    ],
)
def test_policy_matrix(src, dst, port, protocol, allowed):
    assert connects(src, dst, port, protocol) is allowed


def test_every_pod_in_the_namespace_is_isolated_both_ways():
    policies = [d for d in yaml.safe_load_all(POLICIES.read_text()) if d]
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ]
    assert len(deny) == 1 and "ingress" not in deny[0]["spec"] and "egress" not in deny[0]["spec"]
    # The policies select pods by the labels the manifests give them.
    manifests = POLICIES.parent
    for name, component in (
        ("api-deployment.yaml", "api"),
        ("streams-deployment.yaml", "streams"),
        ("worker-deployment.yaml", "worker"),
        ("migrate-job.yaml", "migrate"),
    ):
        doc = yaml.safe_load((manifests / name).read_text())
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert (
            labels["app.kubernetes.io/component"] == component
            and labels["app.kubernetes.io/name"] == "tradedesk"
        )
