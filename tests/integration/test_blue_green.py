"""deploy/blue_green.py against a fake kubectl (tests/integration/scripts/fake_kubectl.py) holding the
repository's own API Deployment and Service; the smoke test inside the "pod" runs for real against a
live Tradedesk server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "blue_green.py"
FAKE = Path(__file__).with_name("scripts") / "fake_kubectl.py"
COLOR = "app.kubernetes.io/color"


@pytest.fixture()
def kube(tmp_path, cluster):
    deployment = yaml.safe_load((ROOT / "deploy" / "k8s" / "api-deployment.yaml").read_text())
    deployment["status"] = {"readyReplicas": deployment["spec"]["replicas"]}
    service = yaml.safe_load((ROOT / "deploy" / "k8s" / "api-service.yaml").read_text())
    state_file = tmp_path / "state.json"
    state = {
        "deployments": {"tradedesk-api": deployment},
        "services": {"tradedesk-api": service},
        "calls": [],
        "fail_rollout": [],
        "pod_url": cluster.urls[0],
    }
    state_file.write_text(json.dumps(state))
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} "$@"\n')
    kubectl.chmod(0o755)

    class Kube:
        def run(self, *args: str) -> subprocess.CompletedProcess:
            env = {**os.environ, "FAKE_KUBE_STATE": str(state_file)}
            return subprocess.run(
                [sys.executable, str(SCRIPT), "--kubectl", str(kubectl), "--endpoint-wait", "2", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )

        @property
        def state(self) -> dict:
            return json.loads(state_file.read_text())

        def edit(self, **changes) -> None:
            state_file.write_text(json.dumps({**self.state, **changes}))

        def verbs(self) -> list[str]:
            return [" ".join(c[:2]) for c in self.state["calls"] if c[0] != "get"]

    return Kube()


def selector(kube) -> dict:
    return kube.state["services"]["tradedesk-api"]["spec"]["selector"]


def test_first_release_adopts_then_switches_after_ready_and_smoke(kube):
    done = kube.run("--image", "registry.example.com/tradedesk:0.2.0")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "green"
    state = kube.state
    # The original Deployment was adopted as blue (pods relabelled, Service pinned) before anything new ran.
    assert state["deployments"]["tradedesk-api"]["spec"]["template"]["metadata"]["labels"][COLOR] == "blue"
    green = state["deployments"]["tradedesk-api-green"]
    assert (
        green["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/tradedesk:0.2.0"
    )
    assert green["spec"]["selector"]["matchLabels"][COLOR] == "green"
    assert green["spec"]["replicas"] == state["deployments"]["tradedesk-api"]["spec"]["replicas"]
    # Probes, resources and security context come with the copy.
    assert green["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert selector(kube)[COLOR] == "green"
    assert kube.verbs() == [
        "patch deployment",
        "rollout status",
        "patch service",  # Service -> blue (adoption)
        "apply -f",
        "rollout status",
        "exec deployment/tradedesk-api-green",
        "patch service",  # Service -> green, only after rollout and smoke test
    ]
    assert "smoke ok /ready" in done.stderr
    assert "tradedesk-api kept for --rollback" in done.stderr


def test_second_release_goes_blue_and_retires_the_adopted_original(kube):
    assert kube.run("--image", "tradedesk:0.2.0").returncode == 0
    done = kube.run("--image", "tradedesk:0.3.0", "--retire-previous")
    assert done.returncode == 0, done.stderr
    state = kube.state
    assert selector(kube)[COLOR] == "blue"
    assert (
        state["deployments"]["tradedesk-api"]["spec"]["replicas"] == 0
    )  # also blue-labelled: out of the way
    blue = state["deployments"]["tradedesk-api-blue"]
    assert blue["spec"]["template"]["spec"]["containers"][0]["image"] == "tradedesk:0.3.0"
    assert state["deployments"]["tradedesk-api-green"]["spec"]["replicas"] == 0  # --retire-previous
    # The scale-down of the stale blue happened before the switch.
    verbs = kube.verbs()
    assert verbs.index("scale deployment/tradedesk-api") < len(verbs) - 1 - verbs[::-1].index("patch service")


def test_failed_smoke_test_never_switches(kube):
    kube.edit(pod_url="http://127.0.0.1:9")  # the new pods do not answer
    done = kube.run("--image", "tradedesk:0.2.0")
    assert done.returncode == 1
    assert "exec" in done.stderr and "failed" in done.stderr
    assert selector(kube)[COLOR] == "blue"  # adopted, still the old pods
    assert "tradedesk-api-green" in kube.state["deployments"]  # left for inspection
    assert kube.verbs()[-1] == "exec deployment/tradedesk-api-green"


def test_failed_rollout_never_smokes_or_switches(kube):
    assert kube.run("--image", "tradedesk:0.2.0").returncode == 0
    kube.edit(fail_rollout=["tradedesk-api-blue"])
    done = kube.run("--image", "tradedesk:0.3.0")
    assert done.returncode == 1 and "progress deadline" in done.stderr
    assert selector(kube)[COLOR] == "green"
    assert kube.verbs()[-1] == "rollout status"


def test_endpoints_that_do_not_follow_are_switched_back(kube):
    assert kube.run("--image", "tradedesk:0.2.0").returncode == 0
    kube.edit(frozen_selector=dict(selector(kube)))
    done = kube.run("--image", "tradedesk:0.3.0")
    assert done.returncode == 1 and "switched back" in done.stderr
    assert selector(kube)[COLOR] == "green"


def test_rollback_switches_to_the_other_ready_colour(kube):
    assert kube.run("--rollback").returncode == 1  # nothing coloured yet
    assert kube.run("--image", "tradedesk:0.2.0").returncode == 0
    done = kube.run("--rollback")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "blue" and selector(kube)[COLOR] == "blue"


def test_dry_run_reads_but_changes_nothing(kube):
    before = kube.state
    done = kube.run("--image", "tradedesk:0.2.0", "--dry-run")
    assert done.returncode == 0, done.stderr
    after = kube.state
    assert after["deployments"] == before["deployments"] and after["services"] == before["services"]
    assert all(call[0] == "get" for call in after["calls"])
    printed = [line for line in done.stderr.splitlines() if line.startswith("DRY-RUN:")]
    assert [" ".join(line.split()[4:6]) for line in printed] == [
        "patch deployment",
        "rollout status",
        "patch service",
        "apply -f",
        "rollout status",
        "exec deployment/tradedesk-api-green",
        "patch service",
    ]
