"""The OpenAPI document at ``/v3/api-docs`` (UTMStack's path).

Two corrections to what FastAPI generates:

* request validation failures are documented as authgate answers them: 400 with
  :class:`~authgate.api.errors.ErrorBody` (JHipster-compatible), not FastAPI's 422;
* the security schemes ``bearerAuth`` and ``ApiKeyAuth`` (UTMStack's names) are
  declared for every route of an ``AuthenticatedRoute`` class (see ``api/access.py``:
  authentication is not a FastAPI dependency, so FastAPI cannot see it).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts

from authgate.api.access import AuthenticatedRoute

_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_ERROR_BODY_REF = {"$ref": "#/components/schemas/ErrorBody"}

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A token from `POST /api/authenticate`: `Authorization: Bearer <token>`.",
    },
    "ApiKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": "Utm-Api-Key",
        "description": "A managed API key in UTMStack's header.",
    },
}
# Either scheme satisfies a protected operation.
_SECURITY_REQUIREMENT: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"ApiKeyAuth": []}]


def install_openapi(app: FastAPI, *, description: str) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=description,
                routes=app.routes,
            )
            _validation_errors_are_400(schema)
            _declare_security(schema, app)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _validation_errors_are_400(schema: dict[str, Any]) -> None:
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {
                    "description": "Invalid request (see fieldErrors)",
                    "content": {"application/json": {"schema": _ERROR_BODY_REF}},
                }
    components = schema.get("components", {}).get("schemas", {})
    for name in _FASTAPI_VALIDATION_SCHEMAS:
        components.pop(name, None)


def _declare_security(schema: dict[str, Any], app: FastAPI) -> None:
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    # iter_route_contexts also sees routes of included routers, with their full path.
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, AuthenticatedRoute):
            continue
        if not context.include_in_schema:
            continue
        path_item = schema["paths"].get(context.path_format, {})
        for method in context.methods or ():
            operation = path_item.get(method.lower())
            if operation is not None:
                operation["security"] = _SECURITY_REQUIREMENT
