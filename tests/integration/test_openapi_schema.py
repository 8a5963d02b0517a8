"""The OpenAPI document says what decoding enforces (app/lib/openapi_schema.py)."""

from __future__ import annotations

import re
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.lib.openapi_schema import DECIMAL_PATTERN, NON_NEGATIVE_DECIMAL_PATTERN, POSITIVE_DECIMAL_PATTERN


@pytest.mark.asyncio(loop_scope="session")
async def test_decimals_and_unknown_fields_are_documented(client, make_user):
    trader = await make_user("trader")
    schema = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    order = schema["OrderCreate"]
    assert order["additionalProperties"] is False
    # quantity must be > 0 (OrderCreate.__post_init__), and the schema says so
    assert order["properties"]["quantity"]["oneOf"][:2] == [
        {"type": "string", "pattern": POSITIVE_DECIMAL_PATTERN},
        {"type": "number", "exclusiveMaximum": 1e20, "exclusiveMinimum": 0},
    ]
    # ... and the API does refuse an unknown field.
    resp = await client.post(
        "/api/v1/accounts/00000000-0000-4000-8000-000000000000/orders",
        json={"symbol": "X", "side": "buy", "type": "market", "quantity": "1", "colour": "red"},
        headers=trader["headers"],
    )
    assert resp.status_code == 400, resp.text


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_every_decimal_string_the_pattern_admits_decodes_exactly(value):
    text = str(value)
    assert re.fullmatch(DECIMAL_PATTERN, text)
    assert msgspec.json.decode(msgspec.json.encode(text), type=Decimal) == value


@pytest.mark.parametrize("text", ["1.2.3", "abc", "", "1e", "--1", "NaN", "Infinity", "1,5"])
def test_the_pattern_refuses_what_is_not_a_finite_decimal(text):
    assert re.fullmatch(DECIMAL_PATTERN, text) is None


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_the_bounded_patterns_admit_exactly_the_bounded_values(value):
    for text in (str(value), format(value, "f")):
        assert bool(re.fullmatch(POSITIVE_DECIMAL_PATTERN, text)) == (value > 0), text
        assert bool(re.fullmatch(NON_NEGATIVE_DECIMAL_PATTERN, text)) == (value >= 0), text


async def test_feed_symbols_state_their_length_bound(client):
    """Litestar drops a Meta on a list's item type; the document copies it from msgspec's own schema, so a
    generator never sends a symbol the server refuses as too long."""
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    for name in ("ReplayCreate", "SimulationCreate"):
        assert schemas[name]["properties"]["symbols"]["items"] == {"type": "string", "maxLength": 64}, name


@pytest.mark.asyncio(loop_scope="session")
async def test_limit_kinds_are_listed_for_accounts_and_groups_apart(client):
    """An account limit and a group limit take different kinds; each body lists its own, so a client
    generated from the document can create every group limit and no kind the server refuses."""
    from app.domain.risk.checks import LIMIT_TYPES
    from app.domain.risk.groups import GROUP_LIMIT_TYPES

    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    assert schemas["LimitCreate"]["properties"]["limit_type"]["enum"] == list(LIMIT_TYPES)
    assert schemas["GroupLimitCreate"]["properties"]["limit_type"]["enum"] == list(GROUP_LIMIT_TYPES)
