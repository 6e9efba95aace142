"""Request dependencies, as ``Annotated`` aliases so route signatures read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from authgate.container import Services
from authgate.exceptions import CredentialsMissing, PermissionDenied, TokenInvalid
from authgate.security.credentials import bearer_credential
from authgate.security.principal import Principal


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_principal(request: Request) -> Principal:
    """The authenticated caller, or ``AuthenticationFailed`` (401).

    Deliberately free of sub-dependencies (FastAPI resolves each one on every request,
    which is most of an authenticated request's cost); ``api/openapi.py`` declares the
    security schemes for every route that depends on this.
    """
    services: Services = request.app.state.services
    token = bearer_credential(request.headers.get("authorization"))
    if token is None and services.settings.access_token_query_param:
        token = request.query_params.get("access_token")
    if token is None:
        raise CredentialsMissing()
    if not token:
        raise TokenInvalid(reason="empty_bearer")
    principal = await services.tokens.authenticate(token)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: CurrentPrincipal) -> Principal:
    """The caller, who must hold ROLE_ADMIN (403 otherwise)."""
    if not principal.is_admin:
        raise PermissionDenied(reason="role_admin_required")
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
