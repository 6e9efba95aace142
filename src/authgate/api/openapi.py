"""The OpenAPI document at ``/v3/api-docs`` (UTMStack's path).

Three corrections to what FastAPI generates:

* request validation failures are documented as authgate answers them: with
  :class:`~authgate.api.errors.ErrorBody` and the route's status (400, as JHipster,
  or 422 on the API key routes), not FastAPI's own 422 schema; a route reading a JSON
  body also answers 415 for a body sent under another Content-Type;
* the security schemes ``bearerAuth`` and ``ApiKeyAuth`` (UTMStack's names) are
  declared for every route of an ``AuthenticatedRoute`` class (see ``api/access.py``:
  authentication is not a FastAPI dependency, so FastAPI cannot see it);
* HEAD, which every GET route answers too (``api/routing.py``), is not an operation of
  its own: it is implied by GET (RFC 9110 9.3.2), and FastAPI would document it with
  the GET's operationId again.

And rules the services enforce are stated, so that a client (or a fuzzer) generating
requests from the document sends what is accepted: the fields each ``sort`` may name,
and the password lengths this server's configuration sets.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, params
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute

from authgate.api.access import AuthenticatedRoute, PreVerificationRoute
from authgate.api.auth import LOGIN_PASSWORD_MIN, login_password_max
from authgate.api.v1.internal import INTERNAL_KEY_HEADER, InternalRoute
from authgate.security.principal import KNOWN_SCOPES
from authgate.settings import Settings
from authgate.storage.alert_repository import AlertRepository
from authgate.storage.api_key_repository import ApiKeyRepository, UsageRepository
from authgate.storage.audit_repository import AuditRepository
from authgate.storage.repositories import UserRepository

_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_ERROR_BODY_REF = {"$ref": "#/components/schemas/ErrorBody"}
_V12_ERROR_BODY_REF = {"$ref": "#/components/schemas/V12ErrorBody"}

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
    "preVerificationAuth": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The pre-verification token of a login that still needs its second "
        "factor (`authenticated: false`, authority ROLE_PRE_VERIFICATION_USER, 5 minutes). "
        "Only the second-factor endpoints accept it; every other route answers 401.",
    },
    "internalKeyAuth": {
        "type": "apiKey",
        "in": "header",
        "name": INTERNAL_KEY_HEADER,
        "description": "A service credential (`ags_...`), allowed the internal endpoint "
        "(`authgate service-credentials create`). Internal endpoints accept nothing else.",
    },
}
# Either scheme satisfies a protected operation.
_SECURITY_REQUIREMENT: list[dict[str, list[str]]] = [{"bearerAuth": []}, {"ApiKeyAuth": []}]
# The fields ``?sort=field,asc|desc`` may name, per paged operation (GET, and the POST
# search of usage): the services refuse others.
_SORT_FIELDS: dict[str, Any] = {
    "/api/users": UserRepository.SORT_COLUMNS,
    "/api/api-keys": ApiKeyRepository.SORT_COLUMNS,
    "/api/api-keys/usage": UsageRepository.SORT_COLUMNS,
    "/api/audit-events": AuditRepository.SORT_COLUMNS,
    "/api/alerts": AlertRepository.SORT_COLUMNS,
}
# Request fields that set a new password: (schema, property).
_NEW_PASSWORDS = (
    ("UserCreate", "password"),
    ("PasswordReset", "newPassword"),
    ("PasswordChange", "newPassword"),
    ("KeyAndPassword", "newPassword"),
)


def install_openapi(app: FastAPI, *, description: str, settings: Settings) -> None:
    """Serve the corrected document, with the rules ``settings`` configure."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=description,
                routes=_documented(app.routes),
            )
            _correct_operations(schema, app)
            _document_sort_fields(schema)
            components = schema.setdefault("components", {})
            _document_configured_rules(components.get("schemas", {}), settings)
            components["securitySchemes"] = SECURITY_SCHEMES
            for name in _FASTAPI_VALIDATION_SCHEMAS:
                components.get("schemas", {}).pop(name, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _documented(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """The routes as the document states them: a route answering GET and HEAD as one
    answering GET (a copy; the route itself keeps serving HEAD)."""
    documented: list[BaseRoute] = []
    for route in routes:
        methods = getattr(route, "methods", None) or set()
        if isinstance(route, APIRoute) and {"GET", "HEAD"} <= methods:
            route = copy.copy(route)
            route.methods = methods - {"HEAD"}
        documented.append(route)
    return documented


def _correct_operations(schema: dict[str, Any], app: FastAPI) -> None:
    # iter_route_contexts also sees routes of included routers, with their full path.
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not getattr(route, "include_in_schema", False):  # e.g. the static files mount
            continue
        path_item = schema["paths"].get(context.path_format, {})
        status = str(getattr(route, "validation_status", 400))
        # UTMStack v12's routes answer errors in their own shape.
        v12 = (context.path_format or "").startswith("/api/v1/")
        error_ref = _V12_ERROR_BODY_REF if v12 else _ERROR_BODY_REF
        for method in context.methods or ():
            operation = path_item.get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            fastapi_422 = responses.get("422", {})
            if "HTTPValidationError" in str(fastapi_422):
                del responses["422"]
                responses.setdefault(
                    status,
                    {
                        "description": "Invalid request (see fieldErrors)",
                        "content": {"application/json": {"schema": error_ref}},
                    },
                )
            if _takes_json_body(route):
                responses.setdefault(
                    "415",
                    {
                        "description": "The body is not sent as application/json",
                        "content": {"application/json": {"schema": error_ref}},
                    },
                )
            if isinstance(route, PreVerificationRoute):
                operation["security"] = [{"preVerificationAuth": []}]
            if isinstance(route, InternalRoute):
                operation["security"] = [{"internalKeyAuth": []}]
            if isinstance(route, AuthenticatedRoute):
                operation["security"] = _SECURITY_REQUIREMENT
                # Any authenticated call may meet an API key's rate limit or an address
                # blocked for trying bad keys.
                responses.setdefault(
                    "429",
                    {
                        "description": "Too many requests (see Retry-After)",
                        "content": {"application/json": {"schema": error_ref}},
                    },
                )


def _takes_json_body(route: BaseRoute) -> bool:
    """A route FastAPI reads a JSON body for: 415 under another Content-Type."""
    body = getattr(route, "body_field", None)
    return body is not None and not isinstance(body.field_info, params.Form)


def _document_sort_fields(schema: dict[str, Any]) -> None:
    for path, fields in _SORT_FIELDS.items():
        for operation in schema["paths"].get(path, {}).values():
            for parameter in operation.get("parameters", ()):
                if parameter["name"] == "sort" and parameter["in"] == "query":
                    names = "|".join(fields)
                    array = parameter["schema"]["anyOf"][0]
                    array["items"]["pattern"] = f"^(?:{names})(?:,(?:asc|desc))?$"


def _document_configured_rules(schemas: dict[str, Any], settings: Settings) -> None:
    """Password lengths and the scopes keys may carry, as this server is configured."""
    for name, field in _NEW_PASSWORDS:
        if name in schemas:
            schemas[name]["properties"][field].update(
                minLength=settings.password_policy.min_length,
                maxLength=settings.password_policy.max_length,
            )
    if "LoginRequest" in schemas:
        schemas["LoginRequest"]["properties"]["password"].update(
            minLength=LOGIN_PASSWORD_MIN, maxLength=login_password_max(settings)
        )
    if "ApiKeyBody" in schemas:
        scopes = sorted(KNOWN_SCOPES | settings.api_keys.extra_scopes)
        array = schemas["ApiKeyBody"]["properties"]["scopes"]["anyOf"][0]
        array["items"]["enum"] = scopes
