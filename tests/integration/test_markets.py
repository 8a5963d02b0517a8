from __future__ import annotations

import uuid

import pytest

from app.domain.markets.synthetic import candles_to_csv, generate_candles

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _sym(prefix: str = "T") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8].upper()}"


async def make_market(client, admin_headers, *, tick="0.01", lot="1", min_qty="1", min_notional="0",
                      maker="0.0005", taker="0.001", slippage="0", price: str | None = None) -> str:
    code = _sym("X")
    resp = await client.post(
        "/api/v1/exchanges",
        json={"code": code, "name": "Test", "maker_fee_rate": maker, "taker_fee_rate": taker, "slippage_bps": slippage},
        headers=admin_headers,
    )
    assert resp.status_code == 201, resp.text
    symbol = _sym()
    resp = await client.post(
        "/api/v1/instruments",
        json={"symbol": symbol, "exchange": code, "base_asset": "ABC", "quote_asset": "USD", "tick_size": tick,
              "lot_size": lot, "min_quantity": min_qty, "min_notional": min_notional},
        headers=admin_headers,
    )
    assert resp.status_code == 201, resp.text
    if price is not None:
        resp = await client.post(f"/api/v1/instruments/{symbol}/price", json={"price": price}, headers=admin_headers)
        assert resp.status_code == 200, resp.text
    return symbol


async def test_exchange_and_instrument_crud_and_roles(client, admin_headers, make_user):
    trader = await make_user("trader")
    symbol = await make_market(client, admin_headers)
    resp = await client.get(f"/api/v1/instruments/{symbol}", headers=trader["headers"])
    assert resp.status_code == 200
    body = resp.json()
    assert body["tick_size"] == "0.01" and body["status"] == "trading" and body["last_price"] is None
    # traders read but cannot create or modify
    resp = await client.post("/api/v1/exchanges", json={"code": "NOPE", "name": "n"}, headers=trader["headers"])
    assert resp.status_code == 403
    resp = await client.patch(f"/api/v1/instruments/{symbol}", json={"status": "halted"}, headers=trader["headers"])
    assert resp.status_code == 403
    # halting is visible at once (cache invalidated)
    resp = await client.patch(f"/api/v1/instruments/{symbol}", json={"status": "halted"}, headers=admin_headers)
    assert resp.status_code == 200 and resp.json()["status"] == "halted"
    resp = await client.get(f"/api/v1/instruments/{symbol}", headers=trader["headers"])
    assert resp.json()["status"] == "halted"
    # duplicate is a conflict, unknown is 404
    code = body["exchange"]
    assert (await client.post("/api/v1/exchanges", json={"code": code, "name": "dup"}, headers=admin_headers)).status_code == 409
    assert (await client.get("/api/v1/instruments/NOSUCH", headers=trader["headers"])).status_code == 404


async def test_instrument_validation(client, admin_headers):
    resp = await client.post(
        "/api/v1/instruments",
        json={"symbol": "BAD1", "exchange": "NOPE", "base_asset": "A", "quote_asset": "B", "tick_size": "0", "lot_size": "1"},
        headers=admin_headers,
    )
    assert resp.status_code == 400
    assert any("tick_size" in e["field"] for e in resp.json()["errors"])


async def test_a_candle_close_off_the_tick_grid_becomes_a_last_price_on_it(client, admin_headers):
    symbol = await make_market(client, admin_headers, tick="0.05")
    candles = [{"ts": "2026-01-01T00:00:00Z", "open": "100", "high": "101", "low": "99", "close": "100.03",
                "volume": "1"}]
    url = f"/api/v1/instruments/{symbol}"
    body = {"timeframe": "1d", "candles": candles}
    resp = await client.post(f"{url}/candles", json=body, headers=admin_headers)
    assert resp.status_code == 201 and resp.json()["last_price"] == "100.05", resp.text
    assert (await client.get(f"{url}/price", headers=admin_headers)).json()["price"] == "100.05"
    stored = await client.get(f"{url}/candles?timeframe=1d", headers=admin_headers)
    assert stored.json()["items"][0]["close"] == "100.03"  # the candle as sent


async def test_candle_json_upload_query_and_reload(client, admin_headers):
    symbol = await make_market(client, admin_headers)
    candles = [
        {"ts": "2026-01-01T00:00:00Z", "open": "10", "high": "11", "low": "9", "close": "10.5", "volume": "100"},
        {"ts": "2026-01-02T05:30:00+05:30", "open": "10.5", "high": "12", "low": "10", "close": "11", "volume": "50"},
    ]
    resp = await client.post(f"/api/v1/instruments/{symbol}/candles", json={"timeframe": "1d", "candles": candles}, headers=admin_headers)
    assert resp.status_code == 201, resp.text
    assert resp.json()["rows"] == 2 and resp.json()["last_price"] == "11"
    resp = await client.get(f"/api/v1/instruments/{symbol}/candles?timeframe=1d", headers=admin_headers)
    items = resp.json()["items"]
    assert [c["ts"] for c in items] == ["2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"]
    assert items[0]["close"] == "10.5"
    # reload upserts (and the cached query sees it)
    candles[0]["close"] = "10.25"
    resp = await client.post(f"/api/v1/instruments/{symbol}/candles", json={"timeframe": "1d", "candles": candles[:1]}, headers=admin_headers)
    assert resp.status_code == 201
    resp = await client.get(f"/api/v1/instruments/{symbol}/candles?timeframe=1d", headers=admin_headers)
    assert [c["close"] for c in resp.json()["items"]] == ["10.25", "11"]
    # range query returns exactly the stored rows in range
    resp = await client.get(
        f"/api/v1/instruments/{symbol}/candles?timeframe=1d&start=2026-01-02T00:00:00Z", headers=admin_headers
    )
    assert [c["ts"] for c in resp.json()["items"]] == ["2026-01-02T00:00:00Z"]
    # a range that ends before it starts, and an upload whose ?timeframe= contradicts its body, are refused
    resp = await client.get(
        f"/api/v1/instruments/{symbol}/candles?start=2026-01-02T00:00:00Z&end=2026-01-01T00:00:00Z",
        headers=admin_headers,
    )
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "end", resp.text
    resp = await client.post(
        f"/api/v1/instruments/{symbol}/candles?timeframe=1h", json={"timeframe": "1d", "candles": candles[:1]},
        headers=admin_headers,
    )
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "timeframe", resp.text


async def test_bad_row_rejects_whole_batch(client, admin_headers):
    symbol = await make_market(client, admin_headers)
    candles = [
        {"ts": "2026-01-01T00:00:00Z", "open": "10", "high": "11", "low": "9", "close": "10.5", "volume": "1"},
        {"ts": "2026-01-02T00:00:00Z", "open": "10", "high": "8", "low": "9", "close": "10", "volume": "1"},
    ]
    resp = await client.post(f"/api/v1/instruments/{symbol}/candles", json={"timeframe": "1d", "candles": candles}, headers=admin_headers)
    assert resp.status_code == 422
    body = resp.json()
    assert body["row"] == 2 and "high" in body["detail"]
    # the field is the candle's JSON path (0-based), `row` its position (1-based)
    assert [e["field"] for e in body["errors"]] == ["candles[1].high"], body
    resp = await client.get(f"/api/v1/instruments/{symbol}/candles?timeframe=1d", headers=admin_headers)
    assert resp.json()["items"] == []
    assert (await client.get(f"/api/v1/instruments/{symbol}/price", headers=admin_headers)).json()["price"] is None


async def test_csv_upload_streams_and_rejects_bad_rows(client, admin_headers):
    symbol = await make_market(client, admin_headers)
    rows = generate_candles(bars=500, seed=7, timeframe="1h")
    csv = candles_to_csv(rows)
    resp = await client.post(
        f"/api/v1/instruments/{symbol}/candles?timeframe=1h", content=csv.encode(),
        headers={**admin_headers, "Content-Type": "text/csv"},
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["rows"] == 500
    assert resp.json()["last_price"] == str(rows[-1].close)
    resp = await client.get(f"/api/v1/instruments/{symbol}/candles?timeframe=1h&limit=10000", headers=admin_headers)
    assert len(resp.json()["items"]) == 500
    # `limit` without `start`: the newest candles (a bot's "last N bars"), ascending; with `start`, the
    # first N from it; with `end` only, the newest N up to it.
    url = f"/api/v1/instruments/{symbol}/candles?timeframe=1h&limit=3"
    ts = [r.ts.isoformat().replace("+00:00", "Z") for r in rows]
    items = (await client.get(url, headers=admin_headers)).json()["items"]
    assert [i["ts"] for i in items] == ts[-3:]
    newest = f"/api/v1/instruments/{symbol}/candles?timeframe=1h&limit=200"
    assert [i["ts"] for i in (await client.get(newest, headers=admin_headers)).json()["items"]] == ts[-200:]
    items = (await client.get(f"{url}&start={ts[10]}", headers=admin_headers)).json()["items"]
    assert [i["ts"] for i in items] == ts[10:13]
    items = (await client.get(f"{url}&end={ts[10]}", headers=admin_headers)).json()["items"]
    assert [i["ts"] for i in items] == ts[8:11]
    # bad header -> 422 naming row 0, nothing written
    sym2 = await make_market(client, admin_headers)
    resp = await client.post(
        f"/api/v1/instruments/{sym2}/candles?timeframe=1h", content=b"time,o,h,l,c,v\n",
        headers={**admin_headers, "Content-Type": "text/csv"},
    )
    assert resp.status_code == 422 and resp.json()["row"] == 0
    # invalid UTF-8 -> 422
    resp = await client.post(
        f"/api/v1/instruments/{sym2}/candles?timeframe=1h", content=b"ts,open,high,low,close,volume\n\xff\xfe,1,1,1,1,1\n",
        headers={**admin_headers, "Content-Type": "text/csv"},
    )
    assert resp.status_code == 422
    # a bad row deep in the file (after earlier batches were staged) writes nothing
    lines = csv.splitlines()
    lines[400] = lines[400].rsplit(",", 1)[0] + ",-5"
    resp = await client.post(
        f"/api/v1/instruments/{sym2}/candles?timeframe=1h", content=("\n".join(lines) + "\n").encode(),
        headers={**admin_headers, "Content-Type": "text/csv"},
    )
    assert resp.status_code == 422 and resp.json()["row"] == 400
    resp = await client.get(f"/api/v1/instruments/{sym2}/candles?timeframe=1h", headers=admin_headers)
    assert resp.json()["items"] == []


async def test_price_roundtrip_and_tick_validation(client, admin_headers, make_user):
    symbol = await make_market(client, admin_headers)
    trader = await make_user("trader")
    resp = await client.post(f"/api/v1/instruments/{symbol}/price", json={"price": "101.25"}, headers=trader["headers"])
    assert resp.status_code == 403
    resp = await client.post(f"/api/v1/instruments/{symbol}/price", json={"price": "101.255"}, headers=admin_headers)
    assert resp.status_code == 422
    resp = await client.post(f"/api/v1/instruments/{symbol}/price", json={"price": "101.25"}, headers=admin_headers)
    assert resp.status_code == 200
    body = (await client.get(f"/api/v1/instruments/{symbol}/price", headers=trader["headers"])).json()
    assert body["price"] == "101.25" and body["ts"].endswith("Z")
