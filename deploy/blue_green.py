#!/usr/bin/env python3
"""Blue-green release of the Tradedesk API on Kubernetes, with kubectl (standard library only).

    deploy/blue_green.py --image registry.example.com/tradedesk:0.2.0     # release
    deploy/blue_green.py --rollback                                      # back to the other colour
    deploy/blue_green.py --image ... --dry-run                           # print the kubectl calls

The Service `tradedesk-api` selects one colour (`app.kubernetes.io/color: blue|green`). A release:
1. reads the active colour from the Service's selector; on the first release (no colour yet) it adopts
   the plain `tradedesk-api` Deployment of deploy/k8s as `blue` (a rolling restart adding the label)
   and points the Service at blue, so the new pods never take traffic before step 5;
2. applies `tradedesk-api-<idle>`: a copy of the active Deployment with the new image and the idle
   colour in its labels and selector (replicas as the active one has now); a Deployment left over with
   the idle colour under another name (the adopted original, two releases on) is scaled to 0;
3. waits for its rollout (`kubectl rollout status`: every new pod passed its readiness probe, /ready:
   database at the migration head, Redis and queue reachable);
4. runs the smoke test inside a new pod (`kubectl exec ... python`: the image has no curl): /health,
   /ready, /api/v1/health and /schema/openapi.json must answer 200;
5. only then switches the Service's selector to the new colour, and checks that the Service's endpoints
   are the new pods; if not, the selector is put back.
The previous colour keeps running, so `--rollback` is instant; scale it down when the release is
trusted (`--retire-previous` does it after a successful switch). Nothing is switched when any step
fails: the new Deployment is left as it is for inspection, and the exit status is non-zero.

Migrations run before step 2 (the migrate Job) and must be expand-then-contract, because both colours
run against the new schema for a while (docs/DEPLOYMENT.md).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time

COLOR = "app.kubernetes.io/color"
SMOKE = (
    "import json, urllib.request\n"
    "for path in ('/health', '/ready', '/api/v1/health', '/schema/openapi.json'):\n"
    "    with urllib.request.urlopen('http://127.0.0.1:8000' + path, timeout=10) as r:\n"
    "        assert r.status == 200, (path, r.status)\n"
    "    print('smoke ok', path)\n"
)


class Failed(Exception):
    pass


class Kube:
    def __init__(self, namespace: str, dry_run: bool, kubectl: str = "kubectl") -> None:
        self.namespace, self.dry_run, self.kubectl = namespace, dry_run, kubectl

    def run(self, *args: str, stdin: str | None = None, mutates: bool = True) -> str:
        argv = [self.kubectl, "-n", self.namespace, *args]
        if self.dry_run and mutates:
            print("DRY-RUN:", shlex.join(argv), file=sys.stderr)
            return ""
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True)
        if done.returncode != 0:
            raise Failed(f"{shlex.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def get(self, kind: str, name: str) -> dict:
        return json.loads(self.run("get", kind, name, "-o", "json", mutates=False))


def colored_copy(active: dict, name: str, color: str, image: str, container: str) -> dict:
    """The active Deployment as a new one: another name, the colour in its labels and selector, the image."""
    metadata = {k: v for k, v in active["metadata"].items() if k in ("namespace", "labels")}
    metadata["name"] = name
    metadata["labels"] = {**metadata.get("labels", {}), COLOR: color}
    spec = json.loads(json.dumps(active["spec"]))
    spec["selector"]["matchLabels"][COLOR] = color
    spec["template"]["metadata"]["labels"][COLOR] = color
    containers = spec["template"]["spec"]["containers"]
    target = next((c for c in containers if c["name"] == container), None)
    if target is None:
        raise Failed(f"no container named {container!r} in {active['metadata']['name']}")
    target["image"] = image
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata, "spec": spec}


def switch(kube: Kube, service: str, color: str | None) -> None:
    # A JSON merge patch: `null` removes the key (back to the uncoloured Deployment).
    kube.run(
        "patch",
        "service",
        service,
        "--type",
        "merge",
        "-p",
        json.dumps({"spec": {"selector": {COLOR: color}}}),
    )


def endpoints_of(kube: Kube, service: str) -> list[str]:
    doc = kube.get("endpoints", service)
    return [
        address.get("targetRef", {}).get("name", "")
        for subset in doc.get("subsets") or []
        for address in subset.get("addresses") or []
    ]


def api_deployments(kube: Kube, args: argparse.Namespace) -> list[dict]:
    selector = ",".join(
        f"{k}={v}" for k, v in kube.get("service", args.service)["spec"]["selector"].items() if k != COLOR
    )
    return json.loads(kube.run("get", "deployments", "-l", selector, "-o", "json", mutates=False))["items"]


def color_of(deployment: dict) -> str | None:
    return deployment["spec"]["template"]["metadata"]["labels"].get(COLOR)


def adopt(kube: Kube, args: argparse.Namespace) -> None:
    """First release: the uncoloured Deployment becomes blue (a rolling restart that adds the label to its
    pods) and the Service selects blue, so that new pods of the other colour never get traffic early."""
    patch = {"spec": {"template": {"metadata": {"labels": {COLOR: "blue"}}}}}
    kube.run("patch", "deployment", args.base, "--type", "merge", "-p", json.dumps(patch))
    kube.run("rollout", "status", f"deployment/{args.base}", f"--timeout={args.timeout}s")
    switch(kube, args.service, "blue")
    print(f"adopted {args.base} as blue", file=sys.stderr)


def release(kube: Kube, args: argparse.Namespace) -> str:
    active_color = kube.get("service", args.service)["spec"]["selector"].get(COLOR)
    if active_color is None:
        adopt(kube, args)
        active_color = "blue"
    deployments = api_deployments(kube, args)
    if kube.dry_run:  # the adoption was only printed
        deployments = [d for d in deployments if color_of(d) in (None, active_color)]
        for d in deployments:
            d["spec"]["template"]["metadata"]["labels"][COLOR] = active_color
    active = next((d for d in deployments if color_of(d) == active_color), None)
    if active is None:
        raise Failed(f"no Deployment's pods carry {COLOR}={active_color}")
    active_name = active["metadata"]["name"]
    idle_color = "green" if active_color == "blue" else "blue"
    idle_name = f"{args.base}-{idle_color}"
    print(f"active: {active_name} ({active_color}); releasing {args.image} as {idle_name}", file=sys.stderr)

    # Anything else still labelled with the idle colour (the adopted original, two releases on) would be
    # selected together with the new pods after the switch: it serves nothing now, so it goes.
    for other in deployments:
        if color_of(other) == idle_color and other["metadata"]["name"] != idle_name:
            kube.run("scale", f"deployment/{other['metadata']['name']}", "--replicas=0")

    manifest = colored_copy(active, idle_name, idle_color, args.image, args.container)
    kube.run("apply", "-f", "-", stdin=json.dumps(manifest))
    kube.run("rollout", "status", f"deployment/{idle_name}", f"--timeout={args.timeout}s")
    out = kube.run("exec", f"deployment/{idle_name}", "-c", args.container, "--", "python", "-c", SMOKE)
    if out:
        print(out.strip(), file=sys.stderr)

    switch(kube, args.service, idle_color)
    if not kube.dry_run:
        deadline = time.monotonic() + args.endpoint_wait
        while True:
            names = endpoints_of(kube, args.service)
            if names and all(n.startswith(f"{idle_name}-") for n in names):
                break
            if time.monotonic() > deadline:
                switch(kube, args.service, active_color)  # put the previous selector back
                raise Failed(
                    f"service endpoints are not the new pods after the switch ({names}); switched back"
                )
            time.sleep(1)
    print(f"switched {args.service} to {idle_color}; {active_name} kept for --rollback", file=sys.stderr)
    if args.retire_previous:
        kube.run("scale", f"deployment/{active_name}", "--replicas=0")
    return idle_color


def rollback(kube: Kube, args: argparse.Namespace) -> str:
    active_color = kube.get("service", args.service)["spec"]["selector"].get(COLOR)
    if active_color is None:
        raise Failed("the Service selects no colour: nothing to roll back to")
    previous = "green" if active_color == "blue" else "blue"
    ready = [
        d
        for d in api_deployments(kube, args)
        if color_of(d) == previous and (d.get("status") or {}).get("readyReplicas")
    ]
    if not ready:
        raise Failed(f"no Deployment of colour {previous} has ready replicas: scale it up first")
    switch(kube, args.service, previous)
    print(f"switched {args.service} back to {previous}", file=sys.stderr)
    return previous


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--image", help="image of the new release")
    action.add_argument("--rollback", action="store_true", help="switch the Service back to the other colour")
    parser.add_argument("--namespace", default="tradedesk")
    parser.add_argument("--service", default="tradedesk-api")
    parser.add_argument("--base", default="tradedesk-api", help="Deployment name (and prefix of the colours)")
    parser.add_argument("--container", default="api")
    parser.add_argument("--timeout", type=int, default=600, help="rollout wait, seconds")
    parser.add_argument("--endpoint-wait", type=float, default=60, help="seconds for the endpoints to follow")
    parser.add_argument("--retire-previous", action="store_true", help="scale the previous colour to 0")
    parser.add_argument(
        "--dry-run", action="store_true", help="read the cluster, print the changes, change nothing"
    )
    parser.add_argument("--kubectl", default="kubectl")
    args = parser.parse_args(argv)
    kube = Kube(args.namespace, args.dry_run, args.kubectl)
    try:
        color = rollback(kube, args) if args.rollback else release(kube, args)
    except Failed as exc:
        print(f"blue-green: {exc}", file=sys.stderr)
        return 1
    print(color)
    return 0


if __name__ == "__main__":
    sys.exit(main())
