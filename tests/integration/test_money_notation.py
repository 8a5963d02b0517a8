"""Money as users read it (issue 21): every decimal in every answer is in plain notation.

One seeded world (an instrument with candles, accounts with fills, resting orders, limits, alerts, a
completed backtest and a sweep: the schemathesis seed) and every GET operation of the OpenAPI document
called on it, as an admin and as a trader; no string anywhere in the answers may be a decimal in exponent
form ("1.0E+5", "0E-8"), and the HTML report may not carry one either.
"""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from litestar.testing import TestClient

from tests.conftest import RUN_ID, make_settings

EXPONENT_FORM = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)[eE][+-]?\d+$")


def _exponent_strings(value, where: str = "$"):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _exponent_strings(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _exponent_strings(item, f"{where}[{i}]")
    elif isinstance(value, str) and EXPONENT_FORM.match(value):
        yield where, value


@pytest.fixture(scope="module")
def seeded_world():
    from app.server.app import create_app
    from tests.integration.test_schemathesis import seed

    settings = make_settings(queue_name=f"tdtest-{RUN_ID}-money", redis_prefix=f"tdtest-{RUN_ID}-money")
    with TestClient(app=create_app(settings), timeout=30) as http:
        yield http, seed(http, settings, settings.admin_api_key)


def test_every_get_answer_is_in_plain_notation(seeded_world):
    http, data = seeded_world
    paths = http.get("/schema/openapi.json").json()["paths"]
    called = found = 0
    offenders: list[str] = []
    for role in ("admin", "trader"):
        seeded = dict(data[role])
        headers = seeded.pop("headers")
        for template, item in paths.items():
            if "get" not in item or template.startswith("/saq"):
                continue
            if "text/event-stream" in str(item["get"].get("responses", {})):
                continue  # a Server-Sent Events stream never ends (its messages: tests/integration/test_streams.py)
            names = re.findall(r"{([^}]+)}", template)
            if any(n not in seeded for n in names):
                continue
            url = template
            for n in names:
                url = url.replace("{" + n + "}", str(seeded[n]))
            resp = http.get(url, headers=headers)
            called += 1
            if resp.headers.get("content-type", "").startswith("application/json") and resp.content:
                body = resp.json()
                found += sum(1 for _ in _decimal_like(body))
                offenders += [f"{role} GET {url} {w} = {v!r}" for w, v in _exponent_strings(body)]
            elif resp.headers.get("content-type", "").startswith("text/html"):
                # the report: one charset, not "text/html; charset=utf-8; charset=utf-8"
                assert resp.headers["content-type"] == "text/html; charset=utf-8", resp.headers
                offenders += [f"{role} GET {url} html: {m}" for m in _html_exponents(resp.text)]
    assert called > 40 and found > 200, (called, found)
    assert not offenders, "\n".join(offenders)


def _decimal_like(value):
    """Strings that are decimals (plain or not): the walk must have seen real money, not only ids."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _decimal_like(item)
    elif isinstance(value, list):
        for item in value:
            yield from _decimal_like(item)
    elif isinstance(value, str):
        try:
            Decimal(value)
        except ArithmeticError:
            return
        yield value


def _html_exponents(text: str) -> list[str]:
    return re.findall(r"(?<![\w.])\d+(?:\.\d+)?E[+-]\d+(?![\w.])", text)


@pytest.mark.parametrize("text", ["1_000", "\u0661\u0660", "\uff11", " 5 ", "5 ", "1,5"])
def test_decimal_input_accepts_exactly_the_documented_pattern(seeded_world, text):
    http, data = seeded_world
    seeded = data["trader"]
    account = seeded["account_id"]
    order = {
        "symbol": seeded["symbol"],
        "side": "buy",
        "type": "limit",
        "quantity": text,
        "limit_price": "90",
    }
    resp = http.post(f"/api/v1/accounts/{account}/orders", json=order, headers=seeded["headers"])
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"][0]["field"] == "quantity", resp.text
    resp = http.post("/api/v1/accounts", json={"name": "x", "initial_cash": text}, headers=seeded["headers"])
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "initial_cash", resp.text


def test_plain_decimal_strings_still_accepted(seeded_world):
    http, data = seeded_world
    seeded = data["trader"]
    for text in ("100000", "1e5", "0.50", "+5", ".5"):
        resp = http.post(
            "/api/v1/accounts", json={"name": "x", "initial_cash": text}, headers=seeded["headers"]
        )
        assert resp.status_code == 201, (text, resp.text)
        assert "E" not in resp.json()["initial_cash"], resp.text


def test_json_numbers_reach_decimal_fields_exactly(seeded_world):
    """A decimal sent as a JSON number is read from its digits, never through a float (docs/DECISIONS.md):
    Litestar parses bodies into plain values before converting them, which made `1e2` "100.0" and cut
    the 17th significant digit."""
    http, data = seeded_world
    seeded = data["trader"]
    headers = {**seeded["headers"], "Content-Type": "application/json"}
    body = b'{"name": "exact", "initial_cash": 1234567.123456789012345}'
    resp = http.post("/api/v1/accounts", content=body, headers=headers)
    assert resp.status_code == 201 and resp.json()["initial_cash"] == "1234567.123456789012345", resp.text
    resp = http.post("/api/v1/accounts", content=b'{"name": "e", "initial_cash": 1e5}', headers=headers)
    assert resp.status_code == 201 and resp.json()["initial_cash"] == "100000", resp.text
    order = b'{"symbol": "%s", "side": "buy", "type": "limit", "quantity": 1e0, "limit_price": 9.0E+1}'
    orders = f"/api/v1/accounts/{seeded['account_id']}/orders"
    resp = http.post(orders, content=order % seeded["symbol"].encode(), headers=headers)
    assert resp.status_code == 201, resp.text
    assert (resp.json()["quantity"], resp.json()["limit_price"]) == ("1", "90"), resp.text
    # a number at a float position is still a float (a stress shock)
    stress = b'{"scenarios": [{"name": "dip", "shocks": {"*": -0.1}}], "accounts": ["%s"]}'
    resp = http.post("/api/v1/risk/stress", content=stress % seeded["account_id"].encode(), headers=headers)
    assert resp.status_code == 200 and set(resp.json()["results"][0]["shocks"].values()) == {-0.1}, resp.text


def test_backtest_trades_are_rounded_to_the_instruments_tick_and_lot(seeded_world):
    """The seeded instrument has tick 0.01 and lot 1; the engine computes in floats ("732.0",
    "198.40075000000002" before)."""
    http, data = seeded_world
    seeded = data["trader"]
    resp = http.get(f"/api/v1/backtests/{seeded['backtest_id']}/trades?limit=500", headers=seeded["headers"])
    assert resp.status_code == 200, resp.text
    trades = resp.json()["items"]
    assert trades
    for t in trades:
        assert "." not in t["quantity"], t
        for key in ("entry_price", "exit_price"):
            if t[key] is not None:
                assert len(t[key].partition(".")[2]) == 2, t
        for key in ("pnl", "commission"):
            assert len(t[key].partition(".")[2]) <= 8, t
