"""The client's models mirror the server's OpenAPI schemas: a field added, dropped or renamed on either
side fails here, and so does a decimal field that the client would decode as something else."""

from __future__ import annotations

import decimal
import typing
from decimal import Decimal

import msgspec
import pytest
from tradedesk_client import errors
from tradedesk_client._transport import RetryPolicy, parse_retry_after
from tradedesk_client.models import SERVER_SCHEMAS


@pytest.fixture(scope="module")
def openapi_schemas():
    from app.server.app import create_app
    from tests.conftest import make_settings

    return create_app(make_settings()).openapi_schema.to_schema()["components"]["schemas"]


def _is_decimal(prop: dict) -> bool:
    """The server documents a decimal as "a string or a JSON number" (read without floats)."""
    variants = prop.get("oneOf") or prop.get("anyOf") or [prop]
    types = set()
    for variant in variants:
        kind = variant.get("type")
        types.update(kind if isinstance(kind, list) else [kind])
    return types - {"null"} == {"string", "number"}


def _annotation_has_decimal(annotation) -> bool:
    return annotation is decimal.Decimal or decimal.Decimal in typing.get_args(annotation)


@pytest.mark.parametrize("model", sorted(SERVER_SCHEMAS, key=lambda m: m.__name__), ids=lambda m: m.__name__)
def test_model_fields_match_the_server_schema(model, openapi_schemas):
    schema = openapi_schemas[SERVER_SCHEMAS[model]]
    server_fields = set(schema.get("properties", {}))
    client_fields = set(model.__struct_fields__)
    if tag_field := model.__struct_config__.tag_field:  # a tagged union member: the tag is a property
        client_fields.add(tag_field)
    assert client_fields == server_fields, (
        f"{model.__name__} vs {SERVER_SCHEMAS[model]}: only in the client "
        f"{sorted(client_fields - server_fields)}, only on the server {sorted(server_fields - client_fields)}"
    )
    hints = typing.get_type_hints(model)
    for name, prop in schema["properties"].items():
        if _is_decimal(prop):
            assert _annotation_has_decimal(hints[name]), f"{model.__name__}.{name} is a decimal on the server"
    # A field the server always sends has no default in the client, so a server that stopped sending it
    # fails to decode loudly instead of silently handing the bot a None.
    defaulted = {f.name for f in msgspec.structs.fields(model) if not f.required}
    always_sent = set(schema.get("required", []))
    assert not always_sent & defaulted, (
        f"{model.__name__}: {sorted(always_sent & defaulted)} required on the server"
    )


def test_every_schema_the_client_decodes_exists(openapi_schemas):
    missing = {m.__name__: s for m, s in SERVER_SCHEMAS.items() if s not in openapi_schemas}
    assert not missing


def test_problem_details_become_typed_errors():
    risk = errors.error_for(
        422,
        {
            "type": "https://tradedesk.dev/problems/risk-limit-breached",
            "title": "Risk",
            "detail": "over",
            "limit_type": "max_order_quantity",
            "limit_value": "3",
            "would_be": "10",
        },
    )
    assert isinstance(risk, errors.RiskLimitBreached) and risk.limit_type == "max_order_quantity"
    assert risk.limit_value == Decimal(3) and risk.would_be == Decimal(10)
    assert isinstance(risk.would_be, Decimal) and risk.would_be > 5
    assert risk.slug == "risk-limit-breached"
    assert type(errors.error_for(404, {"title": "Not Found"})) is errors.NotFound
    assert type(errors.error_for(502, {})) is errors.ServerError
    field = errors.error_for(422, {"errors": [{"field": "quantity", "message": "not a multiple of the lot"}]})
    assert field.field_errors() == {"quantity": "not a multiple of the lot"}


def test_retry_after_and_backoff():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None
    policy = RetryPolicy(backoff=0.5, max_backoff=4, max_retry_after=30)
    assert 10 <= policy.delay(1, 10.0) <= 10.5
    assert 30 <= policy.delay(1, 500.0) <= 30.5
    for attempt in range(1, 10):
        assert 0 <= policy.delay(attempt, None) <= min(4, 0.5 * 2 ** (attempt - 1))
