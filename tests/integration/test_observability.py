"""deploy/observability/ proven against live metrics.

`promtool` checks and unit-tests the rules; then Debian's `prometheus` scrapes a real `tradedesk serve`
and `tradedesk worker --metrics-port` under a short load, every dashboard query, recording rule and alert
expression is run through Prometheus's HTTP API and must return series (every metric selector in an
alert, with its labels, must match something), and two provoked conditions make their alerts fire: a
burst of bad keys (TradedeskAuthFailureSpike) and a killed worker (TradedeskTargetDown,
TradedeskWorkersMissing). The live copy of the rules evaluates every second with `for: 0s`; the real
`for` durations are covered by `promtool test rules`. Skipped when prometheus/promtool are not installed
(Debian: `apt-get install prometheus`).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import _free_port, server_env

ROOT = Path(__file__).resolve().parents[2]
OBS = ROOT / "deploy" / "observability"
RULES = [OBS / "prometheus" / "recording-rules.yml", OBS / "prometheus" / "alert-rules.yml"]
PROMETHEUS, PROMTOOL = shutil.which("prometheus"), shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None,
    reason="prometheus not installed (apt-get install prometheus): live dashboard/alert test skipped",
)

# A metric selector in PromQL: a tradedesk metric or recording rule, or `up{...}`, with its matchers.
SELECTOR = re.compile(r"(?<![\w:])(tradedesk[_:][A-Za-z0-9_:]*|up(?=\{))(\{[^}]*\})?")


def rules() -> list[dict]:
    return [
        rule
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def panel_queries() -> list[tuple[str, str]]:
    found = []
    for path in sorted((OBS / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            found += [(f"{path.stem} / {panel['title']}", t["expr"]) for t in panel["targets"]]
    return found


@needs_promtool
def test_promtool_checks_and_unit_tests_the_rules():
    check = subprocess.run([PROMTOOL, "check", "rules", *map(str, RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    unit = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts.test.yml"],
        cwd=OBS / "prometheus" / "tests",
        capture_output=True,
        text=True,
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_every_alert_has_a_runbook_and_severity():
    alerts = [r for r in rules() if "alert" in r]
    assert len(alerts) >= 10
    for alert in alerts:
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert len(alert["annotations"]["runbook"]) > 80 and alert["annotations"]["summary"], alert["alert"]


def test_dashboards_match_their_generator():
    sys.path.insert(0, str(OBS / "grafana"))
    try:
        import build_dashboards
    finally:
        sys.path.pop(0)
    rendered = build_dashboards.render()
    on_disk = {p.name: p.read_text() for p in (OBS / "grafana" / "dashboards").glob("*.json")}
    assert rendered == on_disk, "run python deploy/observability/grafana/build_dashboards.py"
    titles = {json.loads(text)["title"] for text in on_disk.values()}
    assert titles == {
        "Tradedesk / API",
        "Tradedesk / Trading",
        "Tradedesk / Jobs",
        "Tradedesk / PostgreSQL pool and Redis",
    }
    datasource = yaml.safe_load(
        (OBS / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = datasource["datasources"][0]["uid"]
    for text in on_disk.values():
        for panel in json.loads(text)["panels"]:
            assert panel["datasource"]["uid"] == uid and panel["targets"], panel["title"]


def _start(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait_http(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready in {seconds} s")
        time.sleep(0.2)


def _live_rules(tmp: Path) -> list[str]:
    """The rules as shipped, evaluated every second and firing without their `for` delay."""
    paths = []
    for path in RULES:
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                if "alert" in rule:
                    rule["for"] = "0s"
        target = tmp / path.name
        target.write_text(yaml.safe_dump(doc))
        paths.append(str(target))
    return paths


class Prom:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict]:
        resp = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = resp.json()
        assert resp.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
        return body["data"]["result"]

    def firing(self) -> set[str]:
        alerts = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}

    def wait_for(self, what: str, check, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; firing: {sorted(self.firing())}")
            time.sleep(0.5)


async def _load(api: str, admin: dict[str, str]) -> None:
    """Orders and fills, a risk rejection, a rules rejection, cached reads, a halt, and jobs."""
    from tests.integration.helpers import make_account, make_market, place

    async with httpx.AsyncClient(base_url=api, timeout=30) as c:
        symbol = await make_market(c, admin, price="100")
        resp = await c.post(
            "/api/v1/users", json={"email": f"obs-{uuid.uuid4().hex[:8]}@e.co"}, headers=admin
        )
        trader = {"Authorization": f"Bearer {resp.json()['api_key']}"}
        acct = await make_account(c, trader, cash="1000000")
        for _ in range(20):
            await place(c, trader, acct, symbol=symbol, side="buy", type="market", quantity="1")
        await place(c, trader, acct, symbol=symbol, side="buy", type="limit", quantity="1", limit_price="90")
        resp = await c.post(
            f"/api/v1/accounts/{acct}/risk/limits",
            json={"limit_type": "max_order_quantity", "value": "5"},
            headers=admin,
        )
        assert resp.status_code == 201, resp.text
        await place(c, trader, acct, expect=422, symbol=symbol, side="buy", type="market", quantity="6")
        await place(c, trader, acct, expect=422, symbol=symbol, side="buy", type="market", quantity="0.5")
        for _ in range(5):
            assert (await c.get(f"/api/v1/instruments/{symbol}", headers=trader)).status_code == 200
        halted = await make_account(c, trader)
        resp = await c.put(
            f"/api/v1/accounts/{halted}/trading-state",
            json={"state": "halted", "reason": "obs"},
            headers=admin,
        )
        assert resp.status_code == 200
        for function in ("risk.monitor_all", "system.echo"):
            resp = await c.post("/api/v1/jobs", json={"function": function}, headers=admin)
            assert resp.status_code == 202, resp.text


async def _bad_key_burst(api: str, count: int) -> None:
    async with httpx.AsyncClient(base_url=api, timeout=30) as c:
        for start in range(0, count, 25):
            codes = await asyncio.gather(
                *(
                    c.get("/api/v1/users/me", headers={"X-API-Key": f"td_bad{i}"})
                    for i in range(start, start + 25)
                )
            )
            assert {r.status_code for r in codes} <= {401, 429}


@needs_prometheus
@pytest.mark.slow
def test_dashboards_and_alerts_against_live_prometheus(settings, tmp_path):
    api_port, worker_port, prom_port = _free_port(), _free_port(), _free_port()
    api, prom_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{prom_port}"
    namespace = f"tdobs-{uuid.uuid4().hex[:8]}"
    env = server_env(
        settings,
        TRADEDESK_QUEUE_NAME=namespace,
        TRADEDESK_REDIS_PREFIX=namespace,
        AUTH_SLOWDOWN_AFTER="5",
        AUTH_SLOWDOWN_BASE_MS="1",
        AUTH_SLOWDOWN_MAX_MS="5",
        AUTH_BLOCK_AFTER="20",
        AUTH_BLOCK_SECONDS="60",
        METRICS_REFRESH_SECONDS="0.5",
    )
    tradedesk = str(Path(sys.executable).with_name("tradedesk"))
    admin = {"Authorization": f"Bearer {settings.admin_api_key}"}
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": _live_rules(tmp_path),
        "scrape_configs": [
            {"job_name": "tradedesk-api", "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}]},
            {"job_name": "tradedesk-worker", "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}]},
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    procs = []
    try:
        server = _start(
            [tradedesk, "serve", "--host", "127.0.0.1", "--port", str(api_port), "--no-access-log"], env
        )
        worker = _start([tradedesk, "worker", "--metrics-port", str(worker_port), "--concurrency", "4"], env)
        prometheus = _start(
            [
                PROMETHEUS,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
                "--log.level=warn",
            ]
        )
        procs = [server, worker, prometheus]
        _wait_http(f"{api}/ready", server)
        _wait_http(f"http://127.0.0.1:{worker_port}/metrics", worker)
        _wait_http(f"{prom_url}/-/ready", prometheus)
        prom = Prom(prom_url)

        asyncio.run(_load(api, admin))
        # Scraped, evaluated, and the monitor job has run on the worker.
        prom.wait_for(
            "the load in Prometheus", lambda: prom.query('tradedesk:orders:rate1m{status="filled"}')
        )
        prom.wait_for(
            "the worker's job metrics",
            lambda: prom.query('tradedesk_job_last_success_timestamp_seconds{function="risk.monitor_all"}'),
        )
        prom.wait_for("pool gauges", lambda: prom.query('tradedesk_db_pool_connections{pool="orders"}'))

        empty = []
        for where, expr in panel_queries():
            if not prom.query(expr.replace("$__rate_interval", "30s")):
                empty.append(f"panel {where}: {expr}")
        for rule in rules():
            if "record" in rule and not prom.query(rule["record"]):
                empty.append(f"recording rule {rule['record']}")
            if "alert" in rule:
                prom.query(rule["expr"])  # evaluates without error
                selectors = [m.group(0) for m in SELECTOR.finditer(rule["expr"])]
                assert selectors, rule["alert"]
                empty += [f"alert {rule['alert']}: {s}" for s in selectors if not prom.query(s)]
        assert not empty, "queries without series:\n" + "\n".join(empty)

        # Nothing is wrong yet.
        assert not prom.firing() & {
            "TradedeskAuthFailureSpike",
            "TradedeskWorkersMissing",
            "TradedeskTargetDown",
        }

        # A burst of bad keys: slowed, then blocked, counted, alerted.
        asyncio.run(_bad_key_burst(api, 150))
        prom.wait_for("TradedeskAuthFailureSpike", lambda: "TradedeskAuthFailureSpike" in prom.firing())

        def outcomes() -> set[str]:
            return {r["metric"]["outcome"] for r in prom.query("tradedesk:auth_failures:increase5m > 0")}

        # The alert can fire on an evaluation of the recording rule that has not yet seen the burst's last
        # (blocked) failures: wait for a later evaluation rather than read once.
        prom.wait_for("every auth failure outcome recorded", lambda: len(outcomes()) == 3)
        assert outcomes() == {"rejected", "slowed", "blocked"}

        # A killed worker: its target goes down and, once its heartbeat expires, no worker is alive.
        worker.kill()
        worker.wait(10)
        prom.wait_for("TradedeskTargetDown", lambda: "TradedeskTargetDown" in prom.firing())
        prom.wait_for("TradedeskWorkersMissing", lambda: "TradedeskWorkersMissing" in prom.firing())
    finally:
        for proc in procs:
            _stop(proc)


def test_vector_log_shipping_example_parses_and_routes_security_events():
    config = yaml.safe_load((OBS / "vector.yaml").read_text())
    assert config["sources"]["tradedesk_pods"]["type"] == "kubernetes_logs"
    assert config["transforms"]["by_category"]["route"]["security"] == '.category == "security"'
    sinks = config["sinks"]
    assert sinks["loki_security"]["inputs"] == ["by_category.security"]
    assert sinks["loki_app"]["inputs"] == ["by_category._unmatched"]
    # High-cardinality ids stay in the line, never labels.
    for sink in sinks.values():
        assert not {"request_id", "trace_id"} & {v.strip("{} ") for v in sink["labels"].values()}
