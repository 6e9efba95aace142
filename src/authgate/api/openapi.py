"""The OpenAPI document at ``/v3/api-docs`` (UTMStack's path).

Two corrections to what FastAPI generates:

* request validation failures are documented as authgate answers them: 400 with
  :class:`~authgate.api.errors.ErrorBody` (JHipster-compatible), not FastAPI's 422;
* the security schemes ``bearerAuth`` and ``ApiKeyAuth`` (UTMStack's names) are
  declared for every route that depends on ``current_principal``. They are added here
  rather than as FastAPI ``Security`` dependencies, which would be resolved on every
  request for nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

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


def install_openapi(app: FastAPI, *, description: str, authentication: Callable[..., Any]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=description,
                routes=app.routes,
            )
            _validation_errors_are_400(schema)
            _declare_security(schema, app, authentication)
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


def _declare_security(
    schema: dict[str, Any], app: FastAPI, authentication: Callable[..., Any]
) -> None:
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    # Included routers appear in ``app.routes`` as one entry each; their routes (with
    # the full path) come from FastAPI's route contexts.
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not context.include_in_schema:
            continue
        if not _depends_on(route.dependant, authentication):
            continue
        path_item = schema["paths"].get(context.path_format, {})
        for method in context.methods or ():
            operation = path_item.get(method.lower())
            if operation is not None:
                operation["security"] = _SECURITY_REQUIREMENT


def _depends_on(dependant: Dependant, target: Callable[..., Any]) -> bool:
    return any(
        dependency.call is target or _depends_on(dependency, target)
        for dependency in dependant.dependencies
    )
