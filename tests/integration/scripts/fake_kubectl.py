#!/usr/bin/env python3
"""A stand-in for kubectl over a JSON file (FAKE_KUBE_STATE), for tests/integration/test_blue_green.py.

Implements the calls deploy/blue_green.py makes, with the API server's semantics that matter to it:
JSON merge patches, Deployments applied by name, Service endpoints = pods of the Deployments whose pod
labels match the Service's selector. `exec ... python -c SCRIPT` really runs SCRIPT, with the pod
address replaced by the URL of a live Tradedesk server (state["pod_url"]), so the smoke test is real.
"""

import json
import os
import subprocess
import sys

STATE = os.environ["FAKE_KUBE_STATE"]


def load() -> dict:
    with open(STATE) as f:
        return json.load(f)


def save(state: dict) -> None:
    with open(STATE, "w") as f:
        json.dump(state, f)


def merge(target: dict, patch: dict) -> dict:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value
    return target


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(1)


def main(argv: list[str]) -> None:
    state = load()
    assert argv[:2] == ["-n", "tradedesk"], argv
    args = argv[2:]
    stdin = sys.stdin.read() if "-" in args and args[:1] == ["apply"] else None
    state["calls"].append(args)
    save(state)
    deployments, services = state["deployments"], state["services"]
    verb = args[0]
    if verb == "get":
        kind, name = args[1], args[2]
        if kind == "service":
            print(json.dumps(services[name]))
        elif kind == "deployment":
            if name not in deployments:
                fail(f'Error from server (NotFound): deployments.apps "{name}" not found')
            print(json.dumps(deployments[name]))
        elif kind == "deployments":
            selector = dict(pair.split("=") for pair in args[3].split(","))
            items = [d for d in deployments.values() if matches(selector, d["metadata"]["labels"])]
            print(json.dumps({"items": items}))
        elif kind == "endpoints":
            # frozen_selector: endpoints that do not follow the Service (a broken endpoints controller).
            selector = state.get("frozen_selector") or services[name]["spec"]["selector"]
            addresses = [
                {"ip": "10.0.0.1", "targetRef": {"kind": "Pod", "name": f"{d['metadata']['name']}-{i}"}}
                for d in deployments.values()
                if matches(selector, d["spec"]["template"]["metadata"]["labels"])
                for i in range(d["spec"].get("replicas", 1))
            ]
            print(json.dumps({"subsets": [{"addresses": addresses}] if addresses else []}))
        return
    if verb == "apply":
        doc = json.loads(stdin)
        name = doc["metadata"]["name"]
        old = deployments.get(name)
        if old is not None and old["spec"]["selector"] != doc["spec"]["selector"]:
            fail("The Deployment is invalid: spec.selector: field is immutable")
        doc["status"] = {"readyReplicas": doc["spec"].get("replicas", 1)}
        deployments[name] = doc
    elif verb == "rollout":
        name = args[2].split("/", 1)[1]
        if name not in deployments or name in state["fail_rollout"]:
            fail(f'error: deployment "{name}" exceeded its progress deadline')
    elif verb == "exec":
        script = args[args.index("-c", args.index("--")) + 1]
        done = subprocess.run(
            [sys.executable, "-c", script.replace("http://127.0.0.1:8000", state["pod_url"])],
            capture_output=True,
            text=True,
        )
        sys.stdout.write(done.stdout)
        if done.returncode:
            fail(done.stderr[-500:] + "\ncommand terminated with exit code 1")
    elif verb == "patch":
        kind, name, patch = args[1], args[2], json.loads(args[args.index("-p") + 1])
        store = services if kind == "service" else deployments
        merge(store[name], patch)
    elif verb == "scale":
        name = args[1].split("/", 1)[1]
        replicas = int(args[2].split("=")[1])
        deployments[name]["spec"]["replicas"] = replicas
        deployments[name]["status"] = {"readyReplicas": replicas}
    else:
        fail(f"fake kubectl: unsupported {args}")
    save(state)


main(sys.argv[1:])
