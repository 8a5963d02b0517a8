"""OpenAPI schema details Litestar's generator leaves out, so the document says what decoding enforces.

* Decimal fields (money, prices, quantities) are generated as a bare `string`. Bodies accept a decimal
  string or a JSON number (msgspec reads the number's digits, never through a float) and answers always
  carry strings, so the schema says exactly that, with the pattern of an accepted string.
* Structs declared with `forbid_unknown_fields=True` answer 400 to an unknown field: the schema says
  `additionalProperties: false` (Litestar's struct plugin does not look at that flag).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import msgspec
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.openapi.spec import OpenAPIType, Reference, Schema
from litestar.plugins import OpenAPISchemaPlugin

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.typing import FieldDefinition

DECIMAL_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


class DecimalSchemaPlugin(OpenAPISchemaPlugin):
    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return value is Decimal

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        return Schema(
            one_of=[Schema(type=OpenAPIType.STRING, pattern=DECIMAL_PATTERN), Schema(type=OpenAPIType.NUMBER)],
            description="Exact decimal: a string (always, in answers) or a JSON number (read without floats)",
        )


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's struct schema, plus `additionalProperties: false` where unknown fields are refused."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        info = msgspec.inspect.type_info(field_definition.type_)
        if getattr(info, "forbid_unknown_fields", False):
            target = schema
            if isinstance(schema, Reference):  # registered component: mark the stored schema
                target = schema_creator.schema_registry.from_reference(schema).schema
            target.additional_properties = False
        return schema


def openapi_schema_plugins() -> list[OpenAPISchemaPlugin]:
    return [DecimalSchemaPlugin(), StrictStructSchemaPlugin()]
