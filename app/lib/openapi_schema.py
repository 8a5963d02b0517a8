"""OpenAPI schema details Litestar's generator leaves out, so the document says what decoding enforces.

* Decimal fields (money, prices, quantities) are generated as a bare `string`. Bodies accept a decimal
  string or a JSON number (msgspec reads the number's digits, never through a float) and answers always
  carry strings, so the schema says exactly that, with the pattern of an accepted string.
* Structs declared with `forbid_unknown_fields=True` answer 400 to an unknown field: the schema says
  `additionalProperties: false` (Litestar's struct plugin does not look at that flag).
* The docs page (/schema) is Swagger UI served from this app's own assets, with both key schemes.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Router
from litestar._openapi.schema_generation.plugins.struct import StructSchemaPlugin
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, OpenAPI, OpenAPIType, Reference, Schema, SecurityScheme
from litestar.openapi.spec.security_requirement import SecurityRequirement
from litestar.plugins import OpenAPISchemaPlugin
from litestar.static_files import create_static_files_router

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


# ------------------------------------------------------------------------------------ the docs page, offline

SWAGGER_ASSETS = "/static/swagger-ui"  # anonymous, like /schema (app/domain/identity/middleware.py)
BEARER, API_KEY = "BearerAuth", "ApiKeyAuth"
# Routes that answer without a key; their operations say so (`security: []`) so the docs page does not
# show a lock on them.
ANONYMOUS_OPERATIONS = ("/health", "/ready", "/api/v1/health")


def swagger_assets_dir() -> Path:
    """Swagger UI 5's JS/CSS/icons as packaged by swagger-ui-py (its `static/` folder): the docs page loads
    them from this app, never from a CDN, so it works offline and behind a strict egress policy."""
    import swagger_ui

    return Path(swagger_ui.__file__).parent / "static"


def swagger_render_plugin() -> SwaggerRenderPlugin:
    return SwaggerRenderPlugin(
        js_url=f"{SWAGGER_ASSETS}/swagger-ui-bundle.js",
        css_url=f"{SWAGGER_ASSETS}/swagger-ui.css",
        standalone_preset_js_url=f"{SWAGGER_ASSETS}/swagger-ui-standalone-preset.js",
        favicon=f"<link rel='icon' type='image/png' href='{SWAGGER_ASSETS}/favicon-32x32.png'>",
    )


def swagger_assets_router() -> Router:
    return create_static_files_router(
        path=SWAGGER_ASSETS,
        directories=[swagger_assets_dir()],
        name="swagger-ui",
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=86_400, public=True),
    )


def openapi_security() -> tuple[Components, list[SecurityRequirement]]:
    """Both ways the API reads a key (API.md: Bearer, or X-API-Key), so the docs page has an Authorize
    button; either one satisfies an operation."""
    components = Components(
        security_schemes={
            BEARER: SecurityScheme(
                type="http", scheme="bearer", description="`Authorization: Bearer <api-key>`"
            ),
            API_KEY: SecurityScheme(
                type="apiKey",
                name="X-API-Key",
                security_scheme_in="header",
                description="`X-API-Key: <api-key>`",
            ),
        }
    )
    return components, [{BEARER: []}, {API_KEY: []}]


def mark_anonymous_operations(openapi: OpenAPI) -> None:
    for path, item in (openapi.paths or {}).items():
        if path in ANONYMOUS_OPERATIONS or path.startswith("/schema"):
            for method in ("get", "head", "options"):
                operation = getattr(item, method, None)
                if operation is not None:
                    operation.security = []
