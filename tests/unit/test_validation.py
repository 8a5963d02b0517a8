"""Decimal field constraints (app/lib/validation.py): bad magnitudes are a 400, never an overflow."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from app.domain.risk.schemas import LimitPatch
from app.domain.trading.schemas import OrderCreate


@pytest.mark.parametrize("text", [".582E+31402557204", "1E+1000000", "1E+20", "-1E+999999999"])
def test_huge_exponents_are_refused_as_too_large(text):
    body = {"symbol": "X", "side": "buy", "type": "market", "quantity": text}
    with pytest.raises(msgspec.ValidationError, match="too large|greater than 0"):
        msgspec.json.decode(msgspec.json.encode(body), type=OrderCreate)


def test_the_patch_that_was_a_500_is_a_validation_error():
    body = b'{"warn_at_pct": "-0.42368677", "value": ".582E+31402557204", "symbol": "INF", "enabled": false}'
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(body, type=LimitPatch)


@pytest.mark.parametrize("text", ["99999999999999999999.99", "0E+50", "1E+19"])
def test_values_below_the_bound_pass(text):
    body = {"symbol": "X", "side": "buy", "type": "market", "quantity": text}
    if Decimal(text) == 0:
        with pytest.raises(msgspec.ValidationError, match="greater than 0"):
            msgspec.json.decode(msgspec.json.encode(body), type=OrderCreate)
    else:
        assert msgspec.json.decode(msgspec.json.encode(body), type=OrderCreate).quantity == Decimal(text)
