"""OpenAPI schema details Litestar's generator leaves out, so the document says what decoding enforces.

* Decimal fields (money, prices, quantities) are generated as a bare `string`. Bodies accept a decimal
  string or a JSON number (msgspec reads the number's digits, never through a float) and answers always
  carry strings, so the schema says exactly that, with the pattern of an accepted string.
* Structs declared with `forbid_unknown_fields=True` answer 400 to an unknown field: the schema says
  `additionalProperties: false` (Litestar's struct plugin does not look at that flag).
* The docs page (/schema) is Swagger UI served from this app's own assets, with both key schemes.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, OpenAPI, OpenAPIType, Reference, Schema, SecurityScheme
from litestar.openapi.spec.security_requirement import SecurityRequirement
from litestar.plugins import OpenAPISchemaPlugin
from litestar.static_files import create_static_files_router

from app.lib.litestar_private import StructSchemaPlugin

if TYPE_CHECKING:
    from litestar.typing import FieldDefinition

    from app.lib.litestar_private import SchemaCreator

DECIMAL_PATTERN = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"


# Signed decimals whose value is > 0, or >= 0 (a negative zero included: "-0" is 0 and accepted).
POSITIVE_DECIMAL_PATTERN = r"^\+?(\d*[1-9]\d*(\.\d*)?|\d*\.\d*[1-9]\d*)([eE][+-]?\d+)?$"
NON_NEGATIVE_DECIMAL_PATTERN = r"^(\+?(\d+(\.\d*)?|\.\d+)|-(0+(\.0*)?|\.0+))([eE][+-]?\d+)?$"
# app/lib/validation.py refuses |x| >= 1e20 (and more than 18 decimal places, which a schema cannot say).
DECIMAL_BOUND = 1e20
_DESCRIPTION = "Exact decimal: a string (always, in answers) or a JSON number (read without floats)"


def decimal_schema(bound: str | None = None) -> Schema:
    """`bound`: None, "positive" (> 0) or "non_negative" (>= 0)."""
    pattern = {"positive": POSITIVE_DECIMAL_PATTERN, "non_negative": NON_NEGATIVE_DECIMAL_PATTERN}.get(
        bound or "", DECIMAL_PATTERN
    )
    number = Schema(type=OpenAPIType.NUMBER, exclusive_maximum=DECIMAL_BOUND)
    if bound == "positive":
        number.exclusive_minimum = 0
    elif bound == "non_negative":
        number.minimum = 0
    else:
        number.exclusive_minimum = -DECIMAL_BOUND
    suffix = {"positive": "; greater than 0", "non_negative": "; 0 or greater"}.get(bound or "", "")
    return Schema(
        one_of=[Schema(type=OpenAPIType.STRING, pattern=pattern), number], description=_DESCRIPTION + suffix
    )


class DecimalSchemaPlugin(OpenAPISchemaPlugin):
    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return value is Decimal

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        return decimal_schema()


_BOUND_CHECKS = {"positive": "positive", "non_negative": "non_negative"}


def _called_bounds(func: Any, seen: set[Any]) -> dict[str, str]:
    """{field: "positive" | "non_negative"} from the `positive(obj, "a", ...)` / `non_negative(...)` calls
    in `func` and in the module-level helpers it calls with the struct (one source of truth: the schema
    states exactly the bounds that __post_init__ enforces)."""
    if func in seen or not callable(func):
        return {}
    seen.add(func)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return {}
    module_globals = getattr(func, "__globals__", {})
    found: dict[str, str] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        name = node.func.id
        if name in _BOUND_CHECKS:
            for arg in node.args[1:]:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    found[arg.value] = _BOUND_CHECKS[name]
        elif inspect.isfunction(helper := module_globals.get(name)):
            found.update(_called_bounds(helper, seen))
    return found


@lru_cache(maxsize=512)
def decimal_bounds(struct: type) -> dict[str, str]:
    post_init = getattr(struct, "__post_init__", None)
    return _called_bounds(post_init, set()) if post_init is not None else {}


def _bound_decimals(schema: Schema | Reference, bound: str) -> None:
    """Swap the plain decimal schema inside `schema` (also inside an optional's oneOf) for a bounded one."""
    if not isinstance(schema, Schema):
        return
    for variants in (schema.one_of, schema.any_of):
        for i, variant in enumerate(variants or []):
            if isinstance(variant, Schema) and _is_plain_decimal(variant):
                variants[i] = decimal_schema(bound)  # type: ignore[index]
            else:
                _bound_decimals(variant, bound)
    if _is_plain_decimal(schema):
        bounded = decimal_schema(bound)
        schema.one_of, schema.description = bounded.one_of, bounded.description


def _is_plain_decimal(schema: Schema) -> bool:
    return bool(schema.one_of) and any(
        isinstance(v, Schema) and v.pattern == DECIMAL_PATTERN for v in schema.one_of or []
    )


def _string_bounds(info: Any) -> Schema | None:
    if isinstance(info, msgspec.inspect.StrType) and (info.min_length or info.max_length):
        return Schema(type=OpenAPIType.STRING, min_length=info.min_length, max_length=info.max_length)
    return None


class StrictStructSchemaPlugin(StructSchemaPlugin):
    """Litestar's struct schema, plus what msgspec and the structs enforce that Litestar leaves out:
    `additionalProperties: false` where unknown fields are refused, decimal bounds from __post_init__,
    object size limits (msgspec `Meta(min_length=...)` on a dict), and `__exactly_one_of__` groups."""

    def to_openapi_schema(self, field_definition: FieldDefinition, schema_creator: SchemaCreator) -> Schema:
        schema = super().to_openapi_schema(field_definition, schema_creator)
        target = schema
        if isinstance(schema, Reference):  # registered component: mark the stored schema
            target = schema_creator.schema_registry.from_reference(schema).schema
        struct = field_definition.type_
        info = msgspec.inspect.type_info(struct)
        if getattr(info, "forbid_unknown_fields", False):
            target.additional_properties = False
        properties = target.properties or {}
        for name, bound in decimal_bounds(struct).items():
            if name in properties:
                _bound_decimals(properties[name], bound)
        for field in getattr(info, "fields", ()):
            dict_type = field.type.type if isinstance(field.type, msgspec.inspect.Metadata) else field.type
            if isinstance(dict_type, msgspec.inspect.DictType) and field.encode_name in properties:
                prop = properties[field.encode_name]
                if isinstance(prop, Schema):
                    prop.min_properties = dict_type.min_length
                    prop.max_properties = dict_type.max_length
                    prop.property_names = _string_bounds(dict_type.key_type)
                    values = dict_type.value_type
                    if isinstance(prop.additional_properties, Schema) and isinstance(
                        values, msgspec.inspect.ListType
                    ):
                        prop.additional_properties.min_items = values.min_length
                        prop.additional_properties.max_items = values.max_length
        exactly_one = getattr(struct, "__exactly_one_of__", None)
        if exactly_one:
            target.one_of = [Schema(required=[name]) for name in exactly_one]  # both present: matches two
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
