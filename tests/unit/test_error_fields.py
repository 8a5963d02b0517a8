"""Which field a 4xx problem names for a body msgspec could not read (app.lib.errors.messages): the path
msgspec reports, and for a message about one field of a nested object, that field under the path."""

from __future__ import annotations

import msgspec
import pytest

from app.domain.trading.schemas import OrderCreate
from app.lib.errors.messages import field_from_message

BRACKET = (
    '{"symbol":"X","side":"buy","type":"limit","quantity":"1","limit_price":"1","order_class":"bracket",'
    '"take_profit":TP,"stop_loss":SL}'
)


@pytest.mark.parametrize(
    ("take_profit", "stop_loss", "field"),
    [
        ('{"limit_price":"2"}', '{"stop_price":"0"}', "stop_loss.stop_price"),
        ('{"limit_price":"1e25"}', '{"stop_price":"1"}', "take_profit.limit_price"),
        ('{"limit_price":"2"}', '{"stop_price":"1","limit_price":"-1"}', "stop_loss.limit_price"),
        ("{}", '{"stop_price":"1"}', "take_profit.limit_price"),
        ('{"limit_price":"2","extra":1}', '{"stop_price":"1"}', "take_profit.extra"),
        ('{"limit_price":"abc"}', '{"stop_price":"1"}', "take_profit.limit_price"),
    ],
)
def test_a_field_of_a_nested_object_is_named_under_its_path(take_profit, stop_loss, field):
    body = BRACKET.replace("TP", take_profit).replace("SL", stop_loss).encode()
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(body, type=OrderCreate)
    assert field_from_message(str(caught.value)) == field


@pytest.mark.parametrize(
    ("message", "field"),
    [
        ("Invalid decimal string - at `$.quantity`", "quantity"),
        ("Expected `int`, got `str` - at `$.candles[3].open`", "candles[3].open"),
        ("`tick_size` must be positive", "tick_size"),
        ("Object missing required field `symbol`", "symbol"),
        ("Expected `object`, got `array` - at `$`", "body"),
        ("Expected `object`, got `array`", "body"),  # (Litestar's message has no path: not a field `object`)
    ],
)
def test_other_messages_name_the_path_or_the_field(message, field):
    assert field_from_message(message) == field


def test_unstorable_text_is_named_under_its_path() -> None:
    from app.lib.errors.sqlstate import _unstorable_paths

    found: list[str] = []
    body = {
        "symbol": "ok",
        "stop_loss": {"stop_price": "1", "note": "a\x00"},
        "legs": [{"s": "x"}, {"s": "\x00"}],
    }
    _unstorable_paths(body, "", found)
    assert found == ["stop_loss.note", "legs[1].s"]
    found = []
    _unstorable_paths("\x00", "", found)
    assert found == ["body"]
